"""Load an exported Hugging Face Llama directory and its SentencePiece tokenizer for scoring."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json


@dataclass(frozen=True)
class SpTokenizer:
    """The SentencePiece model of the tokenizer contract, encoding without special tokens."""

    processor: object  # sentencepiece.SentencePieceProcessor
    path: Path

    @property
    def bos_id(self) -> int:
        return self.processor.bos_id()

    @property
    def eos_id(self) -> int:
        return self.processor.eos_id()

    @property
    def unk_id(self) -> int:
        return self.processor.unk_id()

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return list(self.processor.encode(text))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.processor.encode(texts)]


def load_tokenizer(model_dir: str | Path) -> SpTokenizer:
    """``<model_dir>/tokenizer.model``; checks BOS/EOS are set (the document format needs both)."""
    import sentencepiece as spm

    path = Path(model_dir) / "tokenizer.model"
    if not path.is_file():
        raise EuroflowError(f"{path}: missing; the model directory must contain the SentencePiece tokenizer.model")
    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError) as exc:
        raise EuroflowError(f"{path}: not a SentencePiece model ({exc})") from None
    tokenizer = SpTokenizer(processor, path)
    if tokenizer.bos_id < 0 or tokenizer.eos_id < 0:
        raise EuroflowError(f"{path}: bos_id={tokenizer.bos_id} eos_id={tokenizer.eos_id}; both must be defined")
    return tokenizer


def quiet_torchao() -> None:
    # transformers imports torchao when it is installed; on a CPU-only torch torchao warns that its
    # CUDA kernels do not load, which is expected and only noise here
    logging.getLogger("torchao").setLevel(logging.ERROR)


def resolve_device(device: str = "auto"):
    """``auto``: the first CUDA device when torch sees one, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EuroflowError(f"--device {device}: torch sees no CUDA device")
    try:
        return torch.device(device)
    except RuntimeError:
        raise EuroflowError(f"--device {device!r}: not a torch device (auto, cpu, cuda, cuda:N)") from None


def load_model(model_dir: str | Path, device: str = "auto"):
    """``LlamaForCausalLM`` in float32, eval mode, on ``device``."""
    quiet_torchao()
    import torch
    from transformers import LlamaForCausalLM

    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise EuroflowError(f"{config_path}: missing; expected a Hugging Face model directory (export-hf output)")
    architectures = read_json(config_path, "model config").get("architectures") or []
    if architectures and "LlamaForCausalLM" not in architectures:
        raise EuroflowError(f"{config_path}: architectures={architectures}; expected LlamaForCausalLM")
    try:
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except OSError as exc:
        raise EuroflowError(f"{model_dir}: cannot load LlamaForCausalLM ({exc})") from None
    model.to(resolve_device(device)).eval()
    return model

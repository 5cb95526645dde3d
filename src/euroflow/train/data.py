"""Training data: the blend file through megatron-core's BlendedMegatronDatasetBuilder and GPTDataset."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json
from euroflow.tokenizer.train import read_meta

def _megatron_tokenizer_base():
    from megatron.core.tokenizers import MegatronTokenizerBase

    return MegatronTokenizerBase


def build_tokenizer(tokenizer_dir: str | Path):
    """The megatron tokenizer object GPTDataset needs: vocab size, EOD (= EOS), no pad id."""
    base = _megatron_tokenizer_base()

    class EuroflowTokenizer(base):
        """SentencePiece tokenizer of the tokenizer contract, described by tokenizer_meta.json."""

        def __init__(self, directory: Path, meta: dict):
            super().__init__(str(directory), {})
            self._meta = meta
            self._processor = None

        @property
        def vocab_size(self) -> int:
            return self._meta["vocab_size"]

        @property
        def eod(self) -> int:
            return self._meta["eos_id"]

        @property
        def eos(self) -> int:
            return self._meta["eos_id"]

        @property
        def bos(self) -> int:
            return self._meta["bos_id"]

        @property
        def pad(self) -> int:
            return self._meta.get("pad_id", -1)

        @property
        def unique_identifiers(self) -> OrderedDict:
            # Part of the dataset cache key: a different tokenizer must not reuse cached indices.
            return OrderedDict(
                [("class", "euroflow.train.data.EuroflowTokenizer"), ("tokenizer_path", self.path)]
                + sorted((k, str(v)) for k, v in self._meta.items())
            )

        def _sp(self):
            if self._processor is None:
                import sentencepiece as spm

                self._processor = spm.SentencePieceProcessor(model_file=str(Path(self.path) / "tokenizer.model"))
            return self._processor

        def tokenize(self, text: str) -> list[int]:
            return list(self._sp().encode(text))

        def detokenize(self, ids: list[int]) -> str:
            return self._sp().decode(list(ids))

        def vocab(self) -> dict:
            sp = self._sp()
            return {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}

        def apply_chat_template(self, *args, **kwargs):
            # abstract in MegatronTokenizerBase; chat templates belong to fine-tuning, not to pretraining data
            raise EuroflowError(f"{self.path}: a pretraining tokenizer has no chat template")

    return EuroflowTokenizer(Path(tokenizer_dir), read_meta(tokenizer_dir))


def read_blend(blend_path: str | Path) -> tuple[list[str], list[float]]:
    """(prefixes, weights) from ``blend.json``'s megatron_blend; each prefix must have .bin and .idx."""
    blend_path = Path(blend_path)
    return _blend_entries(read_json(blend_path, "blend file"), blend_path, None)


def _blend_entries(blend: object, blend_path: Path, split: str | None) -> tuple[list[str], list[float]]:
    blend = blend if isinstance(blend, dict) else {}
    if split is None:
        key, flat = "megatron_blend", blend.get("megatron_blend")
    else:
        key, flat = f"megatron_blend_per_split.{split}", (blend.get("megatron_blend_per_split") or {}).get(split)
    if not isinstance(flat, list) or not flat or len(flat) % 2:
        raise EuroflowError(f"{blend_path}: {key}: expected a non-empty list [w1, prefix1, w2, prefix2, ...]")
    weights, prefixes = [], []
    for i in range(0, len(flat), 2):
        weight, prefix = flat[i], flat[i + 1]
        if not isinstance(weight, (int, float)) or weight < 0 or not isinstance(prefix, str):
            raise EuroflowError(f"{blend_path}: {key}[{i}]: expected a weight >= 0 then a prefix string")
        if weight == 0:
            continue
        resolved = _resolve_prefix(prefix, blend_path)
        weights.append(float(weight))
        prefixes.append(resolved)
    if not prefixes:
        raise EuroflowError(f"{blend_path}: {key}: every weight is zero")
    return prefixes, weights


def _resolve_prefix(prefix: str, blend_path: Path) -> str:
    candidates = [Path(prefix)] if Path(prefix).is_absolute() else [Path(prefix), blend_path.parent / prefix]
    for candidate in candidates:
        if candidate.with_name(candidate.name + ".bin").is_file() and candidate.with_name(candidate.name + ".idx").is_file():
            return str(candidate.resolve())
    raise EuroflowError(f"{blend_path}: megatron_blend: {prefix}: no {prefix}.bin/.idx (indexed dataset missing)")


def split_string(valid_fraction: float) -> str:
    """Megatron's train,valid,test split weights (documents of every language are split alike)."""
    return f"{1.0 - valid_fraction!r},{valid_fraction!r},0"


def check_split_sizes(prefixes: list[str], valid_fraction: float, blend_path) -> None:
    """Every language must keep documents in each split: megatron loops forever on an empty one."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    bounds = {"train": (0.0, 1.0 - valid_fraction)}
    if valid_fraction > 0:
        bounds["valid"] = (1.0 - valid_fraction, 1.0)
    for prefix in prefixes:
        docs = len(IndexedDataset(prefix).sequence_lengths)
        for split, (beg, end) in bounds.items():
            if int(round(end * docs)) - int(round(beg * docs)) < 1:
                raise EuroflowError(
                    f"{blend_path}: {prefix}: {docs} documents leave none for the {split} split "
                    f"(data.valid_fraction {valid_fraction})"
                )


# a dataset this small is read whole; of a larger one, its first and last this many tokens
SCAN_TOKENS = 1 << 20


def _largest_id(prefix: str) -> int:
    import numpy as np
    from megatron.core.datasets.indexed_dataset import DType

    with open(f"{prefix}.idx", "rb") as fh:
        header = fh.read(18)  # magic (9 bytes), version (8), dtype code (1)
    dtype = DType.dtype_from_code(header[17])
    bin_path = f"{prefix}.bin"
    if os.path.getsize(bin_path) == 0:
        return -1
    tokens = np.memmap(bin_path, dtype=dtype, mode="r")
    parts = [tokens] if len(tokens) <= 4 * SCAN_TOKENS else [tokens[:SCAN_TOKENS], tokens[-SCAN_TOKENS:]]
    return max(int(part.max()) for part in parts)


def check_token_ids(blend: dict, blend_path: Path, prefixes: list[str], tokenizer) -> None:
    """Refuse, before training, datasets holding ids the tokenizer does not have: tokenized with another
    tokenizer than the one given. The tokenize reports' largest ids (in the blend) are checked, then
    each dataset itself (whole when small, else its first and last million tokens)."""
    vocab = tokenizer.vocab_size
    for entry in blend.get("languages") or []:
        top = entry.get("max_token_id") if isinstance(entry, dict) else None
        if isinstance(top, int) and top >= vocab:
            raise EuroflowError(
                f"{blend_path}: language {entry.get('lang')}: its datasets hold token ids up to {top}, but the tokenizer "
                f"{tokenizer.path} has a vocabulary of {vocab}: they were tokenized with another tokenizer"
            )
    for prefix in dict.fromkeys(prefixes):
        top = _largest_id(prefix)
        if top >= vocab:
            raise EuroflowError(
                f"{prefix}.bin: holds token id {top}, outside the vocabulary of {vocab} of the tokenizer {tokenizer.path}: "
                "tokenized with another tokenizer"
            )


# a Megatron prefix keeps its .bin and .idx and the cached document/sample/shuffle index .npy files
# open (memory-mapped); the rest of the process (Python, torch, gloo's sockets, checkpoint writers) a few hundred
FILES_PER_PREFIX = 6
FILES_BESIDES = 512


def ensure_open_files(prefixes: list[str], blend_path) -> int:
    """Raise the soft open-file limit to what the blend needs when the hard limit allows (the usual
    1,024 default of login and compute nodes is too low for a blend of a few hundred shard datasets);
    refuse in one line when it does not. Returns the number needed."""
    import resource

    count = len(dict.fromkeys(prefixes))
    needed = count * FILES_PER_PREFIX + FILES_BESIDES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft != unlimited and soft < needed:
        if hard != unlimited and hard < needed:
            raise EuroflowError(
                f"{blend_path}: its {count:,} datasets need about {needed:,} open files, but this process may open at most "
                f"{hard:,} (ulimit -Hn): raise the limit (ulimit -n {needed}, or ask the site), or train on merged "
                "per-language datasets (the workflow's merge_language jobs)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


@dataclass
class Datasets:
    train: object
    valid: object | None
    tokenizer: object


def build_datasets(config: dict, blend_path, tokenizer_dir, cache_dir, *, train_samples: int, valid_samples: int) -> Datasets:
    """Train and validation GPTDatasets (blended when several prefixes); indices cached in ``cache_dir``."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    valid_fraction = config["data"]["valid_fraction"]
    blend_path = Path(blend_path)
    blend = read_json(blend_path, "blend file")
    if isinstance(blend, dict) and "megatron_blend_per_split" in blend:
        # the data stage held out the valid documents: one blend per split, no split inside datasets
        valid = _blend_entries(blend, blend_path, "valid") if valid_fraction > 0 else None
        train = _blend_entries(blend, blend_path, "train")
        blend_args: dict = {"blend_per_split": [train, valid, None]}
        prefixes = train[0] + (valid[0] if valid else [])
    else:
        prefixes, weights = _blend_entries(blend, blend_path, None)
        check_split_sizes(prefixes, valid_fraction, blend_path)
        blend_args = {"blend": (prefixes, weights), "split": split_string(valid_fraction)}
    ensure_open_files(prefixes, blend_path)
    tokenizer = build_tokenizer(tokenizer_dir)
    check_token_ids(blend if isinstance(blend, dict) else {}, blend_path, prefixes, tokenizer)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    dataset_config = GPTDatasetConfig(
        random_seed=config["run"]["seed"],
        sequence_length=config["model"]["seq_length"],
        **blend_args,
        path_to_cache=str(cache_dir),
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        # Causal attention needs no explicit mask; the model builds it.
        create_attention_mask=False,
    )
    sizes = [train_samples, valid_samples if valid_fraction > 0 else 0, 0]
    try:
        train, valid, _ = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, dataset_config).build()
    except (AssertionError, IndexError, ValueError) as exc:
        raise EuroflowError(f"{blend_path}: cannot build the training datasets ({type(exc).__name__}: {str(exc)[:300]})") from None
    if train is None or len(train) < train_samples:
        raise EuroflowError(f"{blend_path}: the blend yields fewer than the {train_samples} training samples needed")
    return Datasets(train=train, valid=valid if valid_fraction > 0 else None, tokenizer=tokenizer)


def micro_batches(
    dataset, consumed_samples: int, num_micro_batches: int, micro_batch_size: int, dp_rank: int, dp_size: int
) -> Iterator[dict]:
    """The micro batches of one step for this data-parallel rank.

    Sample order is Megatron-LM's pretraining sampler: each micro batch takes the next
    ``micro_batch_size * dp_size`` samples, rank r getting the r-th slice, so the global batch
    (and the loss) does not depend on how it is split over ranks and micro batches.
    """
    for micro in range(num_micro_batches):
        start = consumed_samples + (micro * dp_size + dp_rank) * micro_batch_size
        samples = [dataset[i] for i in range(start, start + micro_batch_size)]
        yield {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in samples[0]}

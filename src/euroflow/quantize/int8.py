"""Torch int8 weight-only variant of the Hugging Face model, with torchao.

Every ``nn.Linear`` weight (attention and MLP projections, and the output head) becomes a torchao
``Int8Tensor``: symmetric int8 with one scale per output row, dequantized on the fly; embeddings and
norms stay float32. The file is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``):
``{"format", "method", "torchao_version", "config": LlamaConfig dict, "state_dict"}``, so the loader
needs nothing but the file.
"""

from __future__ import annotations

from pathlib import Path

from euroflow.atomic import atomic_path
from euroflow.errors import EuroflowError
from euroflow.evaluate.model import quiet_torchao

FORMAT = "euroflow-int8-weight-only/1"
METHOD = "torchao Int8WeightOnlyConfig (symmetric int8, per output row)"


def _torchao():
    quiet_torchao()
    try:
        import torchao
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise EuroflowError(f"torch int8 needs the 'torchao' package (pip install torchao==0.18.0): {exc}") from None
    return torchao, Int8WeightOnlyConfig, quantize_


def quantize_model(model):
    """Quantize ``model``'s linear weights in place to int8 (weight-only); returns the model."""
    _, Int8WeightOnlyConfig, quantize_ = _torchao()
    quantize_(model, Int8WeightOnlyConfig())
    return model


def export_int8(model_dir: str | Path, out: str | Path) -> dict:
    """Write the int8 weight-only model of ``model_dir`` to ``out`` (atomically); returns a summary."""
    import torch

    from euroflow.evaluate.model import load_model

    torchao, _, _ = _torchao()
    model = quantize_model(load_model(model_dir, "cpu"))
    payload = {
        "format": FORMAT,
        "method": METHOD,
        "torchao_version": torchao.__version__,
        "source": str(model_dir),
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
    }
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    quantized = sorted(k for k, v in payload["state_dict"].items() if type(v).__name__ == "Int8Tensor")
    return {"path": str(out), "method": METHOD, "file_size": Path(out).stat().st_size, "int8_tensors": len(quantized)}


def load_int8(path: str | Path):
    """``(model, info)``: the int8 ``LlamaForCausalLM`` saved by :func:`export_int8`, in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    if not path.is_file():
        raise EuroflowError(f"{path}: int8 model file not found")
    _torchao()  # registers torchao's tensor classes as safe for weights_only loading
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unpickling error types
        raise EuroflowError(f"{path}: not a readable int8 model file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EuroflowError(f"{path}: format {payload.get('format') if isinstance(payload, dict) else None!r}; expected {FORMAT}")
    config = LlamaConfig.from_dict(payload["config"])
    torch.manual_seed(0)  # the random init is replaced by the saved weights
    model = LlamaForCausalLM(config)
    quantize_model(model)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise EuroflowError(f"{path}: state_dict does not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return model, {"method": payload["method"], "torchao_version": payload.get("torchao_version")}

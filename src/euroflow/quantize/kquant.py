"""K-quants (Q6_K, Q5_K_M, Q4_K_M) from our F16 GGUF through llama.cpp's own quantizer, guided by an
importance matrix.

The quantizer is ``llama_model_quantize``, the function ``llama-quantize`` runs, called in-process
through llama-cpp-python (built from source by ``make install-llama-cpp``, the same llama.cpp that
loads the files in the tests): its per-tensor type choices (Q6_K for ``output.weight`` and part of
``attn_v``/``ffn_down`` in Q4_K_M, the fallback to Q5_0/Q5_1/Q8_0 for rows that are not a multiple of
256) are llama.cpp's, not a copy of them.

The importance matrix is what ``llama-imatrix`` collects: for every weight a matrix multiplication
reads, the mean over calibration tokens of each input column's squared activation. We compute it in
torch with forward hooks on the Hugging Face export (the model the F16 GGUF was written from) over a
language-balanced sample of the training data, and hand it to the quantizer as llama.cpp's
``llama_model_imatrix_data`` entries. The file is written in llama.cpp's GGUF imatrix layout
(``<tensor>.in_sum2`` and ``<tensor>.counts``, ``imatrix.datasets``, ``imatrix.chunk_count``,
``imatrix.chunk_size``) plus the languages and token counts it was drawn from.
"""

from __future__ import annotations

import ctypes
import itertools
from pathlib import Path

import numpy as np

from euroflow.atomic import atomic_path
from euroflow.errors import EuroflowError

# our type name -> llama.cpp's llama_ftype constant (llama-quantize's names)
KQUANT_FTYPES = {"Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K", "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
IMATRIX_LANGUAGES_KEY = "euroflow.imatrix.languages"
IMATRIX_TOKENS_KEY = "euroflow.imatrix.tokens_per_language"


def read_imatrix(path: str | Path) -> dict:
    """``{"entries": {tensor: mean squared activation per input column}, "datasets", "chunk_count",
    "chunk_size", "languages", "tokens_per_language"}`` of an imatrix file :func:`compute_imatrix` wrote."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(key):
        found = reader.fields.get(key)
        return None if found is None else found.contents()

    sums, counts = {}, {}
    for tensor in reader.tensors:
        name, _, kind = tensor.name.rpartition(".")
        if kind == "in_sum2":
            sums[name] = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
        elif kind == "counts":
            counts[name] = float(np.asarray(tensor.data, dtype=np.float32).reshape(-1)[0])
    if not sums or set(sums) != set(counts):
        raise EuroflowError(f"{path}: not an importance matrix (needs <tensor>.in_sum2 and <tensor>.counts pairs)")
    return {
        "entries": {name: sums[name] / max(counts[name], 1.0) for name in sorted(sums)},
        "datasets": field("imatrix.datasets") or [],
        "chunk_count": field("imatrix.chunk_count"),
        "chunk_size": field("imatrix.chunk_size"),
        "languages": field(IMATRIX_LANGUAGES_KEY) or [],
        "tokens_per_language": field(IMATRIX_TOKENS_KEY),
    }


def calibration_tokens(datasets: dict[str, str], tokens_per_language: int) -> dict[str, np.ndarray]:
    """``tokens_per_language`` tokens of each language's training data (Megatron indexed dataset
    prefixes), from documents spread evenly over the dataset so that no one shard stands for it."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    sample = {}
    for lang, prefix in datasets.items():
        if not Path(f"{prefix}.idx").is_file():
            raise EuroflowError(f"--data {lang}={prefix}: no Megatron dataset there ({prefix}.idx missing)")
        dataset = IndexedDataset(prefix)
        lengths = dataset.sequence_lengths
        total = int(lengths.sum())
        if total == 0:
            raise EuroflowError(f"--data {lang}={prefix}: the dataset has no tokens")
        wanted = min(tokens_per_language, total)
        average = total / len(lengths)
        picks = np.unique(np.linspace(0, len(lengths) - 1, num=min(len(lengths), int(np.ceil(wanted / average)) + 1)).astype(np.int64))
        tokens, have, taken = [], 0, set()
        for index in itertools.chain(picks.tolist(), range(len(lengths))):  # then from the start where the spread fell short
            if index in taken:
                continue
            taken.add(index)
            document = np.asarray(dataset[int(index)], dtype=np.int64)
            tokens.append(document)
            have += len(document)
            if have >= wanted:
                break
        sample[lang] = np.concatenate(tokens)[:wanted]
    return sample


def compute_imatrix(model_dir: str | Path, datasets: dict[str, str], out: str | Path, *, tokens_per_language: int,
                    chunk_size: int | None = None, device: str = "auto") -> dict:
    """The importance matrix of the Hugging Face model ``model_dir`` over ``tokens_per_language``
    tokens of each language in ``datasets`` (language -> Megatron dataset prefix), in chunks of
    ``chunk_size`` tokens (default: the model's context); written to ``out`` (atomically). Returns its summary."""
    import gguf
    import torch

    from euroflow.evaluate.model import load_model
    from euroflow.quantize.gguf_export import hf_to_gguf_name

    if tokens_per_language < 1:
        raise EuroflowError(f"--tokens-per-language {tokens_per_language}: must be >= 1")
    model = load_model(Path(model_dir), device)
    target = next(model.parameters()).device
    context = int(model.config.max_position_embeddings)
    chunk_size = chunk_size or context
    if not 2 <= chunk_size <= context:
        raise EuroflowError(f"--chunk-size {chunk_size} (quantization.imatrix.chunk_size): must be 2 to the model's context, {context}")
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def collect(name):
        def hook(module, inputs, output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return hook

    handles = []
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            name = hf_to_gguf_name(f"{module_name}.weight")
            if tied and name == "output.weight":  # a tied output is the embedding matrix in the GGUF
                name = "token_embd.weight"
            handles.append(module.register_forward_hook(collect(name)))
    sample = calibration_tokens(datasets, tokens_per_language)
    chunks = 0
    with torch.no_grad():
        for tokens in sample.values():
            for start in range(0, len(tokens), chunk_size):
                chunk = tokens[start:start + chunk_size]
                model(torch.as_tensor(chunk, device=target).unsqueeze(0))
                chunks += 1
    for handle in handles:
        handle.remove()
    with atomic_path(out) as tmp:
        writer = gguf.GGUFWriter(tmp, arch="imatrix")
        writer.kv_data[0].pop("general.architecture", None)  # llama-imatrix's files have a type, no architecture
        writer.add_type("imatrix")
        writer.add_array("imatrix.datasets", [f"{lang}:{Path(prefix).name}" for lang, prefix in datasets.items()])
        writer.add_uint32("imatrix.chunk_count", chunks)
        writer.add_uint32("imatrix.chunk_size", chunk_size)
        writer.add_array(IMATRIX_LANGUAGES_KEY, list(datasets))
        writer.add_uint32(IMATRIX_TOKENS_KEY, tokens_per_language)
        for name in sorted(sums):
            writer.add_tensor(f"{name}.in_sum2", sums[name].float().cpu().numpy().reshape(1, -1))
            writer.add_tensor(f"{name}.counts", np.asarray([[counts[name]]], dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return {"path": str(out), "entries": len(sums), "chunks": chunks, "chunk_size": chunk_size,
            "languages": list(datasets), "tokens": {lang: int(len(t)) for lang, t in sample.items()}}


def quantize(source: str | Path, out: str | Path, qtype: str, *, imatrix: str | Path | None = None, threads: int = 0) -> dict:
    """Write ``out`` (atomically) as llama.cpp's ``qtype`` of the F16 GGUF ``source``; returns a summary
    (type, file size, tensor types, the importance matrix's languages when one was used)."""
    import gguf
    import llama_cpp

    if qtype not in KQUANT_FTYPES:
        raise EuroflowError(f"--type {qtype!r}: llama.cpp's quantizer here makes {', '.join(KQUANT_FTYPES)}")
    if not Path(source).is_file():
        raise EuroflowError(f"--source {source}: no such GGUF file")
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, KQUANT_FTYPES[qtype])
    params.nthread = threads
    keep_alive = []  # the C structs point into these until the quantizer returns
    matrix = None
    if imatrix is not None:
        matrix = read_imatrix(imatrix)
        entries = (llama_cpp.llama_model_imatrix_data * (len(matrix["entries"]) + 1))()
        for i, (name, values) in enumerate(matrix["entries"].items()):
            values = np.ascontiguousarray(values, dtype=np.float32)
            encoded = name.encode()
            keep_alive += [values, encoded]
            entries[i].name = encoded
            entries[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = values.size
        entries[len(matrix["entries"])].name = None  # the terminator llama.cpp reads up to
        params.imatrix = entries
        overrides = _imatrix_metadata(llama_cpp, Path(imatrix).name, matrix)
        keep_alive += [entries, overrides]
        params.kv_overrides = overrides
    with atomic_path(out) as tmp:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0:
            raise EuroflowError(f"llama.cpp could not quantize {source} to {qtype} (status {status}; its log is above)")
    return {
        "path": str(out),
        "type": qtype,
        "file_size": Path(out).stat().st_size,
        "tensor_types": {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors},
        "imatrix": None if matrix is None else {"file": str(imatrix), "languages": matrix["languages"],
                                                "tokens_per_language": matrix["tokens_per_language"]},
    }


def _fit(text: str, limit: int = 127) -> str:
    """A list for a GGUF string override (llama.cpp's are 128 bytes, NUL included), shortened visibly."""
    if len(text.encode()) <= limit:
        return text
    items = text.split(",")
    for keep in range(len(items) - 1, 0, -1):
        shortened = ",".join(items[:keep]) + f",+{len(items) - keep} more"
        if len(shortened.encode()) <= limit:
            return shortened
    return text.encode()[:limit].decode(errors="ignore")


def _imatrix_metadata(llama_cpp, file_name: str, matrix: dict):
    """The GGUF keys llama-quantize writes for an importance matrix (``quantize.imatrix.*``) and ours
    (``euroflow.imatrix.*``: its languages and tokens per language); an array ended by an empty key,
    as llama.cpp reads it."""
    values = [
        ("quantize.imatrix.file", file_name),
        ("quantize.imatrix.dataset", _fit(",".join(matrix["datasets"]) or "unknown")),
        ("quantize.imatrix.entries_count", len(matrix["entries"])),
        ("quantize.imatrix.chunks_count", int(matrix["chunk_count"] or 0)),
        (IMATRIX_LANGUAGES_KEY, _fit(",".join(matrix["languages"]))),
        (IMATRIX_TOKENS_KEY, int(matrix["tokens_per_language"] or 0)),
    ]
    overrides = (llama_cpp.llama_model_kv_override * (len(values) + 1))()
    for entry, (key, value) in zip(overrides, values):
        entry.key = key.encode()
        if isinstance(value, int):
            entry.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
            entry.value.val_i64 = value
        else:
            entry.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            entry.value.val_str = value.encode()
    overrides[len(values)].key = b""
    return overrides

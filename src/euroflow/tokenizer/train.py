"""Train the SentencePiece BPE tokenizer and write it with matching Hugging Face files.

Tokenizer directory (the contract between rooms):

- ``tokenizer.model``: SentencePiece BPE, ``byte_fallback=True`` (no ``<unk>`` in practice),
  ``split_digits=True``, ids ``<unk>``=0, ``<s>``=1, ``</s>``=2, no pad; byte pieces ``<0x00>``..``<0xFF>``
  are ids 3..258. Normalization is the identity (text is NFC-normalized by the data cleaning, and kept
  as is here, extra spaces included); a ``▁`` is prepended to the text (``add_dummy_prefix``).
- ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``: a Hugging Face fast
  tokenizer built from the same vocabulary and merges. ``tok(text, add_special_tokens=False).input_ids``
  equals ``sp.encode(text)``; with special tokens (the default) ``<s>`` is prepended (Llama convention),
  no ``</s>``. Special-token strings inside text are encoded as text, as SentencePiece does.
- ``tokenizer_meta.json``: ``{"type", "vocab_size", "unk_id", "bos_id", "eos_id", "pad_id"}``.
"""

from __future__ import annotations

import io
import json
import os
import random
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from euroflow.atomic import atomic_path
from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json
from euroflow.tokenizer.balance import REPORT_FILE as PARITY_REPORT

MODEL_FILE = "tokenizer.model"
META_FILE = "tokenizer_meta.json"
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
MAX_SENTENCE_BYTES = 1 << 16


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    """Lines of every text; SentencePiece trains on sentences, and newlines are left to byte fallback."""
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def train_tokenizer_from_texts(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: Path,
    *,
    character_coverage: float = 0.9995,
    seed: int = 1234,
) -> Path:
    """Train on ``texts`` and write the tokenizer directory ``out_dir`` atomically; return ``out_dir``."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        _train_into(tmp, texts, vocab_size, character_coverage, seed, name=str(out_dir))
    return out_dir


def _train_into(
    directory: Path, texts: Iterable[str], vocab_size: int, character_coverage: float, seed: int, name: str
) -> None:
    import sentencepiece as spm

    spm.set_random_generator_seed(seed)
    # written from memory, so no temporary path is recorded in the model: equal inputs give equal bytes
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(texts),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            max_sentence_length=MAX_SENTENCE_BYTES,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise EuroflowError(f"{name}: SentencePiece training failed: {exc}") from None
    (directory / MODEL_FILE).write_bytes(model.getvalue())
    write_hf_files(directory)
    processor = load_sentencepiece(directory)
    meta = {
        "type": "sentencepiece-bpe",
        "vocab_size": processor.get_piece_size(),
        "unk_id": processor.unk_id(),
        "bos_id": processor.bos_id(),
        "eos_id": processor.eos_id(),
        "pad_id": processor.pad_id(),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_sentencepiece(tokenizer_dir: str | os.PathLike):
    import sentencepiece as spm

    path = Path(tokenizer_dir) / MODEL_FILE
    if not path.is_file():
        raise EuroflowError(f"{path}: tokenizer model not found")
    return spm.SentencePieceProcessor(model_file=str(path))


def read_meta(tokenizer_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(tokenizer_dir) / META_FILE
    meta = read_json(path, f"tokenizer metadata (is {tokenizer_dir} a tokenizer directory?)")
    for key in ("vocab_size", "bos_id", "eos_id"):
        if not isinstance(meta.get(key), int) or meta[key] < 0:
            raise EuroflowError(f"{path}: missing or non-integer field '{key}' (got {meta.get(key)!r})")
    return meta


def write_hf_files(tokenizer_dir: Path) -> None:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` next to the model."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers.tokenization_utils_base import generate_merges

    processor = load_sentencepiece(tokenizer_dir)
    size = processor.get_piece_size()
    vocab = {processor.id_to_piece(i): i for i in range(size)}
    not_mergeable = {
        processor.id_to_piece(i)
        for i in range(size)
        if processor.is_control(i) or processor.is_unknown(i) or processor.is_byte(i)
    }
    # merges ranked by the id of the merged piece: the order SentencePiece BPE applies them in
    merges = generate_merges(vocab, skip_tokens=not_mergeable)
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=UNK, fuse_unk=True, byte_fallback=True))
    # SentencePiece's add_dummy_prefix always prepends "▁", even before leading spaces (Metaspace would not)
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (UNK, BOS, EOS)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tokenizer.save(str(tokenizer_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "add_bos_token": True,
        "add_eos_token": False,
        "split_special_tokens": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000_000,
    }
    (tokenizer_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK}
    (tokenizer_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def _flores_sentences(data_root: Path, langs: Iterable[str]) -> set[str] | None:
    """Every FLORES sentence of ``langs`` (all splits), to keep them out of the sample; None if absent."""
    from euroflow.data.flores import SPLITS, flores_file, load_flores

    sentences: set[str] = set()
    for lang in langs:
        if not flores_file(data_root, lang).is_file():
            return None
        sentences.update(s.strip() for s in load_flores(data_root, lang, SPLITS))
    return sentences


def _lines(shards: str | os.PathLike | Sequence[str | os.PathLike]) -> Iterator[str]:
    from euroflow.data.hplt import read_shard

    for path in [shards] if isinstance(shards, (str, os.PathLike)) else shards:
        for doc in read_shard(path):
            for line in doc["text"].split("\n"):
                if line.strip():
                    yield line


def sample_texts(
    clean_shards: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
    weights: Mapping[str, float],
    sample_chars: int,
    seed: int,
    exclude: set[str] | None = None,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Draw about ``weights[lang] * sample_chars`` characters of whole lines per language.

    Two streaming passes per shard (memory bounded by the sample): count the characters available,
    then keep each line ``k`` times plus once more with probability ``f``, where ``k + f`` = target /
    available, with a generator seeded by ``(seed, lang)``. A language with less text than its share is
    thus repeated, so its weight in the tokenizer's statistics is still the blend's. Lines in
    ``exclude`` (FLORES sentences) are never drawn.
    """
    exclude = exclude or set()
    samples: dict[str, list[str]] = {}
    report: dict[str, Any] = {}
    for lang, path in clean_shards.items():
        target = round(weights.get(lang, 0.0) * sample_chars)
        available = excluded = 0
        for line in _lines(path):
            if line.strip() in exclude:
                excluded += 1
            else:
                available += len(line)
        chosen: list[str] = []
        if target > 0 and available > 0:
            repeats, fraction = divmod(target / available, 1.0)
            rng = random.Random(f"{seed}:{lang}")
            for line in _lines(path):
                if line.strip() in exclude:
                    continue
                chosen.extend([line] * int(repeats))
                if rng.random() < fraction:
                    chosen.append(line)
        taken = sum(len(line) for line in chosen)
        samples[lang] = chosen
        report[lang] = {
            "weight": weights.get(lang, 0.0),
            "target_chars": target,
            "sampled_chars": taken,
            "sampled_lines": len(chosen),
            "available_chars": available,
            "epochs": taken / available if available else None,
            "flores_lines_excluded": excluded,
        }
    return samples, report


def train_tokenizer(
    config: Mapping[str, Any],
    clean_shards: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
    blend_path: str | os.PathLike,
    out_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Train the run's tokenizer on a sample of the clean shards weighted like the training blend.

    Writes the tokenizer directory ``out_dir`` (see the module docstring) including
    ``training_sample.json`` (per-language target/sampled characters; timings are only returned). FLORES sentences are
    kept out of the sample when the FLORES files are present under the data root.
    """
    from euroflow.config import data_root
    from euroflow.data.sampling import read_blend

    blend = read_blend(blend_path)
    weights = {entry["lang"]: float(entry["weight"]) for entry in blend["languages"]}
    missing = [lang for lang, w in weights.items() if w > 0 and lang not in clean_shards]
    if missing:
        raise EuroflowError(f"{blend_path}: language {missing[0]} has weight {weights[missing[0]]} but no clean shard was given")
    unknown = [lang for lang in clean_shards if lang not in weights]
    if unknown:
        raise EuroflowError(f"{blend_path}: a clean shard was given for {unknown[0]}, which is not in the blend")
    tok_cfg = config["tokenizer"]
    seed = int(config["run"].get("seed", 1234))
    exclude = _flores_sentences(data_root(config), clean_shards)
    vocab_size, coverage = int(tok_cfg["vocab_size"]), float(tok_cfg.get("character_coverage", 0.9995))
    sample_chars = int(tok_cfg["sample_chars"])
    out_dir = Path(out_dir)

    def train(directory: Path, texts: list[str]) -> None:
        _train_into(directory, texts, vocab_size, coverage, seed, name=str(out_dir))

    if tok_cfg.get("sampling", "weighted") == "parity":
        return _train_for_parity(config, clean_shards, weights, exclude, train, out_dir, blend_path, blend.get("policy"))
    started = time.perf_counter()
    samples, report = sample_texts(clean_shards, weights, sample_chars, seed, exclude)
    sampled = time.perf_counter()
    texts = [line for lang in clean_shards for line in samples[lang]]
    # mixed deterministically, so any cap SentencePiece puts on its input cannot cut one language short
    random.Random(seed).shuffle(texts)
    with atomic_path(out_dir, directory=True) as tmp:
        train(tmp, texts)
        trained = time.perf_counter()
        summary = {
            "vocab_size": vocab_size,
            "sample_chars_target": sample_chars,
            "sample_chars": sum(r["sampled_chars"] for r in report.values()),
            "sample_lines": len(texts),
            "seed": seed,
            "blend": str(blend_path),
            "blend_policy": blend.get("policy"),
            "sampling": "weighted",
            "flores_excluded": exclude is not None,
            "languages": report,
        }
        # timings stay out of the artifact, so the same inputs and seed give a byte-identical directory
        (tmp / "training_sample.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return {**summary, "sampling_seconds": sampled - started, "training_seconds": trained - sampled}



def _train_for_parity(config, clean_shards, weights, exclude, train, out_dir: Path, blend_path, blend_policy) -> dict[str, Any]:
    """``tokenizer.sampling: parity`` (euroflow.tokenizer.balance): one pool drawn from the shards, rounds trained from it."""
    from euroflow.config import data_root
    from euroflow.tokenizer.balance import train_for_parity

    tok_cfg = config["tokenizer"]
    settings = tok_cfg["parity"]  # its defaults are the schema's
    seed = int(config["run"].get("seed", 1234))
    sample_chars = int(tok_cfg["sample_chars"])
    started = time.perf_counter()
    pool, report = sample_texts(clean_shards, {lang: w * settings["max_factor"] for lang, w in weights.items()},
                                sample_chars, seed, exclude)
    sampled = time.perf_counter()

    def natural() -> list[str]:
        available = {lang: float(r["available_chars"]) for lang, r in report.items()}
        total = sum(available.values())
        samples, _ = sample_texts(clean_shards, {lang: a / total for lang, a in available.items()}, sample_chars, seed, exclude)
        texts = [line for lang in clean_shards for line in samples[lang]]
        random.Random(seed).shuffle(texts)
        return texts

    languages_used = {lang: w for lang, w in weights.items() if lang in clean_shards}
    with atomic_path(out_dir, directory=True) as tmp:
        balance = train_for_parity(pool=pool, weights=languages_used, sample_chars=sample_chars, seed=seed,
                                   data_root=data_root(config), settings=settings, train=train,
                                   natural=natural if settings["compare_natural"] else None, out_dir=tmp)
        trained = time.perf_counter()
        for lang, row in report.items():
            row["pool_chars"] = row.pop("sampled_chars")
            row.update(weight=weights.get(lang, 0.0), share=balance["shares"][lang],
                       target_chars=round(balance["shares"][lang] * sample_chars),
                       sampled_chars=balance["rounds"][balance["chosen_round"]]["sampled_chars"][lang])
            row["epochs"] = row["sampled_chars"] / row["available_chars"] if row["available_chars"] else None
        summary = {
            "vocab_size": int(tok_cfg["vocab_size"]),
            "sample_chars_target": sample_chars,
            "blend": str(blend_path),
            "blend_policy": blend_policy,
            "sample_chars": sum(r["sampled_chars"] for r in report.values()),
            "seed": seed,
            "sampling": "parity",
            "flores_excluded": exclude is not None,
            "languages": report,
        }
        (tmp / "training_sample.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (tmp / PARITY_REPORT).write_text(json.dumps(balance, indent=2) + "\n", encoding="utf-8")
    return {**summary, "parity": balance,
            "sampling_seconds": sampled - started, "training_seconds": trained - sampled}

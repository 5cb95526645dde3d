"""FLORES-200 (via SIB-200) sentences for evaluation, and Serbian Cyrillic -> Latin transliteration.

Files: ``<data_root>/parallel/flores200_sib200/{lang}.jsonl.gz`` with ``{index_id, split, category, text}``;
1004 sentences per language (701 train, 99 dev, 204 test), aligned by ``index_id``. FLORES has no
Serbian Latin file: ``sr-Latn`` is derived from ``sr`` by the standard one-to-one transliteration.
Evaluation only: FLORES must never enter a training or tokenizer corpus.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Iterable

from euroflow import languages
from euroflow.errors import EuroflowError

FLORES_DIR = Path("parallel") / "flores200_sib200"
SPLITS = ("train", "dev", "test")
DERIVED = {"sr-Latn": "sr"}

_CYRILLIC_TO_LATIN = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "ђ": "đ", "е": "e", "ж": "ž", "з": "z", "и": "i",
    "ј": "j", "к": "k", "л": "l", "љ": "lj", "м": "m", "н": "n", "њ": "nj", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "ћ": "ć", "у": "u", "ф": "f", "х": "h", "ц": "c", "ч": "č", "џ": "dž", "ш": "š",
}
_CYRILLIC_TO_LATIN.update({cyr.upper(): lat.capitalize() for cyr, lat in _CYRILLIC_TO_LATIN.items()})
_DIGRAPH_CAPITALS = {"Љ": "LJ", "Њ": "NJ", "Џ": "DŽ"}


def transliterate_sr_cyrl_to_latn(text: str) -> str:
    """Serbian Cyrillic to Serbian Latin (Gaj's alphabet), letter by letter.

    Љ, Њ, Џ become Lj, Nj, Dž, or LJ, NJ, DŽ inside an all-capitals word (when the next letter is a
    capital, or when the word ends there after a capital). Other characters are kept as they are.
    """
    out = []
    for index, char in enumerate(text):
        if char in _DIGRAPH_CAPITALS:
            after = text[index + 1] if index + 1 < len(text) else ""
            before = text[index - 1] if index > 0 else ""
            all_caps = after.isupper() or (not after.isalpha() and before.isupper())
            out.append(_DIGRAPH_CAPITALS[char] if all_caps else _CYRILLIC_TO_LATIN[char])
        else:
            out.append(_CYRILLIC_TO_LATIN.get(char, char))
    return "".join(out)


def is_derived(lang: str) -> bool:
    """True when FLORES has no file for ``lang`` and its sentences are derived (``sr-Latn``)."""
    return lang in DERIVED


def flores_file(data_root: str | os.PathLike, lang: str) -> Path:
    return Path(data_root) / FLORES_DIR / f"{DERIVED.get(lang, lang)}.jsonl.gz"


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise EuroflowError(
            f"{path}: FLORES file not found; set paths.data_root in the run config or the EUROFLOW_DATA "
            "environment variable to the multilingual data bundle"
        )
    records = []
    lineno = 0
    try:
        with gzip.open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise EuroflowError(f"{path}:{lineno}: invalid UTF-8 at byte {exc.start}") from None
                except json.JSONDecodeError as exc:
                    raise EuroflowError(f"{path}:{lineno}: malformed JSON: {exc.msg}") from None
                for key, kind in (("index_id", int), ("split", str), ("text", str)):
                    if not isinstance(record.get(key), kind):
                        raise EuroflowError(f"{path}:{lineno}: missing or wrong type of field '{key}'")
                records.append(record)
    except (OSError, EOFError, zlib.error) as exc:
        raise EuroflowError(f"{path}: unreadable gzip after line {lineno}: {exc}") from None
    return records


def load_flores(data_root: str | os.PathLike, lang: str, splits: Iterable[str]) -> list[str]:
    """Sentences of ``lang`` in the given splits, sorted by ``index_id`` (so aligned across languages)."""
    languages.get(lang)
    splits = list(splits)
    for split in splits:
        if split not in SPLITS:
            raise EuroflowError(f"unknown FLORES split {split!r}; known: {', '.join(SPLITS)}")
    wanted = set(splits)
    records = sorted(
        (r for r in _read_records(flores_file(data_root, lang)) if r["split"] in wanted),
        key=lambda r: r["index_id"],
    )
    texts = [r["text"] for r in records]
    if lang in DERIVED:
        texts = [transliterate_sr_cyrl_to_latn(t) for t in texts]
    return texts

"""Decontamination: training documents that share a word n-gram with an evaluation set the run uses.

The rule of GPT-3 and OLMo: a training document is contaminated by an evaluation set when one of its
word ``ngram``-grams (13 by default) is also an ``ngram``-gram of one of the set's texts, both normalized
as for deduplication (casefold, whitespace collapsed; :func:`euroflow.data.dedup.normalize`). The
evaluation texts of a training language are its own: FLORES (every split the bundle has: the run's
bits-per-byte and tokenizer parity read it), and the multiple-choice tasks of the run's
``evaluation.multiple_choice`` that the bundle has in that language (Belebele passages are FLORES
sentences; questions and choices of EXAMS and XCOPA). An evaluation text shorter than ``ngram`` words
cannot be matched this way; such texts are counted as ``unchecked`` per set, not guessed at.

1. :func:`build_index` (one job per language): every n-gram's 64-bit hash
   (:func:`euroflow.data.dedup.shingle_hashes64`; two different n-grams of natural text collide with
   probability about 2**-64) with a bit per evaluation set, sorted, in one ``.npz``. Evaluation texts
   are cleaned as prepare cleans documents (control characters, NFC) before they are hashed.
2. :class:`Checker` (in each prepare job): a batch of documents' n-grams looked up in the index (a
   flag table on the hashes' top bits, then ``searchsorted`` for the few it lets through); per document, the bits of the sets it overlaps. ``data.decontamination.action``
   says what prepare does with such a document: ``remove`` it (counted as ``contaminated``) or ``flag``
   it (kept and counted). Either way the shard report counts the documents per set and lists them.
"""

from __future__ import annotations

import json
import os
import zipfile
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from euroflow.atomic import atomic_path
from euroflow.data.dedup import WordBatch, splitmix64, unmix64
from euroflow.errors import EuroflowError

SETS = ("flores", "belebele", "exams", "xcopa")  # bit i of a hash's mask: SETS[i]
_BUCKET_BITS = 22  # 4 MiB of flags: about 1 % set for 50,000 evaluation n-grams
EXAMPLES = 100  # contaminated documents listed per shard report (all are counted)

PathLike = str | os.PathLike


def evaluation_texts(data_root: PathLike, lang: str, tasks: Sequence[str]) -> dict[str, list[str]]:
    """``{set: texts}`` of the evaluation sets a run with these multiple-choice ``tasks`` uses in ``lang``."""
    from euroflow.bundle import MC_TASK_LANGUAGES, mc_file
    from euroflow.data.flores import SPLITS, load_flores
    from euroflow.evaluate.multiple_choice import load_items

    texts = {"flores": load_flores(data_root, lang, SPLITS)}
    for task in tasks:
        if task not in SETS:
            raise EuroflowError(f"decontamination: unknown evaluation set {task!r}; known: {', '.join(SETS)}")
        if lang in MC_TASK_LANGUAGES.get(task, ()):
            items = load_items(mc_file(data_root, task, lang))
            texts[task] = list(dict.fromkeys(
                text for item in items for text in (item.context, item.question, *item.choices) if text))
    return texts


def clean(text: str) -> str:
    """An evaluation text cleaned as prepare cleans a training document (control characters, NFC), so
    the same sentence hashes the same on both sides."""
    import unicodedata

    from euroflow.data.prepare import CONTROL_CHARS

    return unicodedata.normalize("NFC", CONTROL_CHARS.sub("", text))


def build_index(texts: Mapping[str, Sequence[str]], ngram: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(hashes uint64 sorted unique, masks uint8, summary)``; the summary counts texts and n-grams per set."""
    from euroflow.data.dedup import normalize, shingle_hashes64

    if ngram < 1:
        raise EuroflowError(f"decontamination: ngram {ngram} must be >= 1")
    hashes, masks, summary = [], [], {}
    for name, items in texts.items():
        normalized = [normalize(clean(t)).encode("utf-8") for t in items]
        found, _ = shingle_hashes64(normalized, ngram, short_texts=False)
        unchecked = sum(1 for t in normalized if len(t.split(b" ")) < ngram)
        hashes.append(np.unique(found))
        masks.append(np.full(len(hashes[-1]), 1 << SETS.index(name), dtype=np.uint8))
        summary[name] = {"texts": len(items), "unchecked": unchecked, "ngrams": int(len(hashes[-1]))}
    every = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    mask = np.concatenate(masks) if masks else np.zeros(0, np.uint8)
    unique, inverse = np.unique(every, return_inverse=True)
    merged = np.zeros(len(unique), dtype=np.uint8)
    np.bitwise_or.at(merged, inverse.ravel(), mask)
    return unique, merged, summary


def write_index(path: PathLike, hashes: np.ndarray, masks: np.ndarray, params: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, hashes=hashes, masks=masks, params=np.array(json.dumps(dict(params), sort_keys=True)))


class Checker:
    """The evaluation n-grams of one language, read from its index; :meth:`check` a batch of texts."""

    def __init__(self, path: PathLike):
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                self.hashes, self.masks = npz["hashes"], npz["masks"]
                self.params = json.loads(str(npz["params"]))
        except FileNotFoundError:
            raise EuroflowError(f"{path}: decontamination index not found; run the language's contamination_index job") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise EuroflowError(f"{path}: not a readable decontamination index ({exc})") from None
        if self.hashes.dtype != np.uint64 or self.masks.shape != self.hashes.shape:
            raise EuroflowError(f"{path}: not a decontamination index (hashes {self.hashes.dtype}, masks {self.masks.shape})")
        self.path, self.ngram = path, int(self.params["ngram"])
        self.sets = [name for name in SETS if name in self.params.get("sets", {})]  # checked, in SETS order

    def check(self, texts: list[bytes] | WordBatch) -> np.ndarray:
        """One uint8 per text (normalized UTF-8, or a :class:`~euroflow.data.dedup.WordBatch` of them):
        the bits of the evaluation sets it shares an n-gram with (0: none)."""
        batch = texts if isinstance(texts, WordBatch) else WordBatch(texts)
        out = np.zeros(len(batch), dtype=np.uint8)
        if not len(batch) or not len(self.hashes):
            return out
        polynomials, offsets = batch.shingle_hashes(self.ngram, short_texts=False, mixed=False)
        # nearly no n-gram of a training text is an evaluation n-gram: a table lookup on the top bits of the
        # unmixed hashes rules most out, and only the rest are mixed and searched for (a sorted search per
        # n-gram took 1.6 s of 20k documents, mixing them all 0.1 s)
        maybe = np.flatnonzero(self._buckets[polynomials >> np.uint64(64 - _BUCKET_BITS)])
        hashes = splitmix64(polynomials[maybe])
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        found = self.hashes[at] == hashes
        hit, at = maybe[found], at[found]
        if len(hit):
            text = np.searchsorted(offsets, hit, side="right") - 1
            np.bitwise_or.at(out, text, self.masks[at])
        return out

    @cached_property
    def _buckets(self) -> np.ndarray:
        buckets = np.zeros(1 << _BUCKET_BITS, dtype=bool)
        buckets[unmix64(self.hashes) >> np.uint64(64 - _BUCKET_BITS)] = True
        return buckets


def set_names(mask: int) -> list[str]:
    return [name for i, name in enumerate(SETS) if mask & (1 << i)]

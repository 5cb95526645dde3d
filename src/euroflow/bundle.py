"""The files of the shared data bundle (``paths.data_root``) that a run reads, with their datasets and
licences: the rules declare them as inputs, so provenance records each one with its sha256 and
lineage reaches the upstream files; ``euroflow data bundle`` writes them into one manifest.

Layout of the bundle (its own record: ``SOURCES.md``): NTREX-128 in ``parallel/ntrex128/`` (the
demo's training text), FLORES-200 via SIB-200 in ``parallel/flores200_sib200/``, and the
multiple-choice sets in ``mc/<task>/``. FLORES and the multiple-choice sets are evaluation only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath

from euroflow.data.flores import FLORES_DIR, flores_file
from euroflow.provenance.hashing import sha256_file as sha256


@dataclass(frozen=True)
class Dataset:
    name: str
    directory: PurePath
    licence: str
    licence_url: str
    evaluation_only: bool


CC_BY_SA_4 = ("CC BY-SA 4.0", "https://creativecommons.org/licenses/by-sa/4.0/")
CC_BY_4 = ("CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/")
# licences as SOURCES.md gives them
DATASETS = (
    Dataset("NTREX-128", PurePath("parallel", "ntrex128"), *CC_BY_SA_4, evaluation_only=False),
    Dataset("FLORES-200 (SIB-200)", FLORES_DIR, *CC_BY_SA_4, evaluation_only=True),
    Dataset("Belebele", PurePath("mc", "belebele"), *CC_BY_SA_4, evaluation_only=True),
    Dataset("EXAMS", PurePath("mc", "exams"), *CC_BY_SA_4, evaluation_only=True),
    Dataset("XCOPA", PurePath("mc", "xcopa"), *CC_BY_4, evaluation_only=True),
)
SOURCES_FILE = "SOURCES.md"

# the multiple-choice languages the bundle has, per task
MC_TASK_LANGUAGES: dict[str, tuple[str, ...]] = {
    "belebele": ("de", "en"),
    "exams": ("bg", "de", "es", "fr", "hr", "hu", "it", "lt", "mk", "pl", "pt", "sq", "sr", "tr"),
    "xcopa": ("et", "it", "tr"),
}


def dataset_of(path: str | os.PathLike) -> Dataset | None:
    """The bundle dataset a path belongs to, wherever the bundle lies (from its last directories)."""
    parts = PurePath(path).parts
    for dataset in DATASETS:
        n = len(dataset.directory.parts)
        if len(parts) > n and parts[-n - 1 : -1] == dataset.directory.parts:
            return dataset
    return None


def root_of(path: str | os.PathLike) -> str | None:
    """The bundle directory a bundle file lies in (``<root>/<dataset directory>/<file>``), or None."""
    dataset = dataset_of(path)
    if dataset is None:
        return None
    return str(PurePath(path).parents[len(dataset.directory.parts)])


def ntrex_files(data_root: str | os.PathLike, lang: str) -> list[str]:
    from euroflow.data.ntrex import DOCUMENT_IDS, NTREX_DIR, ntrex_file

    return [str(ntrex_file(data_root, lang)), str(Path(data_root) / NTREX_DIR / DOCUMENT_IDS)]


def flores_files(data_root: str | os.PathLike, langs: list[str] | tuple[str, ...]) -> list[str]:
    """One file per language (``sr-Latn`` is derived from ``sr``'s file), each once, in order."""
    return list(dict.fromkeys(str(flores_file(data_root, lang)) for lang in langs))


def mc_file(data_root: str | os.PathLike, task: str, lang: str) -> Path:
    suffix = ".jsonl.gz" if task == "belebele" else ".jsonl"
    return Path(data_root) / "mc" / task / f"{lang}{suffix}"


def mc_languages(task: str, langs: list[str] | tuple[str, ...]) -> list[str]:
    return [lang for lang in MC_TASK_LANGUAGES.get(task, ()) if lang in langs]


def mc_files(data_root: str | os.PathLike, tasks: list[str], langs: list[str] | tuple[str, ...]) -> list[str]:
    return [str(mc_file(data_root, task, lang)) for task in tasks for lang in mc_languages(task, langs)]


def manifest(data_root: str | os.PathLike, files: list[str]) -> dict:
    """What ``euroflow data bundle`` writes: each file the run reads from the bundle, relative to
    the bundle, with its dataset, licence and sha256; and the bundle's own SOURCES.md."""
    root = Path(data_root)
    entries = []
    for name in sorted(dict.fromkeys(files)):
        path = Path(name)
        dataset = dataset_of(path)
        entries.append({
            "path": os.path.relpath(path, root),
            "dataset": dataset.name if dataset else None,
            "licence": dataset.licence if dataset else None,
            "licence_url": dataset.licence_url if dataset else None,
            "evaluation_only": dataset.evaluation_only if dataset else None,
            "bytes": path.stat().st_size,
            "sha256": sha256(path),
        })
    sources = root / SOURCES_FILE
    return {
        "data_root": str(root),
        "sources": {"path": SOURCES_FILE, "sha256": sha256(sources)} if sources.is_file() else None,
        "datasets": sorted({e["dataset"] for e in entries if e["dataset"]}),
        "files": entries,
    }


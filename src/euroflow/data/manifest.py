"""Which crawl shards a run reads: the shard manifest, so the workflow never crawls the filesystem per rule.

A manifest is a tab-separated text file, one shard per line: ``<language key>\\t<path>`` (``#`` starts a
comment; a relative path is relative to the manifest's directory). ``euroflow data manifest`` writes one
from a directory laid out like HPLT (``<dir>/<ISO 639-3 + script>/<files>``). Without a manifest the
workflow lists each language's directory once when it is parsed.

A shard's id (the ``{shard}`` wildcard, and the name of its outputs) is its path relative to the language
directory without the format suffix (``1`` for ``deu_Latn/1.jsonl.zst``, ``train/000_00000`` for a
FineWeb-2 file), or the file name without suffix when the path lies elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from euroflow import languages
from euroflow.atomic import write_text
from euroflow.data.hplt import not_a_shard
from euroflow.data.readers import shard_format
from euroflow.errors import EuroflowError


def _strip_suffix(name: str) -> str:
    return name[: -len(shard_format(name)) - 1]


def shard_id(path: str | os.PathLike, language_dir: str | os.PathLike | None = None) -> str:
    from euroflow.config import path_problem

    path = Path(path)
    problem = path_problem(str(path))
    if problem:
        raise EuroflowError(f"shard {str(path)!r}: the path {problem}")
    ident = None
    if language_dir is not None:
        try:
            ident = _strip_suffix(path.relative_to(language_dir).as_posix())
        except ValueError:
            pass
    if ident is None:
        ident = _strip_suffix(path.name)
    # a shard's outputs are named <id>.<kind>: a dot inside the id would make them ambiguous
    return ident.replace(".", "_")


def list_language(shards_dir: str | os.PathLike, lang: str, pattern: str = "*.jsonl.zst") -> dict[str, str]:
    """``{shard id: path}`` of one language's shards under ``shards_dir/<hplt code>``, sorted by path
    (empty when there are none)."""
    language_dir = Path(shards_dir) / languages.get(lang).hplt
    try:
        matches = sorted(language_dir.glob(pattern))
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop under ** (pathlib)
        raise EuroflowError(f"data.source.shards: cannot list {language_dir}/{pattern}: {exc}") from None
    found = []
    for path in matches:
        if path.is_file():
            found.append(path)
        elif path.is_symlink():  # a shard that would be skipped without a word
            raise EuroflowError(f"{path}: {not_a_shard(path)} among the shards of {lang} (data.source.shards); fix or remove it")
    listed: dict[str, str] = {}
    for path in found:
        ident = shard_id(path, language_dir)
        if ident in listed:
            raise EuroflowError(f"{path}: a second shard with id {ident!r} for language {lang} (beside {listed[ident]})")
        listed[ident] = str(path)
    return listed


def read_manifest(path: str | os.PathLike, shards_dir: str | os.PathLike | None = None) -> dict[str, dict[str, str]]:
    """``{lang: {shard id: path}}`` from a manifest file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise EuroflowError(f"{path}: shard manifest not found (data.source.manifest)")
    manifest: dict[str, dict[str, str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EuroflowError(f"{path}: not a text file (invalid UTF-8 at byte {exc.start}; data.source.manifest)") from None
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.lstrip().startswith("#"):  # a '#' inside a path is part of it
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise EuroflowError(f"{path}:{lineno}: expected '<language key><TAB><path>', got {len(fields)} fields")
        lang, shard = fields[0].strip(), fields[1]
        try:
            language = languages.get(lang)
        except EuroflowError as exc:
            raise EuroflowError(f"{path}:{lineno}: {exc}") from None
        shard_path = Path(shard) if Path(shard).is_absolute() else path.parent / shard
        language_dir = Path(shards_dir) / language.hplt if shards_dir else shard_path.parent
        try:
            ident = shard_id(shard_path, language_dir)
        except EuroflowError as exc:
            raise EuroflowError(f"{path}:{lineno}: {exc}") from None
        if ident in manifest.setdefault(lang, {}):
            raise EuroflowError(f"{path}:{lineno}: a second shard with id {ident!r} for language {lang}")
        manifest[lang][ident] = str(shard_path)
    return manifest


def write_manifest(
    shards_dir: str | os.PathLike, langs: Iterable[str], out: str | os.PathLike, pattern: str = "*.jsonl.zst"
) -> int:
    """List every language's shards once and write the manifest ``out`` (paths relative to it when possible)."""
    out = Path(out)
    lines = ["# euroflow shard manifest: <language key>\\t<path>"]
    for lang in langs:
        listed = list_language(shards_dir, lang, pattern)
        if not listed:
            raise EuroflowError(f"{shards_dir}: no {languages.get(lang).hplt}/{pattern} for language {lang}")
        for shard in listed.values():
            lines.append(f"{lang}\t{os.path.relpath(Path(shard).resolve(), out.parent.resolve())}")
    write_text(out, "\n".join(lines) + "\n")
    return len(lines) - 1

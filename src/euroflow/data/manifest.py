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
from euroflow.data.readers import shard_format
from euroflow.errors import EuroflowError


def _strip_suffix(name: str) -> str:
    return name[: -len(shard_format(name)) - 1]


def shard_id(path: str | os.PathLike, language_dir: str | os.PathLike | None = None) -> str:
    path = Path(path)
    if language_dir is not None:
        try:
            return _strip_suffix(path.relative_to(language_dir).as_posix())
        except ValueError:
            pass
    return _strip_suffix(path.name)


def list_language(shards_dir: str | os.PathLike, lang: str, pattern: str = "*.jsonl.zst") -> dict[str, str]:
    """``{shard id: path}`` of one language's shards under ``shards_dir/<hplt code>``, sorted by path."""
    language_dir = Path(shards_dir) / languages.get(lang).hplt
    found = sorted(language_dir.glob(pattern))
    if not found:
        raise EuroflowError(f"data.source.shards: no {language_dir.name}/{pattern} under {shards_dir} for language {lang}")
    return {shard_id(p, language_dir): str(p) for p in found}


def read_manifest(path: str | os.PathLike, shards_dir: str | os.PathLike | None = None) -> dict[str, dict[str, str]]:
    """``{lang: {shard id: path}}`` from a manifest file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise EuroflowError(f"{path}: shard manifest not found (data.source.manifest)")
    manifest: dict[str, dict[str, str]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise EuroflowError(f"{path}:{lineno}: expected '<language key><TAB><path>', got {len(fields)} fields")
        lang, shard = fields
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
        for shard in list_language(shards_dir, lang, pattern).values():
            lines.append(f"{lang}\t{os.path.relpath(Path(shard).resolve(), out.parent.resolve())}")
    write_text(out, "\n".join(lines) + "\n")
    return len(lines) - 1

"""HPLT shard reading and writing: round trips, and one-line errors that leave no output behind."""

from __future__ import annotations

import json
import re

import pytest
import zstandard

from euroflow.data import cli
from euroflow.data.hplt import decompressed_blocks, read_shard, write_shard
from euroflow.data.ntrex import SYNTHETIC_FIELDS, build_ntrex_shard, ntrex_documents
from euroflow.errors import EuroflowError


def _zst(path, payload: bytes) -> None:
    path.write_bytes(zstandard.ZstdCompressor().compress(payload))


def _good_lines(n: int) -> list[bytes]:
    return [json.dumps({"id": f"d{i}", "text": f"document number {i} " * 20, "lang": ["eng_Latn"], "filter": "keep"}).encode() for i in range(n)]


def test_write_read_round_trip_keeps_fields_and_unicode(tmp_path):
    docs = [
        {"id": "a", "text": "Γειά σου κόσμε\nდილა მშვიდობისა 😀", "lang": ["ell_Grek"], "doc_scores": [9.5, 0.1]},
        {"id": "b", "text": "", "lang": ["eng_Latn"], "seg_langs": []},
    ]
    path = tmp_path / "s.jsonl.zst"
    assert write_shard(path, docs) == 2
    assert list(read_shard(path)) == docs


def test_multi_frame_shard_is_read_across_frames(tmp_path):
    lines = _good_lines(6)
    path = tmp_path / "multi.jsonl.zst"
    c = zstandard.ZstdCompressor()
    path.write_bytes(c.compress(b"\n".join(lines[:3]) + b"\n") + c.compress(b"\n".join(lines[3:])))
    assert [d["id"] for d in read_shard(path)] == [f"d{i}" for i in range(6)]


def test_a_highly_compressible_stream_is_decompressed_in_bounded_pieces(tmp_path):
    path = tmp_path / "bomb.zst"
    _zst(path, b"x" * (64 << 20))  # ~2 KB of zstd: a single 64 KiB read would expand to all 64 MB at once
    sizes = [len(block) for block in decompressed_blocks(path, [0])]
    assert sum(sizes) == 64 << 20 and max(sizes) <= 32 << 20


def test_ntrex_shard_round_trip(tmp_path, data_root):
    out = tmp_path / "ka.jsonl.zst"
    summary = build_ntrex_shard(data_root, "ka", out)
    docs = list(read_shard(out))
    assert summary["docs"] == len(docs) == 123
    lines = (data_root / "parallel" / "ntrex128" / "ka.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    assert "\n".join(d["text"] for d in docs) == "\n".join(lines)
    assert sum(len(d["seg_langs"]) for d in docs) == 1997
    first = docs[0]
    assert first["id"] == "ntrex128/bbc.381790/ka"
    assert first["lang"] == ["kat_Geor"] and first["collection"] == "ntrex128"
    assert first["euroflow_synthetic_fields"] == SYNTHETIC_FIELDS
    assert all(field in first for field in SYNTHETIC_FIELDS)
    assert first["euroflow_source"]["lines"] == [1, len(first["text"].split("\n"))]
    assert len({d["id"] for d in docs}) == 123


def test_ntrex_documents_align_across_languages(data_root):
    de, uk = ntrex_documents(data_root, "de"), ntrex_documents(data_root, "uk")
    assert [d["euroflow_source"]["document_id"] for d in de] == [d["euroflow_source"]["document_id"] for d in uk]
    assert [d["text"].count("\n") for d in de] == [d["text"].count("\n") for d in uk]


def test_missing_data_root_says_where_and_how(tmp_path):
    with pytest.raises(EuroflowError) as err:
        ntrex_documents(tmp_path / "nowhere", "de")
    message = str(err.value)
    assert "nowhere" in message and "paths.data_root" in message and "EUROFLOW_DATA" in message
    assert "parallel/ntrex128" in message


def test_missing_language_file_names_expected_path(tmp_path, data_root):
    (tmp_path / "parallel" / "ntrex128").mkdir(parents=True)
    (tmp_path / "parallel" / "ntrex128" / "DOCUMENT_IDS.tsv").write_text("x.1\n")
    with pytest.raises(EuroflowError, match=r"ntrex128/mt\.txt: NTREX-128 text for mt not found.*EUROFLOW_DATA"):
        ntrex_documents(tmp_path, "mt")


def _bad_shard(kind: str, path) -> str:
    """Write a shard whose 3rd line is bad in the given way; return the expected error regex."""
    lines = _good_lines(5)
    name = re.escape(str(path))
    if kind == "malformed_json":
        lines[2] = b'{"id": "x", "text": "unterminated}'
        _zst(path, b"\n".join(lines) + b"\n")
        return rf"^{name}:3: malformed JSON: "
    if kind == "invalid_utf8":
        lines[2] = b'{"id": "x", "text": "caf\xe9 au lait"}'
        _zst(path, b"\n".join(lines) + b"\n")
        return rf"^{name}:3: invalid UTF-8 at byte 24$"
    if kind == "missing_text":
        lines[2] = b'{"id": "x", "body": "no text here"}'
        _zst(path, b"\n".join(lines) + b"\n")
        return rf"^{name}:3: missing field 'text'$"
    if kind == "wrong_type":
        lines[2] = b'{"id": "x", "text": ["a", "list"]}'
        _zst(path, b"\n".join(lines) + b"\n")
        return rf"^{name}:3: field 'text' must be a string, got array$"
    if kind == "truncated":
        whole = zstandard.ZstdCompressor().compress(b"\n".join(_good_lines(400)) + b"\n")
        path.write_bytes(whole[: len(whole) * 2 // 3])
        return rf"^{name}: truncated zstd stream after line \d+$"
    raise AssertionError(kind)


BAD_KINDS = ["malformed_json", "invalid_utf8", "missing_text", "wrong_type", "truncated"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_one_line_error_and_no_output(tmp_path, kind):
    shard = tmp_path / "shard.jsonl.zst"
    expected = _bad_shard(kind, shard)
    out = tmp_path / "out" / "copy.jsonl.zst"
    with pytest.raises(EuroflowError) as err:
        write_shard(out, read_shard(shard))
    message = str(err.value)
    assert "\n" not in message
    assert re.search(expected, message), message
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary leftovers either


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_cli_bad_input_exits_nonzero_with_one_line(tmp_path, kind, capsys):
    shard = tmp_path / "shard.jsonl.zst"
    expected = _bad_shard(kind, shard)
    code = cli.main(["check-shard", "--input", str(shard)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("euroflow: error: ")
    assert re.search(expected, err[len("euroflow: error: "):].strip())


def test_truncation_is_detected_at_every_cut_point(tmp_path):
    whole = zstandard.ZstdCompressor().compress(b"\n".join(_good_lines(300)) + b"\n")
    path = tmp_path / "cut.jsonl.zst"
    for cut in range(1, len(whole), max(1, len(whole) // 40)):
        path.write_bytes(whole[:cut])
        with pytest.raises(EuroflowError, match=r"truncated zstd stream after line \d+$"):
            list(read_shard(path))
    path.write_bytes(whole)
    assert len(list(read_shard(path))) == 300


def test_truncated_after_complete_lines_reports_their_count(tmp_path):
    c = zstandard.ZstdCompressor()
    first = c.compress(b"\n".join(_good_lines(7)) + b"\n")
    second = c.compress(b"\n".join(_good_lines(50)) + b"\n")
    path = tmp_path / "two.jsonl.zst"
    path.write_bytes(first + second[: len(second) // 2])
    with pytest.raises(EuroflowError, match=r"truncated zstd stream after line 7$"):
        list(read_shard(path))


def test_not_zstd_and_empty_file(tmp_path):
    plain = tmp_path / "plain.jsonl.zst"
    plain.write_bytes(b'{"text": "not compressed"}\n')
    with pytest.raises(EuroflowError, match=r"plain\.jsonl\.zst: corrupt zstd stream after line 0"):
        list(read_shard(plain))
    # an empty shard has one answer everywhere: no documents, and a warning (prepare, check-shard)
    empty = tmp_path / "empty.jsonl.zst"
    empty.write_bytes(b"")
    assert list(read_shard(empty)) == []


def test_ntrex_shard_cli(tmp_path, data_root, capsys):
    out = tmp_path / "sr-Latn.jsonl.zst"
    assert cli.main(["ntrex-shard", "--data-root", str(data_root), "--lang", "sr-Latn", "--out", str(out)]) == 0
    assert "123 documents" in capsys.readouterr().out
    assert next(read_shard(out))["lang"] == ["srp_Latn"]
    assert cli.main(["ntrex-shard", "--data-root", str(tmp_path / "missing"), "--lang", "de", "--out", str(tmp_path / "x")]) == 1
    assert "EUROFLOW_DATA" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

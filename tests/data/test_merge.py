"""Merging a language's shard datasets: byte for byte Megatron-Core's IndexedDatasetBuilder.add_index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from euroflow.data import merge
from euroflow.data.merge import merge_datasets, merge_language
from euroflow.errors import EuroflowError


def IndexedDataset(prefix):  # noqa: N802 - megatron's class, imported late (as in test_data_tokenize)
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    return IndexedDataset(prefix)


def IndexedDatasetBuilder(path, dtype):  # noqa: N802
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    return IndexedDatasetBuilder(path, dtype=dtype)


def _dataset(prefix, docs: list[list[int]], dtype=np.uint16) -> str:
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for doc in docs:
        builder.add_document(np.array(doc, dtype=dtype), [len(doc)])
    builder.finalize(f"{prefix}.idx")
    return str(prefix)


def _random_docs(rng, n: int) -> list[list[int]]:
    return [rng.integers(0, 60000, size=int(rng.integers(1, 40))).tolist() for _ in range(n)]


@pytest.mark.parametrize("chunk", [merge.CHUNK, 3])  # sections in one piece, and in many
def test_merge_is_byte_for_byte_megatrons_add_index(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(merge, "CHUNK", chunk)
    rng = np.random.default_rng(0)
    shards = [_dataset(tmp_path / f"s{i}", _random_docs(rng, n)) for i, n in enumerate((17, 0, 1, 40))]  # one empty
    reference = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.uint16)
    for shard in shards:
        reference.add_index(shard)
    reference.finalize(str(tmp_path / "ref.idx"))

    result = merge_datasets(shards, tmp_path / "merged")
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"merged{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes()
    # megatron's reader unmaps its arrays when it is collected: keep the datasets while reading them
    merged = IndexedDataset(str(tmp_path / "merged"))
    parts = [IndexedDataset(s) for s in shards if Path(f"{s}.bin").stat().st_size]  # megatron cannot open an empty one
    assert result == {"sequences": 58, "documents": 58, "tokens": int(sum(int(p.sequence_lengths.sum()) for p in parts)),
                      "dtype": "uint16"}
    flat = [part[i] for part in parts for i in range(len(part))]
    assert len(merged) == len(flat) and all(np.array_equal(merged[i], doc) for i, doc in enumerate(flat))


def test_only_empty_shards_merge_into_an_empty_dataset_like_megatrons(tmp_path):
    shards = [_dataset(tmp_path / f"e{i}", []) for i in range(2)]
    reference = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.uint16)
    for shard in shards:
        reference.add_index(shard)
    reference.finalize(str(tmp_path / "ref.idx"))
    merge_datasets(shards, tmp_path / "merged")
    assert (tmp_path / "merged.idx").read_bytes() == (tmp_path / "ref.idx").read_bytes()
    assert (tmp_path / "merged.bin").read_bytes() == b""


def test_shards_of_different_tokenizers_or_damaged_ones_are_named_and_nothing_is_written(tmp_path):
    good = _dataset(tmp_path / "good", [[1, 2, 3]])
    wide = _dataset(tmp_path / "wide", [[70000, 1]], dtype=np.int32)
    with pytest.raises(EuroflowError, match=r"wide\.idx: token dtype int32, but .*good\.idx has uint16: .*different tokenizers"):
        merge_datasets([good, wide], tmp_path / "out")
    short = _dataset(tmp_path / "short", [[4, 5, 6, 7]])
    with open(f"{short}.bin", "r+b") as fh:
        fh.truncate(4)
    with pytest.raises(EuroflowError, match=r"short\.bin: 4 bytes, but its index counts 8; re-run the shard's tokenize job"):
        merge_datasets([good, short], tmp_path / "out")
    with open(f"{good}.idx", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(EuroflowError, match=r"good\.idx: .* bytes, but its header announces"):
        merge_datasets([good], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))) == []


def test_a_language_report_adds_up_its_shards_and_checks_their_tokens(tmp_path):
    rng = np.random.default_rng(1)
    reports = []
    for i in range(3):
        split_docs = {split: _random_docs(rng, n) for split, n in (("train", 5 + i), ("valid", i))}
        prefixes = {split: _dataset(tmp_path / f"s{i}.{split}", docs) for split, docs in split_docs.items()}
        tokens = {split: sum(map(len, docs)) for split, docs in split_docs.items()}
        reports.append({"prefixes": prefixes, "docs": {"train": 5 + i, "valid": i, "total": 5 + 2 * i},
                        "tokens": {**tokens, "total": sum(tokens.values())}, "max_token_id": 100 + i, "dropped": 1, "chars": 10})
    out = {split: tmp_path / f"de.{split}" for split in ("train", "valid")}
    merged = merge_language("de", reports, out, ["a.json", "b.json", "c.json"])
    assert merged["shards"] == 3 and merged["docs"] == {"train": 18, "valid": 3, "total": 21}
    dataset = IndexedDataset(str(out["train"]))
    assert merged["tokens"]["train"] == sum(r["tokens"]["train"] for r in reports) == int(dataset.sequence_lengths.sum())
    assert merged["max_token_id"] == 102 and merged["dropped"] == 3 and merged["shard_reports"] == ["a.json", "b.json", "c.json"]
    reports[1]["tokens"]["valid"] += 1  # a report that does not describe its dataset (a stale one)
    with pytest.raises(EuroflowError, match="merge de: the valid datasets hold .* tokens but their reports announce"):
        merge_language("de", reports, out)


def test_the_merge_command_reads_the_shards_where_the_results_tree_is_now(tmp_path, small_pipeline_config):
    """A results tree copied elsewhere: the shard reports still name the old place, which is gone."""
    import json

    from euroflow.data.cli import main
    from euroflow.paths import RunPaths

    rng = np.random.default_rng(2)
    old, new = tmp_path / "scratch", tmp_path / "project"
    cfg = small_pipeline_config(new, "moved", ["de"], 10)
    paths = RunPaths(cfg)
    (new / "moved").mkdir(parents=True)
    config_path = new / "moved" / "config.json"
    config_path.write_text(json.dumps(cfg))
    lengths = {}
    for split in ("train", "valid"):
        docs = _random_docs(rng, 4)
        lengths[split] = sum(map(len, docs))
        Path(paths.tokenized_prefix("de", "ntrex", split)).parent.mkdir(parents=True, exist_ok=True)
        _dataset(paths.tokenized_prefix("de", "ntrex", split), docs)
    stale = {split: str(old / "moved" / "data" / "tokenized" / "de" / f"ntrex.{split}") for split in ("train", "valid")}
    Path(paths.tokenized_report("de", "ntrex")).write_text(json.dumps(
        {"prefixes": stale, "docs": {"train": 4, "valid": 4, "total": 8}, "tokens": {**lengths, "total": sum(lengths.values())}}))
    out = {split: paths.merged_prefix("de", split) for split in ("train", "valid")}
    assert main(["merge", "--config", str(config_path), "--lang", "de", "--train-prefix", out["train"],
                 "--valid-prefix", out["valid"], "--report", paths.merged_report("de")]) == 0
    merged = IndexedDataset(out["train"])
    assert int(merged.sequence_lengths.sum()) == lengths["train"]

"""The blend file through megatron-core's dataset builder, and Megatron-LM's sample order."""

import json

import pytest
import torch

import train_corpus as corpus
from euroflow.errors import EuroflowError
from euroflow.train.data import build_datasets, build_tokenizer, micro_batches, read_blend, split_string
from euroflow.train.loop import single_process_group


def test_read_blend_resolves_prefixes_and_weights(train_inputs):
    prefixes, weights = read_blend(train_inputs["blend"])
    assert [p.rsplit("/", 1)[1] for p in prefixes] == list(corpus.LANGS)
    assert sum(weights) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "blend, message",
    [
        ({"megatron_blend": [0.5, "nowhere/xx"]}, "nowhere/xx.bin/.idx"),
        ({"megatron_blend": [0.5]}, "megatron_blend: expected"),
        ({"languages": []}, "megatron_blend: expected"),
        ({"megatron_blend": ["en", 0.5]}, r"megatron_blend\[0\]"),
    ],
)
def test_bad_blend_files_are_one_line_errors(tmp_path, blend, message):
    path = tmp_path / "blend.json"
    path.write_text(json.dumps(blend))
    with pytest.raises(EuroflowError, match=message) as err:
        read_blend(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_tokenizer_meta_drives_eod_and_vocab(train_inputs, tmp_path):
    tokenizer = build_tokenizer(train_inputs["tokenizer"])
    assert (tokenizer.vocab_size, tokenizer.eod, tokenizer.bos) == (1000, 2, 1)
    assert tokenizer.detokenize(tokenizer.tokenize("Guten Morgen")) == "Guten Morgen"
    with pytest.raises(EuroflowError, match="tokenizer_meta.json"):
        build_tokenizer(tmp_path)


def test_split_string():
    assert split_string(0.02) == "0.98,0.02,0"
    assert split_string(0.0) == "1.0,0.0,0"


def test_datasets_come_from_the_blend_with_caches_in_the_run_dir(tmp_path, train_inputs):
    with single_process_group():
        data = build_datasets(corpus.tiny_config(), train_inputs["blend"], train_inputs["tokenizer"], tmp_path / "cache",
                              train_samples=64, valid_samples=8)
    assert len(data.train) >= 64 and len(data.valid) >= 8
    sample = data.train[0]
    assert sample["tokens"].shape == (64,) and torch.equal(sample["tokens"][1:], sample["labels"][:-1])
    assert int(sample["tokens"].max()) < 1000
    # documents are [bos] ids [eos]: EOS (the EOD) appears inside the packed sequences
    assert any(2 in data.train[i]["tokens"].tolist() for i in range(16))
    assert sorted({int(data.train[i]["dataset_id"]) for i in range(64)}) == [0, 1, 2, 3]
    assert any((tmp_path / "cache").iterdir())
    assert not (train_inputs["blend"].parent / "tokenized" / "cache").exists()


def test_a_language_too_small_for_the_valid_split_is_refused(tmp_path):
    # megatron-core's builder would loop forever on a split without documents
    corpus.write_indexed([[1, 5 + i, 6, 2] for i in range(10)], tmp_path / "xx")
    (tmp_path / "blend.json").write_text(json.dumps({"megatron_blend": [1.0, str(tmp_path / "xx")]}))
    config = corpus.tiny_config()
    config["data"]["valid_fraction"] = 0.02
    with pytest.raises(EuroflowError, match="10 documents leave none for the valid split"):
        build_datasets(config, tmp_path / "blend.json", None, tmp_path / "cache", train_samples=8, valid_samples=8)


def test_micro_batches_split_the_global_batch_like_megatron():
    dataset = [{"tokens": torch.tensor([i])} for i in range(100)]

    def ids(batches):
        return [b["tokens"].view(-1).tolist() for b in batches]

    one_rank = ids(micro_batches(dataset, 16, 4, 2, 0, 1))
    assert one_rank == [[16, 17], [18, 19], [20, 21], [22, 23]]
    rank0, rank1 = ids(micro_batches(dataset, 16, 2, 2, 0, 2)), ids(micro_batches(dataset, 16, 2, 2, 1, 2))
    assert rank0 == [[16, 17], [20, 21]] and rank1 == [[18, 19], [22, 23]]


def test_datasets_of_another_tokenizer_are_refused_at_start_up(tmp_path, train_inputs):
    """The tokenizer given to training declares 600 ids; the datasets hold ids up to ~1000."""
    import shutil

    small = tmp_path / "tokenizer"
    shutil.copytree(train_inputs["tokenizer"], small)
    meta = json.loads((small / "tokenizer_meta.json").read_text())
    (small / "tokenizer_meta.json").write_text(json.dumps({**meta, "vocab_size": 600}))
    with pytest.raises(EuroflowError, match=r"\.bin: holds token id \d+, outside the vocabulary of 600 of the tokenizer .*tokenizer: tokenized with another tokenizer"):
        build_datasets(corpus.tiny_config(), train_inputs["blend"], small, tmp_path / "cache", train_samples=8, valid_samples=8)
    blend = json.loads(train_inputs["blend"].read_text())
    blend["languages"][0]["max_token_id"] = 999  # what the tokenize reports said: refused without reading data
    flat = blend["megatron_blend"]
    flat[1::2] = [str((train_inputs["blend"].parent / prefix).resolve()) for prefix in flat[1::2]]
    (tmp_path / "blend.json").write_text(json.dumps(blend))
    with pytest.raises(EuroflowError, match=r"blend.json: language \S+: its datasets hold token ids up to 999, but the tokenizer"):
        build_datasets(corpus.tiny_config(), tmp_path / "blend.json", small, tmp_path / "cache", train_samples=8, valid_samples=8)


_START_UP = """
import resource, sys
sys.path.insert(0, {tests!r})
import train_corpus as corpus
from euroflow.errors import EuroflowError
from euroflow.train.data import build_datasets
from euroflow.train.loop import single_process_group
resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
try:
    with single_process_group():
        build_datasets(corpus.tiny_config(), {blend!r}, {tokenizer!r}, {cache!r}, train_samples=64, valid_samples=8)
except EuroflowError as exc:
    print("error:", exc)
print("limit:", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


@pytest.mark.parametrize("soft, hard", [(520, 4096), (520, 520)])
def test_a_low_open_file_limit_is_raised_or_refused_before_training_starts(tmp_path, train_inputs, soft, hard):
    """Each prefix keeps ~6 files mapped: 1,024 (the usual default) is too low for a blend of shard datasets."""
    import subprocess
    import sys
    from pathlib import Path

    from euroflow.train.data import FILES_BESIDES, FILES_PER_PREFIX

    script = _START_UP.format(tests=str(Path(__file__).parent), soft=soft, hard=hard, blend=str(train_inputs["blend"]),
                              tokenizer=str(train_inputs["tokenizer"]), cache=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    needed = len(corpus.LANGS) * FILES_PER_PREFIX + FILES_BESIDES  # the test blend: one dataset per language
    assert needed > 520
    if hard >= needed:  # the soft limit is raised to what the blend needs: no error
        assert "error:" not in proc.stdout and f"limit: {needed}" in proc.stdout
    else:
        (line,) = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
        assert line == (f"error: {train_inputs['blend']}: its {len(corpus.LANGS)} datasets need about {needed:,} open files, "
                        f"but this process may open at most 520 (ulimit -Hn): raise the limit (ulimit -n {needed}, or ask the site), "
                        "or train on merged per-language datasets (the workflow's merge_language jobs)")

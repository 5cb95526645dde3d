import copy
import subprocess
import sys

import pytest
import yaml

from euroflow import config, languages
from euroflow.errors import EuroflowError

TINY = config.REPO_ROOT / "workflow" / "configs" / "tiny.yaml"
EU_1B = config.REPO_ROOT / "workflow" / "configs" / "eu-1b.yaml"


def raw(path=TINY):
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", [TINY, EU_1B], ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    resolved = config.load(path)
    assert resolved["languages"] == list(languages.ALL_KEYS)
    assert resolved["training"]["checkpoint_interval"] >= 1


def test_defaults_are_filled():
    resolved = config.validate(raw())
    assert resolved["sampling"]["alpha"] == 0.3
    assert resolved["model"]["rotary_base"] == 10000
    assert resolved["paths"]["provenance_db"].endswith(".sqlite")


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["training"].__setitem__("learning_rate", 1e-3), "training.learning_rate: unknown key"),
        (lambda c: c.__setitem__("extra", 1), "extra: unknown key"),
        (lambda c: c["model"].__setitem__("num_layers", "two"), "model.num_layers: 'two' is not of type 'integer'"),
        (lambda c: c["training"].__setitem__("lr", -1), "training.lr: -1 is less than or equal to the minimum of 0"),
        (
            lambda c: c["sampling"].update(policy="explicit", weights={k: 1.0 for k in languages.ALL_KEYS} | {"de": -0.5}),
            "sampling.weights.de: -0.5 is less than the minimum of 0",
        ),
        (lambda c: c.__setitem__("languages", ["de", "xx"]), "languages: unknown language code 'xx'"),
        (lambda c: c["model"].__setitem__("num_query_groups", 3), "model.num_query_groups: must divide"),
        (lambda c: c["training"].__setitem__("min_lr", 1.0), "training.min_lr: 1.0 exceeds training.lr"),
        (lambda c: c["training"].__setitem__("warmup_steps", 300), "training.warmup_steps: must be below"),
        (lambda c: c["training"].__setitem__("tensor_model_parallel_size", 3), "training.tensor_model_parallel_size: 3"),
        (lambda c: c["data"].update(min_chars=500, max_chars=400), "data.min_chars: 500 is larger than data.max_chars 400"),
        (lambda c: c["data"].__setitem__("dedup", "none"), "data.dedup: 'none' is not one of ['near', 'exact']"),
        (
            lambda c: c["sampling"].update(policy="explicit", weights={k: 1.0 for k in languages.ALL_KEYS} | {"de": float("nan")}),
            "sampling.weights.de: nan is not a finite number",
        ),
        (
            lambda c: c["sampling"].update(policy="explicit", weights={k: 1.0 for k in languages.ALL_KEYS} | {"de": float("inf")}),
            "sampling.weights.de: inf is not a finite number",
        ),
        (lambda c: c["training"].__setitem__("lr", float("-inf")), "training.lr: -inf is not a finite number"),
        (
            lambda c: c["sampling"].update(policy="explicit", weights={k: 0 for k in languages.ALL_KEYS}),
            "sampling.weights: every weight is 0; give at least one language a positive weight",
        ),
        (
            lambda c: c["model"].update(hidden_size=132, num_attention_heads=4, num_query_groups=4),
            "model.hidden_size: hidden_size / num_attention_heads = 33 is odd; rotary position embeddings",
        ),
        (
            lambda c: c["training"].update(tensor_model_parallel_size=2, nproc=3),
            "training.tensor_model_parallel_size x pipeline_model_parallel_size = 2 x 1 = 2 does not divide the 3 ranks of training.nproc",
        ),
        (
            lambda c: c["training"].update(global_batch_size=24, micro_batch_size=8, nproc=2),
            "training.global_batch_size: 24 is not a multiple of micro_batch_size x data-parallel size = 8 x 2",
        ),
        (lambda c: c["languages"].__setitem__(0, "German") if isinstance(c["languages"], list) else c.__setitem__("languages", ["German"]),
         "languages: unknown language code 'German'; did you mean 'de'?"),
        (lambda c: c["evaluation"].__setitem__("bpb_languages", ["sr-latn"]),
         "evaluation.bpb_languages: unknown language code 'sr-latn'; did you mean 'sr-Latn'?"),
        (lambda c: c["paths"].__setitem__("results", "results\nrm -rf ~"), "paths.results: 'results\\nrm -rf ~' contains the control character '\\n'"),
        (lambda c: c["paths"].__setitem__("data_root", ""), "paths.data_root: '' is empty"),
    ],
)
def test_bad_config_names_the_key(mutate, expected):
    cfg = raw()
    mutate(cfg)
    with pytest.raises(EuroflowError) as err:
        config.validate(copy.deepcopy(cfg), "tiny.yaml")
    message = str(err.value)
    assert message.startswith("tiny.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_cli_reports_one_line_and_fails(tmp_path):
    cfg = raw()
    cfg["tokenizer"]["vocab"] = 8000
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "euroflow.cli", "config", "check", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"euroflow: error: {bad}: tokenizer.vocab: unknown key"


def test_yaml_syntax_error_names_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("run:\n  name: x\n  seed: [1,\n")
    with pytest.raises(EuroflowError, match=r"broken.yaml:\d+: not valid YAML"):
        config.load(bad)


def test_write_resolved_keeps_mtime_when_unchanged(tmp_path):
    resolved = config.load(TINY)
    target = tmp_path / "config.resolved.json"
    config.write_resolved(resolved, target)
    before = target.stat().st_mtime_ns
    config.write_resolved(copy.deepcopy(resolved), target)
    assert target.stat().st_mtime_ns == before
    resolved["training"]["lr"] = 1.0
    config.write_resolved(resolved, target)
    assert target.stat().st_mtime_ns != before or '"lr": 1.0' in target.read_text()


def test_resolved_json_config_loads_back_identically(tmp_path):
    resolved = config.load(TINY)
    target = config.write_resolved(resolved, tmp_path / "config.resolved.json")
    assert config.load(target) == resolved


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.mkdir(), "is a directory; a run config is a YAML file"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe"), "not a text file (invalid UTF-8 at byte 0); a run config is YAML"),
        (lambda p: p.write_text("- a\n- list\n"), "a run config must be a mapping"),
    ],
    ids=["directory", "binary", "list"],
)
def test_a_config_that_is_no_config_file_is_one_line(make, expected, tmp_path):
    path = tmp_path / "cfg.yaml"
    make(path)
    proc = subprocess.run([sys.executable, "-m", "euroflow.cli", "config", "check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"euroflow: error: {path}: {expected}"


def test_language_suggestions():
    assert [languages.suggestion(k) for k in ("German", "DE", "deu_Latn", "sr-latn", "Greek", "Klingon")] == [
        "de", "de", "de", "sr-Latn", "el", None
    ]

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

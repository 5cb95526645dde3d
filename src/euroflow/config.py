"""Load a run config, validate it against the one schema, fill defaults, resolve paths.

Every problem is reported as one line naming the file and the key path
(``workflow/configs/x.yaml: training.lr: -1 is less than the minimum of 0``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import jsonschema
import yaml

from euroflow import languages
from euroflow.errors import EuroflowError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DATA_ROOT_ENV = "EUROFLOW_DATA"


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        # name the offending key itself, not its parent
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            parts.append(extra[0])
            return ".".join(parts) + ": unknown key"
    return ".".join(parts) or "<top level>"


def schema_error_message(error: jsonschema.ValidationError) -> str:
    """One line naming the key path and what is wrong (shared with the site files)."""
    path = _key_path(error)
    if path.endswith(": unknown key"):
        return path
    return f"{path}: {error.message}"


def _fill_defaults(schema: dict, instance: dict) -> None:
    """Set schema defaults for missing keys, recursing into objects (after validation)."""
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(sub, instance[key])


def schema_defaults(section: str) -> dict:
    """What the schema gives a config section (e.g. ``data``) when the config leaves keys out."""
    defaults: dict = {}
    _fill_defaults(load_schema()["properties"][section], defaults)
    return defaults


def validate(config: dict, source: str = "<config>") -> dict:
    """Validate ``config`` in place (defaults filled, languages expanded) and return it."""
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise EuroflowError(f"{source}: {schema_error_message(errors[0])}")
    _fill_defaults(schema, config)
    try:
        config["languages"] = languages.resolve(config["languages"])
        ev = config["evaluation"]
        ev["bpb_languages"] = languages.resolve(ev["bpb_languages"])
    except EuroflowError as exc:
        raise EuroflowError(f"{source}: languages: {exc}") from None
    for key in config["sampling"].get("weights", {}):
        if key not in languages.LANGUAGES:
            raise EuroflowError(f"{source}: sampling.weights.{key}: unknown language code")
        if key not in config["languages"]:
            raise EuroflowError(f"{source}: sampling.weights.{key}: language not in this run's languages")
    if config["sampling"]["policy"] == "explicit":
        missing = [k for k in config["languages"] if k not in config["sampling"].get("weights", {})]
        if missing:
            raise EuroflowError(f"{source}: sampling.weights: policy explicit needs a weight for {missing[0]}")
    data = config["data"]
    if data["min_chars"] > data["max_chars"]:
        raise EuroflowError(f"{source}: data.min_chars: {data['min_chars']} is larger than data.max_chars {data['max_chars']}")
    model, training = config["model"], config["training"]
    model.setdefault("num_query_groups", model["num_attention_heads"])
    if model["num_attention_heads"] % model["num_query_groups"]:
        raise EuroflowError(f"{source}: model.num_query_groups: must divide num_attention_heads")
    if model["hidden_size"] % model["num_attention_heads"]:
        raise EuroflowError(f"{source}: model.hidden_size: must be a multiple of num_attention_heads")
    if training["global_batch_size"] % training["micro_batch_size"]:
        raise EuroflowError(f"{source}: training.global_batch_size: must be a multiple of micro_batch_size")
    if training["min_lr"] > training["lr"]:
        raise EuroflowError(f"{source}: training.min_lr: {training['min_lr']} exceeds training.lr {training['lr']}")
    if training["warmup_steps"] >= training["train_steps"]:
        raise EuroflowError(f"{source}: training.warmup_steps: must be below train_steps {training['train_steps']}")
    tp, pp = training["tensor_model_parallel_size"], training["pipeline_model_parallel_size"]
    if model["num_attention_heads"] % tp or model["num_query_groups"] % tp or model["ffn_hidden_size"] % tp:
        raise EuroflowError(
            f"{source}: training.tensor_model_parallel_size: {tp} must divide attention heads, query groups and ffn_hidden_size"
        )
    if model["num_layers"] % pp:
        raise EuroflowError(f"{source}: training.pipeline_model_parallel_size: {pp} must divide model.num_layers")
    training.setdefault("checkpoint_interval", training["train_steps"])
    return config


def load(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            # YAML 1.1 reads JSON's 1e-05 as a string, so resolved (JSON) configs get the JSON parser
            config = json.load(fh) if path.suffix == ".json" else yaml.safe_load(fh)
    except FileNotFoundError:
        raise EuroflowError(f"{path}: config file not found") from None
    except json.JSONDecodeError as exc:
        raise EuroflowError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise EuroflowError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(config, dict):
        raise EuroflowError(f"{path}: a run config must be a mapping")
    return validate(config, str(path))


def data_root(config: dict) -> Path:
    """The multilingual data bundle; ``EUROFLOW_DATA`` overrides the config."""
    return Path(os.environ.get(DATA_ROOT_ENV) or config["paths"]["data_root"])


def config_hash(config: dict) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_resolved(config: dict, path: str | os.PathLike) -> Path:
    """Write the resolved config as JSON, leaving the file (and its mtime) alone when unchanged."""
    from euroflow.atomic import write_text

    path = Path(path)
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return path
    write_text(path, text)
    return path


def training_tokens(config: dict) -> int:
    """Tokens pretraining reads: steps x global batch x sequence length."""
    training, model = config["training"], config["model"]
    return int(training["train_steps"]) * int(training["global_batch_size"]) * int(model["seq_length"])

"""Load a run config, validate it against the one schema, fill defaults, resolve paths.

Every problem is reported as one line naming the file and the key path
(``workflow/configs/x.yaml: training.lr: -1 is less than the minimum of 0``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from pathlib import Path

import jsonschema
import yaml

from euroflow import languages
from euroflow.errors import EuroflowError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DATA_ROOT_ENV = "EUROFLOW_DATA"


def load_schema(path: str | os.PathLike = SCHEMA_PATH) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 10x faster, same result


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


# config values that become paths (and command-line arguments of the rules)
PATH_KEYS = (("paths", "data_root"), ("paths", "results"), ("paths", "provenance_db"),
             ("data", "source", "shards"), ("data", "source", "manifest"), ("data", "source", "pattern"))


def _non_finite(value, where: tuple[str, ...] = ()) -> tuple[str, float] | None:
    """The key path of the first NaN or infinity in ``value`` (YAML's .nan, .inf), if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".".join(where), value
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return None
    for key, sub in items:
        found = _non_finite(sub, (*where, str(key)))
        if found:
            return found
    return None


def path_problem(value: str) -> str | None:
    """Why a string cannot be a path euroflow passes on (None if it can). Spaces, quotes, ``$``,
    ``;``, ``&``, ``|`` and backticks are fine: every rule quotes its values. Refused: control
    characters (a newline splits Snakemake's and Slurm's line-based files, and no tool shows
    them), braces (Snakemake reads ``{x}`` in a file name as a wildcard) and a leading ``-``
    (command-line tools read it as an option)."""
    bad = next((ch for ch in value if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        return f"contains the control character {bad!r}; rename the file or directory"
    if not value.strip():
        return "is empty"
    brace = next((ch for ch in value if ch in "{}"), None)
    if brace is not None:
        return f"contains {brace!r}, which Snakemake reads as part of a wildcard; rename the file or directory"
    if value.startswith("-"):
        return "starts with '-', which command-line tools read as an option; write ./" + value
    return None


def layout_problem(training: dict, world: int, ranks: str) -> str | None:
    """Why ``world`` training ranks cannot run the configured parallelism (None if they can):
    TP x PP must divide the ranks, and the micro batches of a step must split evenly over the
    data-parallel ranks. ``ranks`` says where the count comes from, for the message.
    The one check config check, site check, plan and the trainer share."""
    tp, pp = training["tensor_model_parallel_size"], training["pipeline_model_parallel_size"]
    if world % (tp * pp):
        return (
            f"training.tensor_model_parallel_size x pipeline_model_parallel_size = {tp} x {pp} = {tp * pp} "
            f"does not divide the {world} ranks of {ranks}"
        )
    dp = world // (tp * pp)
    gbs, mbs = training["global_batch_size"], training["micro_batch_size"]
    if gbs % (mbs * dp):
        return (
            f"training.global_batch_size: {gbs} is not a multiple of micro_batch_size x data-parallel size "
            f"= {mbs} x {dp} ({world} ranks of {ranks} / TP x PP {tp * pp})"
        )
    return None


def validate(config: dict, source: str = "<config>", schema_path: str | os.PathLike = SCHEMA_PATH) -> dict:
    """Validate ``config`` in place (defaults filled, languages expanded) and return it
    (against the schema at ``schema_path``: by default this installation's)."""
    non_finite = _non_finite(config)
    if non_finite:
        raise EuroflowError(f"{source}: {non_finite[0]}: {non_finite[1]} is not a finite number")
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise EuroflowError(f"{source}: {schema_error_message(errors[0])}")
    _fill_defaults(schema, config)
    for where, section, key in (("languages", config, "languages"), ("evaluation.bpb_languages", config["evaluation"], "bpb_languages")):
        try:
            section[key] = languages.resolve(section[key])
        except EuroflowError as exc:
            raise EuroflowError(f"{source}: {where}: {exc}") from None
    for key in config["sampling"].get("weights", {}):
        if key not in languages.LANGUAGES:
            raise EuroflowError(f"{source}: sampling.weights.{key}: unknown language code")
        if key not in config["languages"]:
            raise EuroflowError(f"{source}: sampling.weights.{key}: language not in this run's languages")
    if config["sampling"]["policy"] == "explicit":
        weights = config["sampling"].get("weights", {})
        missing = [k for k in config["languages"] if k not in weights]
        if missing:
            raise EuroflowError(f"{source}: sampling.weights: policy explicit needs a weight for {missing[0]}")
        if not any(weights[k] > 0 for k in config["languages"]):
            raise EuroflowError(f"{source}: sampling.weights: every weight is 0; give at least one language a positive weight")
    for keys in PATH_KEYS:
        value = config
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        problem = path_problem(value) if isinstance(value, str) else None
        if problem:
            raise EuroflowError(f"{source}: {'.'.join(keys)}: {value!r} {problem}")
    data = config["data"]
    if data["min_chars"] > data["max_chars"]:
        raise EuroflowError(f"{source}: data.min_chars: {data['min_chars']} is larger than data.max_chars {data['max_chars']}")
    model, training = config["model"], config["training"]
    model.setdefault("num_query_groups", model["num_attention_heads"])
    if model["num_attention_heads"] % model["num_query_groups"]:
        raise EuroflowError(f"{source}: model.num_query_groups: must divide num_attention_heads")
    if model["hidden_size"] % model["num_attention_heads"]:
        raise EuroflowError(f"{source}: model.hidden_size: must be a multiple of num_attention_heads")
    head_dim = model["hidden_size"] // model["num_attention_heads"]
    if head_dim % 2:
        raise EuroflowError(
            f"{source}: model.hidden_size: hidden_size / num_attention_heads = {head_dim} is odd; "
            "rotary position embeddings rotate pairs of dimensions, so the head dimension must be even"
        )
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
    if training["sequence_parallel"] and tp == 1:
        raise EuroflowError(f"{source}: training.sequence_parallel: needs tensor_model_parallel_size > 1 (it splits the tensor-parallel ranks' activations)")
    if training["overlap_param_gather"] and not training["distributed_optimizer"]:
        raise EuroflowError(f"{source}: training.overlap_param_gather: needs distributed_optimizer: true (only the distributed optimizer gathers parameters)")
    if training["reshardable_checkpoints"] == "data_parallel" and not (training["distributed_optimizer"] and training["ddp_bucket_size"]):
        raise EuroflowError(
            f"{source}: training.reshardable_checkpoints: data_parallel needs distributed_optimizer: true and a ddp_bucket_size "
            "(it saves the optimizer's buckets as they are; megatron's default bucket size grows with the data-parallel size)"
        )
    layout = layout_problem(training, training["nproc"], "training.nproc")
    if layout:
        raise EuroflowError(f"{source}: {layout}")
    training.setdefault("checkpoint_interval", training["train_steps"])
    return config


def read(path: str | os.PathLike) -> dict:
    """A run config file as written (YAML, or JSON for resolved configs), not yet validated."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            # YAML 1.1 reads JSON's 1e-05 as a string, so resolved (JSON) configs get the JSON parser
            config = json.load(fh) if path.suffix == ".json" else yaml.safe_load(fh)
    except FileNotFoundError:
        raise EuroflowError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise EuroflowError(f"{path}: is a directory; a run config is a YAML file") from None
    except PermissionError:
        raise EuroflowError(f"{path}: cannot read the config file: permission denied") from None
    except UnicodeDecodeError as exc:
        raise EuroflowError(f"{path}: not a text file (invalid UTF-8 at byte {exc.start}); a run config is YAML") from None
    except json.JSONDecodeError as exc:
        raise EuroflowError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise EuroflowError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(config, dict):
        raise EuroflowError(f"{path}: a run config must be a mapping")
    return config


def load(path: str | os.PathLike, schema_path: str | os.PathLike = SCHEMA_PATH) -> dict:
    return validate(read(path), str(path), schema_path)


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

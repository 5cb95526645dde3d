"""lm-evaluation-harness as the standard evaluator: offline task configs for the bundle's sets, run
with lm-eval's own evaluator (``simple_evaluate``) on the Hugging Face export.

Task configs (``write_task_configs``) are plain lm-eval YAML, one task per set and language, named
``euroflow_<set>_<lang>`` and tagged ``euroflow`` and ``euroflow_<set>``; each reads its file of the
data bundle through ``bundle_dataset`` (lm-eval's ``custom_dataset``), so nothing is downloaded. The prompts are the ones
our own scorer uses (``multiple_choice.prompt_and_choices``), written as lm-eval templates:

* Belebele, EXAMS, XCOPA: ``output_type: multiple_choice`` (``acc``, ``acc_norm``);
* FLORES-200 test: ``output_type: loglikelihood_rolling`` (``bits_per_byte``, ``byte_perplexity``,
  ``word_perplexity``), the sentence predicted after BOS (lm-eval's format: no EOS, unlike
  ``evaluate bpb``).

BOS: multiple-choice requests are scored as ``[bos] + context + continuation`` (``add_bos_token=True``,
as our scorer does); rolling requests get lm-eval's prefix token (our BOS) and the text's tokens
without a second BOS (``add_bos_token=False``): with the tokenizer's default, lm-eval would score the
model on predicting BOS after BOS. The two kinds run as two ``simple_evaluate`` calls over one loaded
model, and their results are merged into one lm-eval results document.

A partner's own lm-eval tasks (local YAML, their datasets already on disk) run beside ours through
``include_paths`` and their names.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import yaml

from euroflow.atomic import atomic_path
from euroflow.bundle import MC_TASK_LANGUAGES, mc_file
from euroflow.data.flores import flores_file
from euroflow.errors import EuroflowError

SHIPPED_TASKS = ("belebele", "exams", "xcopa", "flores")
TAG = "euroflow"
UTILS_MODULE = "euroflow_lm_eval_utils"
# lm-eval resolves `!function module.name` against the YAML's directory; this module lies next to the YAML
UTILS_SOURCE = '''"""The dataset loader of the euroflow lm-eval tasks (written by euroflow evaluate lm-eval-tasks)."""

from euroflow.evaluate.harness import bundle_dataset  # noqa: F401
'''
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

_MC_PROMPTS = {
    "belebele": "P: {{context}}\nQ: {{question.strip()}}\nA:",
    "exams": "{% if context %}{{context.strip()}}\n{% endif %}Question: {{question.strip()}}\nAnswer:",
}


def task_name(task: str, lang: str) -> str:
    return f"{TAG}_{task}_{lang.replace('-', '_')}"


def bundle_dataset(data_root: str, set: str, language: str, **_metadata) -> dict:
    """lm-eval's ``custom_dataset`` of our tasks: ``{"test": Dataset}`` of one set and language, read by
    our own readers (the same items our scorer reads; FLORES ``test``, ``sr-Latn`` derived from ``sr``).
    Not ``dataset_path: json``: ``datasets`` globs and expands ``$VARS`` in file names, and a data
    bundle may lie at any path."""
    import datasets

    if set == "flores":
        from euroflow.evaluate.bpb import flores_sentences

        docs = [{"text": text} for text in flores_sentences(data_root, language)]
    else:
        from euroflow.evaluate.multiple_choice import load_items

        docs = [{"id": i.id, "context": i.context or "", "question": i.question, "choices": i.choices, "answer": i.answer}
                for i in load_items(mc_file(data_root, set, language))]
    return {"test": datasets.Dataset.from_list(docs)}


def task_configs(data_root: str | os.PathLike, tasks: list[str], languages: list[str]) -> dict[str, dict]:
    """``{task name: lm-eval task config}`` for ``tasks`` (of SHIPPED_TASKS) in the bundle's languages among ``languages``."""
    root = Path(data_root).resolve()
    configs: dict[str, dict] = {}
    for task in tasks:
        if task not in SHIPPED_TASKS:
            raise EuroflowError(f"lm-eval task set {task!r}: unknown; shipped: {', '.join(SHIPPED_TASKS)}")
        langs = languages if task == "flores" else [lang for lang in MC_TASK_LANGUAGES[task] if lang in languages]
        for lang in langs:
            data_file = flores_file(root, lang) if task == "flores" else mc_file(root, task, lang)
            if not data_file.is_file():
                raise EuroflowError(f"{data_file}: missing from the data bundle (lm-eval task {task_name(task, lang)})")
            config = {
                "task": task_name(task, lang),
                "tag": [TAG, f"{TAG}_{task}"],
                "custom_dataset": f"{UTILS_MODULE}.bundle_dataset",
                "dataset_kwargs": {"data_root": str(root), "set": task, "language": lang},
                "test_split": "test",
            }
            config.update(_flores_config(lang) if task == "flores" else _mc_config(task, lang))
            config["metadata"] = {"version": 1.0, "source": f"euroflow data bundle: {data_file.relative_to(root)}"}
            configs[config["task"]] = config
    if not configs:
        raise EuroflowError(f"lm-eval: no task among {tasks} has a language among {languages}")
    return configs


def _mc_config(task: str, lang: str) -> dict:
    if task == "xcopa":
        from euroflow.evaluate.multiple_choice import XCOPA_CONNECTORS

        connectors = XCOPA_CONNECTORS[lang]
        text = f"{{{{context.strip()[:-1]}}}} {{{{ {json.dumps(connectors, ensure_ascii=False)}[question] }}}}"
        # XCOPA has two choices; each with its first letter lowercased, as lm-eval's own xcopa task
        choice = "{{ [choices[0][0]|lower + choices[0][1:], choices[1][0]|lower + choices[1][1:]] }}"
    else:
        text, choice = _MC_PROMPTS[task], "choices"
    return {
        "output_type": "multiple_choice",
        "doc_to_text": text,
        "doc_to_choice": choice,
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }


def _flores_config(lang: str) -> dict:
    return {
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "text",
        "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
    }


def config_yaml(config: dict) -> str:
    """One task's YAML; ``custom_dataset`` as lm-eval's ``!function`` tag."""
    plain = {k: v for k, v in config.items() if k != "custom_dataset"}
    text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=1000)
    return text + f"custom_dataset: !function {config['custom_dataset']}\n"


def write_task_configs(data_root, tasks: list[str], languages: list[str], out_dir, *, configs: dict | None = None) -> list[str]:
    """Write one YAML per task (and the utils module they name) into ``out_dir``, atomically; the task names.
    ``configs``: already built ones (e.g. FLORES and multiple choice in different languages)."""
    if configs is None:
        configs = task_configs(data_root, tasks, languages)
    with atomic_path(out_dir, directory=True) as tmp:
        for name, config in configs.items():
            (tmp / f"{name}.yaml").write_text(config_yaml(config), encoding="utf-8")
        (tmp / f"{UTILS_MODULE}.py").write_text(UTILS_SOURCE, encoding="utf-8")
    return list(configs)


@contextlib.contextmanager
def offline_environment(datasets_cache: Path | None):
    """Hugging Face libraries offline; ``datasets``' Arrow cache in ``datasets_cache`` when given (not the home quota)."""
    saved = {key: os.environ.get(key) for key in (*OFFLINE_ENV, "HF_DATASETS_CACHE")}
    os.environ.update(OFFLINE_ENV)
    if datasets_cache is not None:
        os.environ["HF_DATASETS_CACHE"] = str(datasets_cache)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def evaluate_harness(
    model_dir,
    task_dir,
    task_names: list[str],
    *,
    include_paths: list[str] = (),
    limit: int | None = None,
    batch_size: int = 16,
    device: str = "auto",
    log_samples: bool = False,
) -> dict:
    """lm-eval's results document for ``task_names``: ours in ``task_dir``, others from ``include_paths``
    or lm-eval's own task list, their datasets already in the Hugging Face cache (offline)."""
    if limit is not None and limit < 1:
        raise EuroflowError(f"limit={limit}: must be >= 1")
    if not task_names:
        raise EuroflowError("lm-eval: no tasks to run")
    for path in include_paths:
        if not Path(path).is_dir():
            raise EuroflowError(f"lm-eval include path {path}: not a directory")
    ours = {p.stem for p in Path(task_dir).glob("*.yaml")}
    # ours are read into memory; any other task reads the user's datasets cache, else a scratch one keeps the home quota clean
    others = [name for name in task_names if name not in ours]
    with tempfile.TemporaryDirectory(prefix="euroflow-lm-eval-") as cache, offline_environment(None if others else Path(cache)):
        return _evaluate(model_dir, task_dir, task_names, list(include_paths), bool(others), limit, batch_size, device, log_samples)


def _evaluate(model_dir, task_dir, task_names, include_paths, include_defaults, limit, batch_size, device, log_samples) -> dict:
    from euroflow.evaluate.model import load_model, quiet_torchao

    quiet_torchao()
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    manager = TaskManager(include_path=[str(task_dir), *include_paths], include_defaults=include_defaults)
    unknown = [name for name in task_names if name not in manager.all_tasks]
    if unknown:
        where = ", ".join([str(task_dir), *include_paths]) + (" and lm-eval's own tasks" if include_defaults else "")
        raise EuroflowError(f"lm-eval: unknown task(s) {', '.join(unknown)}: not in {where}")
    rolling, others = _split_by_output_type(manager, task_names)
    model = load_model(model_dir, device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)

    merged: dict | None = None
    for names, add_bos in ((others, True), (rolling, False)):
        if not names:
            continue
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, add_bos_token=add_bos,
                  max_length=int(model.config.max_position_embeddings))
        result = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=limit,
                                         log_samples=log_samples, bootstrap_iters=0)
        merged = result if merged is None else _merge(merged, result)
    merged["config"]["model"] = "hf"
    merged["config"]["model_args"] = {"pretrained": str(model_dir), "dtype": "float32"}
    merged["euroflow"] = {
        "task_dir": str(task_dir),
        "include_paths": include_paths,
        "add_bos_token": {"loglikelihood and generation tasks": True, "loglikelihood_rolling tasks": False},
    }
    return merged


def _split_by_output_type(manager, names: list[str]) -> tuple[list[str], list[str]]:
    """Task names whose output type is ``loglikelihood_rolling``, and the rest; a tag becomes its tasks
    (a group stays whole, with the rest)."""
    from lm_eval.tasks._index import Kind

    rolling, others = [], []
    for name in names:
        entry = manager.task_index[name]
        leaves = [manager.task_index[t] for t in sorted(entry.tags)] if entry.kind is Kind.TAG else [entry]
        for leaf in leaves:
            is_rolling = leaf.kind is Kind.TASK and (leaf.cfg or {}).get("output_type") == "loglikelihood_rolling"
            target = rolling if is_rolling else others
            if leaf.name not in target:
                target.append(leaf.name)
    return rolling, others


def _merge(a: dict, b: dict) -> dict:
    for key in ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "samples"):
        if key in b:
            a.setdefault(key, {}).update(b[key])
    return a


def write_results(result: dict, out) -> None:
    """lm-eval's results JSON as its EvaluationTracker writes it; per-sample records (``log_samples``) are
    left out of it, as the tracker keeps them in files of their own."""
    from lm_eval.utils import handle_non_serializable

    samples = result.pop("samples", None)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n", encoding="utf-8")
    if samples:
        result["samples"] = samples

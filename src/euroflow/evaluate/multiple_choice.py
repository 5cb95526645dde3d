"""Log-likelihood multiple-choice accuracy: Belebele, EXAMS and XCOPA, zero-shot.

Each choice is scored as the continuation ``" " + choice`` of a prompt (lm-eval-harness's
``target_delimiter``); the prediction is the choice with the highest summed log-likelihood (``acc``),
or the highest log-likelihood divided by the choice's length (``acc_norm``: lm-eval divides by the
choice's length in characters; ``acc_norm_bytes`` divides by its UTF-8 length, which differs for
Cyrillic and Greek). Prompts:

* XCOPA: lm-eval's prompt: the premise without its final period, the language's connector for
  ``cause``/``effect``, and the choice with a lowercased first letter.
* Belebele and EXAMS: cloze form (the answer text is scored, not a letter), since letter-answer
  prompts stay at chance level for small models: ``P: passage\\nQ: question\\nA:`` and
  ``Question: question\\nAnswer:`` (EXAMS items with a context put it first).

Sequences are ``[bos] + context + continuation``; a too-long one loses context tokens from the left,
as in lm-eval (counted as ``truncated_requests``; see ``scoring.windows``).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from euroflow.bundle import MC_TASK_LANGUAGES, mc_file
from euroflow.errors import EuroflowError
from euroflow.evaluate.model import SpTokenizer, load_model, load_tokenizer
from euroflow.evaluate.scoring import Request, score_requests

TASK_LANGUAGES = MC_TASK_LANGUAGES

# lm-eval-harness lm_eval/tasks/xcopa/utils.py
XCOPA_CONNECTORS: dict[str, dict[str, str]] = {
    "et": {"cause": "sest", "effect": "seetõttu"},
    "it": {"cause": "perché", "effect": "quindi"},
    "tr": {"cause": "çünkü", "effect": "bu yüzden"},
}

REQUIRED_FIELDS = ("id", "lang", "source", "context", "question", "choices", "answer")


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    source: str
    context: str | None
    question: str
    choices: list[str]
    answer: int


def task_path(data_root: str | Path, task: str, lang: str) -> Path:
    return mc_file(data_root, task, lang)


def load_items(path: str | Path, *, max_items: int | None = None) -> list[Item]:
    """Items of one task/language file, in file order; the first ``max_items`` if given."""
    path = Path(path)
    if not path.is_file():
        raise EuroflowError(f"{path}: multiple-choice file not found")
    opener = gzip.open if path.name.endswith(".gz") else open
    items: list[Item] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if max_items is not None and len(items) >= max_items:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EuroflowError(f"{path}:{line_no}: malformed JSON: {exc.msg}") from None
            items.append(_item(record, path, line_no))
    if not items:
        raise EuroflowError(f"{path}: no items")
    return items


def _item(record: dict, path: Path, line_no: int) -> Item:
    for field in REQUIRED_FIELDS:
        if field not in record:
            raise EuroflowError(f"{path}:{line_no}: missing field {field!r}")
    choices = record["choices"]
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise EuroflowError(f"{path}:{line_no}: field 'choices' must be a list of at least 2 non-empty strings")
    answer = record["answer"]
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise EuroflowError(f"{path}:{line_no}: field 'answer'={answer!r} is not an index into {len(choices)} choices")
    return Item(
        id=str(record["id"]),
        lang=record["lang"],
        source=record["source"],
        context=record["context"],
        question=record["question"],
        choices=choices,
        answer=answer,
    )


def prompt_and_choices(task: str, item: Item) -> tuple[str, list[str]]:
    """The context string and the continuation strings (without the leading delimiter)."""
    if task == "xcopa":
        connectors = XCOPA_CONNECTORS.get(item.lang)
        if connectors is None or item.question not in connectors:
            raise EuroflowError(f"xcopa item {item.id}: no connector for lang={item.lang!r} question={item.question!r}")
        premise = (item.context or "").strip()
        return f"{premise[:-1]} {connectors[item.question]}", [c[0].lower() + c[1:] for c in item.choices]
    if task == "belebele":
        return f"P: {item.context}\nQ: {item.question.strip()}\nA:", list(item.choices)
    if task == "exams":
        head = f"{item.context.strip()}\n" if item.context else ""
        return f"{head}Question: {item.question.strip()}\nAnswer:", list(item.choices)
    raise EuroflowError(f"unknown multiple-choice task {task!r}; known: {', '.join(TASK_LANGUAGES)}")


def choice_request(tokenizer: SpTokenizer, context: str, continuation: str) -> Request:
    """lm-eval's context/continuation split: trailing spaces of the context move to the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    context_ids = [tokenizer.bos_id, *tokenizer.encode(context)] if context else [tokenizer.bos_id]
    whole = [tokenizer.bos_id, *tokenizer.encode(context + continuation)]
    continuation_ids = whole[len(context_ids) :]
    if not continuation_ids:
        raise EuroflowError(f"continuation {continuation!r} encodes to no tokens")
    return Request(context_ids + continuation_ids, len(context_ids))


def score_items(model, tokenizer: SpTokenizer, task: str, items: list[Item], *, batch_size: int = 16) -> dict:
    """acc / acc_norm / acc_norm_bytes and chance level of ``items``, plus per-item log-likelihoods."""
    max_len = int(model.config.max_position_embeddings)
    requests: list[Request] = []
    truncated = 0
    continuations: list[list[str]] = []
    for item in items:
        context, choices = prompt_and_choices(task, item)
        continuations.append(choices)
        for choice in choices:
            request = choice_request(tokenizer, context, " " + choice)
            requests.append(request)
            truncated += len(request.ids) > max_len
    scores = iter(score_requests(model, requests, batch_size=batch_size, pad_id=tokenizer.unk_id))

    hits = hits_norm = hits_bytes = 0
    chance = 0.0
    per_item = []
    for item, choices in zip(items, continuations):
        lls = [-next(scores).nll for _ in choices]
        pred, pred_norm, pred_bytes = predictions(lls, choices)
        hits += pred == item.answer
        hits_norm += pred_norm == item.answer
        hits_bytes += pred_bytes == item.answer
        chance += 1.0 / len(choices)
        per_item.append({"id": item.id, "answer": item.answer, "pred": pred, "pred_norm": pred_norm, "loglik": lls})
    n = len(items)
    return {
        "n": n,
        "acc": hits / n,
        "acc_norm": hits_norm / n,
        "acc_norm_bytes": hits_bytes / n,
        "chance": chance / n,
        "truncated_requests": truncated,
        "items": per_item,
    }


def predictions(logliks: list[float], choices: list[str]) -> tuple[int, int, int]:
    """Predicted choice for acc (total), acc_norm (per character) and acc_norm_bytes (per UTF-8 byte)."""
    return (
        _argmax(logliks),
        _argmax([ll / len(c) for ll, c in zip(logliks, choices)]),
        _argmax([ll / len(c.encode("utf-8")) for ll, c in zip(logliks, choices)]),
    )


def _argmax(values: list[float]) -> int:
    # first maximum, like numpy.argmax
    return max(range(len(values)), key=lambda i: (values[i], -i))


def evaluate_tasks(
    model_dir: str | Path,
    data_root: str | Path,
    tasks: list[str],
    *,
    max_items: int | None = None,
    languages: dict[str, tuple[str, ...]] | None = None,
    batch_size: int = 16,
    device: str = "auto",
) -> dict:
    """The ``mc`` JSON document: ``tasks[task][lang]`` = score_items(...) for each task's languages."""
    for task in tasks:
        if task not in TASK_LANGUAGES:
            raise EuroflowError(f"unknown multiple-choice task {task!r}; known: {', '.join(TASK_LANGUAGES)}")
    if max_items is not None and max_items < 1:
        raise EuroflowError(f"max_items={max_items}: must be >= 1")
    languages = languages or TASK_LANGUAGES
    model = load_model(model_dir, device)
    tokenizer = load_tokenizer(model_dir)
    results: dict[str, dict] = {}
    for task in tasks:
        results[task] = {}
        for lang in languages[task]:
            items = load_items(task_path(data_root, task, lang), max_items=max_items)
            results[task][lang] = score_items(model, tokenizer, task, items, batch_size=batch_size)
    return {
        "model": str(model_dir),
        "metric": "log-likelihood multiple choice, zero-shot",
        "max_items": max_items,
        "prompts": {
            "belebele": "P: {passage}\\nQ: {question}\\nA: {choice}",
            "exams": "[{context}\\n]Question: {question}\\nAnswer: {choice}",
            "xcopa": "{premise without final period} {connector} {choice with lowercase first letter}",
        },
        "tasks": results,
    }

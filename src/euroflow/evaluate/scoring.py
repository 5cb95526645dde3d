"""Sum of token log-likelihoods of token sequences under a causal LM, batched and deterministic.

A request is ``(ids, first_target)``: the negative log-likelihood (nats) of ``ids[i]`` given
``ids[:i]`` summed over ``first_target <= i < len(ids)``. Requests longer than the model's context are
split into windows (:func:`windows`). Batches are right-padded with an attention mask; windows are
grouped by length (stable sort), and results come back in request order. Given a ``reference``
model, each score also carries the KL divergence of the model's next-token distribution from the
reference's, KL(reference || model) in nats summed over the same targets (llama.cpp's
``perplexity --kl-divergence`` figure), both models run on the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from euroflow.errors import EuroflowError


@dataclass(frozen=True)
class Request:
    ids: list[int]
    first_target: int


@dataclass(frozen=True)
class Score:
    nll: float  # nats, summed over the target tokens
    n_targets: int
    kl: float | None = None  # nats, summed over the target tokens: KL(reference || model), given a reference


def score_requests(model, requests: list[Request], *, batch_size: int = 16, pad_id: int = 0, reference=None) -> list[Score]:
    """Scores of ``requests`` in order; a request longer than the model's context is split by :func:`windows`."""
    if batch_size < 1:
        raise EuroflowError(f"batch_size={batch_size}: must be >= 1")
    max_len = int(model.config.max_position_embeddings)
    vocab = int(model.config.vocab_size)
    pieces: list[Request] = []
    owner: list[int] = []
    for index, request in enumerate(requests):
        if not 1 <= request.first_target < len(request.ids):
            raise ValueError(f"request {index}: {len(request.ids)} ids, first_target {request.first_target}")
        if max(request.ids) >= vocab or min(request.ids) < 0:
            raise EuroflowError(f"token id outside the model's vocabulary (vocab_size={vocab}); tokenizer/model mismatch")
        for piece in windows(request.ids, request.first_target, max_len):
            pieces.append(piece)
            owner.append(index)

    order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i].ids))
    piece_scores: list[Score | None] = [None] * len(pieces)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for index, score in zip(chunk, _score_batch(model, [pieces[i] for i in chunk], pad_id, reference)):
                piece_scores[index] = score

    nll = [0.0] * len(requests)
    kl = [0.0] * len(requests)
    n_targets = [0] * len(requests)
    for index, score in zip(owner, piece_scores):
        nll[index] += score.nll
        kl[index] += score.kl or 0.0
        n_targets[index] += score.n_targets
    return [Score(nll=a, n_targets=b, kl=c if reference is not None else None) for a, b, c in zip(nll, n_targets, kl)]


def _score_batch(model, batch: list[Request], pad_id: int, reference=None) -> list[Score]:
    width = max(len(r.ids) for r in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, request in enumerate(batch):
        input_ids[row, : len(request.ids)] = torch.tensor(request.ids, dtype=torch.long)
        attention[row, : len(request.ids)] = 1
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    logits = model(input_ids=input_ids, attention_mask=attention.to(device)).logits.float()
    reference_logits = None
    if reference is not None:
        reference_device = next(reference.parameters()).device
        reference_logits = reference(input_ids=input_ids.to(reference_device),
                                     attention_mask=attention.to(reference_device)).logits.float().to(device)
    scores = []
    for row, request in enumerate(batch):
        # position i-1 predicts token i
        predicting = logits[row, request.first_target - 1 : len(request.ids) - 1]
        targets = input_ids[row, request.first_target : len(request.ids)]
        logprobs = torch.log_softmax(predicting, dim=-1)
        picked = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
        kl = None
        if reference_logits is not None:
            expected = torch.log_softmax(reference_logits[row, request.first_target - 1 : len(request.ids) - 1], dim=-1).double()
            kl = float((expected.exp() * (expected - logprobs.double())).sum())
        scores.append(Score(nll=float(-picked.double().sum()), n_targets=len(targets), kl=kl))
    return scores


def windows(ids: list[int], first_target: int, max_len: int) -> list[Request]:
    """Split the scoring of ``ids[first_target:]`` into requests of at most ``max_len`` tokens.

    * fits: one request;
    * the targets fit with some context: one request of the last ``max_len`` tokens (context cut
      from the left, as lm-eval-harness truncates);
    * otherwise: the first window covers ``ids[:max_len]`` (or ``max_len // 2`` targets after
      ``first_target``), then each further window predicts the next ``max_len // 2`` tokens with the
      ``max_len - max_len // 2`` tokens before them as context. Every target is scored exactly once.
    """
    if max_len < 2:
        raise ValueError(f"max_len={max_len}: need at least 2")
    n = len(ids)
    if n <= max_len:
        return [Request(list(ids), first_target)]
    if n - first_target < max_len:
        begin = n - max_len
        return [Request(list(ids[begin:]), first_target - begin)]
    stride = max_len // 2
    out = []
    start, end = first_target, max(max_len, first_target + stride)
    while start < n:
        end = min(end, n)
        begin = max(0, end - max_len)
        out.append(Request(list(ids[begin:end]), start - begin))
        start, end = end, end + stride
    return out

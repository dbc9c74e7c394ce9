"""Next-token distribution and continuation scores."""

from __future__ import annotations

import torch

from whyllm.errors import PromptTooLongError
from whyllm.methods.engine.args import check_int
from whyllm.model.base import Model
from whyllm.results.base import meta
from whyllm.results.predict import Candidate, PredictResult, TargetScore

__all__ = ["predict", "score_continuation", "top_candidates"]


def top_candidates(model: Model, logprobs: torch.Tensor, k: int) -> tuple[Candidate, ...]:
    """Return the ``k`` most likely tokens of a ``(vocab,)`` log-distribution."""
    values, ids = logprobs.topk(min(k, logprobs.shape[-1]))
    texts = model.token_texts(ids)
    return tuple(
        Candidate(token=t, id=int(i), prob=float(v.exp()), logprob=float(v), rank=r + 1)
        for r, (t, i, v) in enumerate(zip(texts, ids, values, strict=True))
    )


def rank_of(logprobs: torch.Tensor, token_id: int) -> int:
    """1-based rank of ``token_id`` in a ``(vocab,)`` log-distribution (ties favour the token)."""
    return int((logprobs > logprobs[token_id]).sum()) + 1


def score_continuation(model: Model, ids: torch.Tensor, target: str) -> tuple[torch.Tensor, TargetScore]:
    """Run ``ids + target`` once; return the next-token log-distribution and the target's score."""
    target_ids = model.encode_continuation(target)
    full = torch.cat([ids, torch.tensor([target_ids], device=ids.device)], dim=1)  # (1, pos + n)
    if full.shape[1] > model.adapter.n_ctx:
        raise PromptTooLongError(
            f"prompt + target is {full.shape[1]} tokens but {model.name} accepts at most "
            f"{model.adapter.n_ctx}; shorten them"
        )
    with torch.no_grad():
        logits = model.hf(input_ids=full).logits[0, ids.shape[1] - 1 : -1].float()  # (n, vocab)
    lp = logits.log_softmax(-1)
    per = [float(lp[j, t]) for j, t in enumerate(target_ids)]
    ranks = [rank_of(lp[j], t) for j, t in enumerate(target_ids)]
    texts = tuple(model.token_texts(target_ids))
    score = TargetScore(target, tuple(target_ids), texts, tuple(per), tuple(ranks))
    return lp[0], score


def predict(model: Model, prompt: str, *, target: str | None = None, top_k: int = 10) -> PredictResult:
    """Next-token distribution after ``prompt``.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text to continue.
        target: optional continuation to score (several tokens allowed: total and per-token log-prob).
        top_k: how many candidates to list.

    """
    check_int(top_k, "top_k", maximum=model.adapter.d_vocab)
    ids = model.encode(prompt)  # (1, pos)
    score = None
    if target is not None:
        logprobs, score = score_continuation(model, ids, target)
    else:
        with torch.no_grad():
            logprobs = model.hf(input_ids=ids).logits[0, -1].float().log_softmax(-1)  # (vocab,)
    entropy = float(torch.special.entr(logprobs.exp()).sum())
    return PredictResult(
        prompt=prompt,
        input_ids=tuple(ids[0].tolist()),
        input_tokens=tuple(model.token_texts(ids[0])),
        top=top_candidates(model, logprobs, top_k),
        entropy=entropy,
        target=score,
        logprobs=logprobs.detach().cpu(),
        meta=meta(model, "predict", top_k=top_k, target=target),
    )

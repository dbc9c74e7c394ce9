"""Cross-prompt packing: prompts of similar length share forward passes.

Rows are sorted by token length and cut into batches under a token budget. Each batch is left-padded
(so every row's last token sits in the last column), with an attention mask that hides the padding
and position ids that start at 0 on each row's first real token. Only the last ``1 + target length``
positions are read out (``logits_to_keep``), so the unembedding runs on a handful of positions
instead of every position of every prompt.
"""

from __future__ import annotations

from typing import Any

import torch

from whyllm.errors import PromptTooLongError
from whyllm.methods.engine.args import check_int
from whyllm.results.base import meta
from whyllm.results.predict import PredictResult, TargetScore

__all__ = ["TOKEN_BUDGET", "predict_many"]

TOKEN_BUDGET = 2048  # padded tokens per forward pass
MAX_ROWS = 64


def _prepare(model, row: dict[str, Any], options: dict[str, Any]) -> tuple[list[int], list[int], dict]:
    from whyllm.batch.engine import RunSpec, call_args

    kwargs = call_args(model, RunSpec("predict", options), row)
    check_int(kwargs.get("top_k", 10), "top_k")
    ids = model.encode(kwargs["prompt"])[0].tolist()
    target = kwargs.get("target")
    tids = model.encode_continuation(target) if target is not None else []
    if len(ids) + len(tids) > model.adapter.n_ctx:
        raise PromptTooLongError(
            f"prompt + target is {len(ids) + len(tids)} tokens but {model.name} accepts at most "
            f"{model.adapter.n_ctx}; shorten them"
        )
    return ids, tids, kwargs


def _batches(items: list[tuple[int, list[int], list[int], dict]]) -> list[list]:
    items = sorted(items, key=lambda it: (len(it[1]) + len(it[2]), it[0]))
    out, cur = [], []
    for it in items:
        width = len(it[1]) + len(it[2])
        if cur and ((len(cur) + 1) * width > TOKEN_BUDGET or len(cur) >= MAX_ROWS):
            out.append(cur)
            cur = []
        cur.append(it)
    return [*out, cur] if cur else out


def _forward(model, seqs: list[list[int]], keep: int) -> torch.Tensor:
    """Log-probs ``(batch, keep, vocab)`` at the last ``keep`` positions of left-padded ``seqs``."""
    width = max(len(s) for s in seqs)
    pad = getattr(model.tokenizer, "pad_token_id", None)
    pad = 0 if pad is None else pad
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, width - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    dev = model.device
    with torch.no_grad():
        out = model.hf(
            input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), logits_to_keep=keep
        )
    return out.logits[:, -keep:].float().log_softmax(-1).cpu()


def _result(model, prompt: str, ids: list[int], tids: list[int], lp: torch.Tensor, kwargs: dict):
    """``lp``: ``(max(len(tids), 1), vocab)`` log-probs after the prompt and after each target token."""
    from whyllm.methods.predict import rank_of, top_candidates

    logprobs = lp[0]
    score = None
    target = kwargs.get("target")
    if target is not None:
        per = tuple(float(lp[j, t]) for j, t in enumerate(tids))
        ranks = tuple(rank_of(lp[j], t) for j, t in enumerate(tids))
        score = TargetScore(target, tuple(tids), tuple(model.token_texts(tids)), per, ranks)
    top_k = kwargs.get("top_k", 10)
    return PredictResult(
        prompt=prompt,
        input_ids=tuple(ids),
        input_tokens=tuple(model.token_texts(ids)),
        top=top_candidates(model, logprobs, top_k),
        entropy=float(torch.special.entr(logprobs.exp()).sum()),
        target=score,
        logprobs=None,
        meta=meta(model, "predict", top_k=top_k, target=target),
    )


def predict_many(model, rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Any]:
    """:func:`whyllm.predict` over ``rows`` in packed forward passes.

    Returns:
        One entry per row, in order: a :class:`PredictResult`, or the exception that row raised.
    """
    out: list[Any] = [None] * len(rows)
    items = []
    for i, row in enumerate(rows):
        try:
            ids, tids, kwargs = _prepare(model, row, options)
        except Exception as e:  # a bad row becomes an error row
            out[i] = e
            continue
        items.append((i, ids, tids, kwargs))
    for batch in _batches(items):
        # a row's input is prompt + target[:-1]; its read-out is its last max(len(target), 1) positions,
        # which left padding puts in the batch's last columns
        seqs = [ids + tids[:-1] for _, ids, tids, _ in batch]
        keep = max(max(len(t), 1) for _, _, t, _ in batch)
        try:
            lp = _forward(model, seqs, keep)
        except Exception as e:  # noqa: BLE001 (the rows of a failed pass become error rows)
            for i, *_ in batch:
                out[i] = e
            continue
        for b, (i, ids, tids, kwargs) in enumerate(batch):
            out[i] = _result(model, kwargs["prompt"], ids, tids, lp[b, keep - max(len(tids), 1) :], kwargs)
    return out

"""Which feedback items drove a change: TracIn over a LoRA adapter's saved checkpoints.

TracIn (Pruthi et al., 2020) credits a training example with the change it caused in a test function
``f`` across training: ``score(z) = sum over checkpoints c of lr_c * (-grad L_z(c) . grad f(c))``. A
positive score means the gradient steps on ``z`` moved ``f`` up. Only the LoRA parameters train, so
the gradients are taken with respect to them alone (about 1.9M numbers on Gemma 3 270M at rank 8).

This is a hand implementation rather than ``captum.influence.TracInCP`` (which gives the same scores
on the LoRA modules, Spearman 1.000 in whyllm's measurements) because the training losses here are
pairwise (DPO) or per-completion (KTO, SFT) over variable-length texts, which TracInCP's
``(inputs, labels)`` batches and ``loss_fn`` do not express without wrappers; and because holding the
few test gradients and streaming the training gradients one at a time per checkpoint keeps memory at
``(tests + 1) x trainable parameters`` however much feedback there is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from whyllm.model.adapters import AdaptedModel

__all__ = ["TestFunction", "pair_logprob", "row_loss", "sequence_logprob", "tracin"]

log = logging.getLogger(__name__)

# (prompt, plus continuation ids, minus continuation ids): f = logp(plus) - logp(minus)
TestFunction = tuple[str, list[int], list[int]]


def sequence_logprob(model: AdaptedModel, prompt: str, ids: Sequence[int]) -> Tensor:
    """Sum of log-probabilities of continuation ``ids`` after ``prompt`` (differentiable)."""
    p = model.encode(prompt)  # (1, pos)
    n = len(ids)
    full = torch.cat([p, torch.tensor([list(ids)], device=p.device)], dim=1)  # (1, pos + n)
    # Only the n positions that predict the continuation need the (large) unembedding.
    logits = model.hf(input_ids=full, use_cache=False, logits_to_keep=n + 1).logits[0, :-1]  # (n, vocab)
    return logits.float().log_softmax(-1).gather(-1, full[0, -n:, None]).sum()


def pair_logprob(model: AdaptedModel, prompt: str, a: Sequence[int], b: Sequence[int]) -> Tensor:
    """``(2,)`` log-probabilities of continuations ``a`` and ``b`` of one prompt, in one batched pass.

    The shorter continuation is padded on the right, so no real token sees a pad (causal attention):
    the result equals two :func:`sequence_logprob` calls up to float error.
    """
    p = model.encode(prompt)[0].tolist()
    n = max(len(a), len(b))
    pad = getattr(model.tokenizer, "pad_token_id", None) or 0
    ids = torch.tensor([p + list(c) + [pad] * (n - len(c)) for c in (a, b)], device=model.device)  # (2, P+n)
    real = torch.tensor([[1] * (len(p) + len(c)) + [0] * (n - len(c)) for c in (a, b)], device=model.device)
    logits = model.hf(input_ids=ids, attention_mask=real, use_cache=False, logits_to_keep=n + 1).logits
    lp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, -n:, None])[..., 0]  # (2, n)
    return (lp * real[:, -n:]).sum(-1)


def _text_ids(model: AdaptedModel, text: str) -> list[int]:
    return model.encode_continuation(text, what="completion")


def row_loss(model: AdaptedModel, method: str, row: dict[str, Any], beta: float, ref: float | None) -> Tensor:
    """The training objective of one row, as its trainer optimises it (KTO: its sign-weighted log-lik).

    Args:
        model: the adapted model (adapter enabled).
        method: ``dpo``, ``kto`` or ``sft``.
        row: a training row from the adapter's record.
        beta: the DPO temperature.
        ref: the reference margin ``logp_ref(chosen) - logp_ref(rejected)`` (DPO only).

    """
    if method == "dpo":
        both = pair_logprob(model, row["prompt"], _text_ids(model, row["chosen"]),
                            _text_ids(model, row["rejected"]))
        return -F.logsigmoid(beta * (both[0] - both[1] - (ref or 0.0)))
    lp = sequence_logprob(model, row["prompt"], _text_ids(model, row["completion"]))
    if method == "kto":
        return -lp if row["label"] else lp
    return -lp


def _reference_margins(model: AdaptedModel, method: str, rows: list[dict[str, Any]]) -> list[float | None]:
    if method != "dpo":
        return [None] * len(rows)
    out = []
    with torch.no_grad(), model.base():
        for r in rows:
            both = pair_logprob(model, r["prompt"], _text_ids(model, r["chosen"]),
                                _text_ids(model, r["rejected"]))
            out.append(float(both[0] - both[1]))
    return out


def _difference(model: AdaptedModel, prompt: str, plus: Sequence[int], minus: Sequence[int]) -> Tensor:
    both = pair_logprob(model, prompt, plus, minus)
    return both[0] - both[1]


def _grad(value: Tensor, params: list[Tensor]) -> Tensor:
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                      for g, p in zip(grads, params, strict=True)])  # (n_params,)


def _load_checkpoint(model: AdaptedModel, path: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model.peft, load_file(str(path)), adapter_name="default")


def tracin(model: AdaptedModel, tests: Sequence[TestFunction]) -> list[dict[int, float]]:
    """TracIn score of every feedback item the adapter was trained on, for each test function.

    Args:
        model: the adapted model; its adapter folder must hold ``whyllm-tune.json`` and checkpoints.
        tests: ``(prompt, plus_ids, minus_ids)``: the change to explain is
            ``logp(plus | prompt) - logp(minus | prompt)``.

    Returns:
        For each test, ``{feedback id: score}`` (a row built from several items credits each of them).
        Empty dicts when the adapter has no record or no checkpoints.

    """
    record, folder = model.record, Path(model.adapter_dir)
    rows, checkpoints = record.get("rows", []), record.get("checkpoints", [])
    if not rows or not checkpoints or not tests:
        return [{} for _ in tests]
    method, beta = record["method"], float(record.get("settings", {}).get("beta", 0.1))
    params = [p for n, p in model.peft.named_parameters() if "lora_" in n and ".default." in n]
    flags = [p.requires_grad for p in params]
    refs = _reference_margins(model, method, rows)
    scores = torch.zeros(len(rows), len(tests))  # (row, test)
    try:
        for p in params:
            p.requires_grad_(True)
        for ckpt in checkpoints:
            _load_checkpoint(model, folder / ckpt["path"] / "adapter_model.safetensors")
            test_grads = torch.stack([_grad(_difference(model, pr, plus, minus), params)
                                      for pr, plus, minus in tests])  # (test, n_params)
            for i, (row, ref) in enumerate(zip(rows, refs, strict=True)):
                g = _grad(row_loss(model, method, row, beta, ref), params)  # (n_params,)
                scores[i] -= float(ckpt["learning_rate"]) * (test_grads @ g)
    finally:
        _load_checkpoint(model, folder / "adapter_model.safetensors")
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    out: list[dict[int, float]] = [{} for _ in tests]
    for i, row in enumerate(rows):
        for t in range(len(tests)):
            value = float(scores[i, t])
            if math.isfinite(value):
                for fid in row["feedback_ids"]:
                    out[t][fid] = out[t].get(fid, 0.0) + value
    return out

"""Base vs tuned: what a LoRA adapter changed, where in the model, and which feedback caused it.

For each prompt: the next-token distributions of both models (KL divergence, the tokens that gained and
lost most), same-seed generations and the first step where they part, the KL between both models'
logit-lens read-outs at every layer, the heads and MLPs whose direct effect on the ``gained - lost``
logit difference changed most, and the TracIn score of every feedback item the adapter was trained on
(:mod:`whyllm.feedback.influence`). Over all prompts: which moved (KL above a threshold) and which of
those no feedback item resembles (side effects). One copy of the weights is held: the base side runs
inside :meth:`~whyllm.model.adapters.AdaptedModel.base` (PEFT's ``disable_adapter()``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import torch

from whyllm.errors import InputError
from whyllm.feedback.influence import tracin
from whyllm.methods.components import components as components_method
from whyllm.methods.generate import generate
from whyllm.methods.predict import predict
from whyllm.model.adapters import AdaptedModel
from whyllm.model.base import check_prompt
from whyllm.model.hooks import capture
from whyllm.results.base import meta
from whyllm.results.feedback import DiffResult, PromptDiff

__all__ = ["diff", "lora_norms"]


def _kl(lp_p: torch.Tensor, lp_q: torch.Tensor) -> float:
    """KL(p || q) from log-probabilities over the last axis, in nats."""
    return float((lp_p.exp() * (lp_p - lp_q)).sum(-1).clamp_min(0.0))


def _shifts(model: AdaptedModel, base: torch.Tensor, tuned: torch.Tensor, k: int) -> tuple[tuple, tuple]:
    pb, pt = base.exp(), tuned.exp()  # (vocab,)
    delta = pt - pb

    def row(i: int) -> dict[str, Any]:
        return {"token": model.token_texts([i])[0], "id": i, "base_prob": float(pb[i]),
                "tuned_prob": float(pt[i])}

    gained = tuple(row(int(i)) for i in delta.topk(k).indices)
    lost = tuple(row(int(i)) for i in (-delta).topk(k).indices)
    return gained, lost


def _layer_lps(model: AdaptedModel, prompt: str) -> torch.Tensor:
    """``(layer, vocab)`` log-probabilities of the logit lens at the last position (embed, L0, ...)."""
    ad = model.adapter
    ids = model.encode(prompt)
    blocks = {f"L{i}": b for i, b in enumerate(ad.blocks)}
    with torch.no_grad(), capture({"embed": ad.blocks[0]}, inputs=True) as first, capture(blocks) as outs:
        model.hf(input_ids=ids, use_cache=False, logits_to_keep=1)
        resid = torch.stack([first["embed"][0, -1], *(outs[n][0, -1] for n in blocks)])  # (layer, d_model)
        return ad.logits_from_resid(resid).float().log_softmax(-1)  # (layer, vocab)


def _round_trip(model: AdaptedModel, shifts: tuple[dict, ...]) -> dict | None:
    """The first token whose text tokenizes back to it (components takes the target as text)."""
    for row in shifts:
        try:
            if model.encode_continuation(row["token"])[0] == row["id"]:
                return row
        except InputError:
            continue
    return None


def _components(model: AdaptedModel, prompt: str, gained: tuple, lost: tuple, k: int,
                base: bool) -> tuple[dict, ...] | None:
    """Components of the ``gained - lost`` logit difference on one side (``None``: no usable pair)."""
    plus, minus = _round_trip(model, gained), _round_trip(model, lost)
    if plus is None or minus is None:
        return None
    run = functools.partial(components_method, model, prompt, target=plus["token"], foil=minus["token"],
                            top_neurons=0)
    if base:
        return run().parts
    with model.merged():  # components reads the output projections' weights: fold the adapter in
        return run().parts


def _changes(base_parts, tuned_parts, k: int) -> tuple[dict, ...]:
    if base_parts is None or tuned_parts is None:
        return ()
    before = {p.name: p.value for p in base_parts}
    rows = [{"name": p.name, "base": before[p.name], "tuned": p.value, "change": p.value - before[p.name]}
            for p in tuned_parts if p.kind in ("head", "mlp")]
    return tuple(sorted(rows, key=lambda r: -abs(r["change"]))[:k])


def _divergence(base, tuned) -> dict[str, Any] | None:
    for b, t in zip(base.steps, tuned.steps, strict=False):
        if b.id != t.id:
            return {"step": b.index, "base_token": b.token, "tuned_token": t.token,
                    "base_prob": b.prob, "tuned_prob": t.prob}
    if len(base.steps) != len(tuned.steps):
        n = min(len(base.steps), len(tuned.steps))
        return {"step": n, "base_token": base.steps[n].token if n < len(base.steps) else None,
                "tuned_token": tuned.steps[n].token if n < len(tuned.steps) else None}
    return None


def lora_norms(model: AdaptedModel) -> tuple[dict[str, Any], ...]:
    """Frobenius norm of each LoRA module's weight change ``scale * B @ A``, largest first."""
    out = []
    with torch.no_grad():
        for name, module in model.peft.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
                delta = module.scaling["default"] * (b.float() @ a.float())  # (out, in)
                out.append({"module": name.removeprefix("base_model.model."), "norm": float(delta.norm())})
    return tuple(sorted(out, key=lambda r: -r["norm"]))


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _nearest(prompt: str, rows: list[dict[str, Any]]) -> tuple[int | None, float]:
    """The training item whose prompt shares most words with ``prompt`` (Jaccard overlap)."""
    words, best = _words(prompt), (None, 0.0)
    for r in rows:
        other = _words(r["prompt"])
        overlap = len(words & other) / max(1, len(words | other))
        if overlap > best[1]:
            best = (r["feedback_ids"][0], overlap)
    return best


def _one(model: AdaptedModel, prompt: str, s: dict[str, Any]) -> tuple[PromptDiff, tuple]:
    k = s["top_k"]
    pt = predict(model, prompt, top_k=1)
    gt = generate(model, prompt, **s["gen"])
    lt = _layer_lps(model, prompt) if s["layers"] else None
    with model.base():  # one pass through PEFT's disable_adapter() for the whole base side
        pb = predict(model, prompt, top_k=1)
        gb = generate(model, prompt, **s["gen"])
        lb = _layer_lps(model, prompt) if s["layers"] else None
        gained, lost = _shifts(model, pb.logprobs, pt.logprobs, k)
        base_parts = _components(model, prompt, gained, lost, k, True) if s["components"] else None
    tuned_parts = _components(model, prompt, gained, lost, k, False) if s["components"] else None
    comps = _changes(base_parts, tuned_parts, 2 * k)
    layers = ()
    if lb is not None:
        names = ["embed", *(f"L{i}" for i in range(model.adapter.n_layers))]
        layers = tuple({"layer": n, "kl": _kl(lt[i], lb[i])} for i, n in enumerate(names))
    first = _divergence(gb, gt)
    # The change TracIn explains: the tuned continuation over the base one where they part, else the
    # next token that gained most over the one that lost most.
    test = (prompt, list(gt.ids), list(gb.ids)) if first else (prompt, [gained[0]["id"]], [lost[0]["id"]])
    d = PromptDiff(
        prompt=prompt, kl=_kl(pt.logprobs, pb.logprobs),
        base_top={"token": pb.top[0].token, "prob": pb.top[0].prob},
        tuned_top={"token": pt.top[0].token, "prob": pt.top[0].prob}, gained=gained, lost=lost,
        first_divergence=first, base_text=gb.text, tuned_text=gt.text, layers=layers, components=comps,
    )
    return d, test


def diff(
    model: AdaptedModel, prompts: Sequence[str], *, top_k: int = 5, max_new_tokens: int = 20,
    temperature: float = 0.0, seed: int = 0, layers: bool = True, components: bool = True,
    feedback: bool = True, threshold: float = 0.05, related: float = 0.3,
) -> DiffResult:
    """Compare ``model`` (base + adapter) with its base, prompt by prompt.

    Args:
        model: from :func:`whyllm.model.adapters.load_adapter` (or ``load_model(adapter=...)``).
        prompts: texts to compare on.
        top_k: tokens listed as gained / lost (and twice as many components).
        max_new_tokens: length of the compared generations.
        temperature: sampling temperature of both generations (0: greedy); both use ``seed``.
        seed: the generations' seed.
        layers: compute the per-layer logit-lens KL.
        components: compute the per-head / per-MLP direct-effect change.
        feedback: score the training feedback by TracIn (needs the adapter's checkpoints).
        threshold: KL (nats) above which a prompt counts as moved.
        related: word overlap (Jaccard) with a training prompt above which a prompt counts as one the
            feedback was about; moved prompts below it are reported as side effects.

    Raises:
        InputError: no prompts, an empty prompt, a bad setting, or ``model`` has no adapter.

    """
    if not isinstance(model, AdaptedModel):
        raise InputError("diff compares a model with an adapter against its base; load one with "
                         "--adapter DIR (whyllm.load_model(adapter=DIR))")
    if isinstance(prompts, str) or not prompts:
        raise InputError(f"give at least one prompt to compare on (got {prompts!r})")
    for p in prompts:
        check_prompt(p)
    if not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")
    gen = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed,
           "greedy": temperature == 0, "alternatives": 1}
    s = {"gen": gen, "top_k": top_k, "layers": layers, "components": components}
    done = [_one(model, p, s) for p in prompts]
    diffs, tests = [d for d, _ in done], [t for _, t in done]
    rows = model.record.get("rows", [])
    if feedback and rows:
        by_id = {fid: r for r in rows for fid in r["feedback_ids"]}
        for i, scores in enumerate(tracin(model, tests)):
            ranked = sorted(scores.items(), key=lambda kv: -kv[1])
            diffs[i] = PromptDiff.from_dict({**diffs[i].to_dict(), "feedback": [
                {"id": fid, "score": sc, "prompt": by_id[fid]["prompt"]} for fid, sc in ranked]})
    summary = _summary(diffs, rows, threshold, related)
    return DiffResult(
        adapter_dir=model.adapter_dir, base_model=model.base_name, prompts=tuple(diffs),
        lora=lora_norms(model),
        summary=summary, meta=meta(model, "diff", top_k=top_k, max_new_tokens=max_new_tokens,
                                   temperature=temperature, seed=seed, threshold=threshold, related=related),
    )


def _summary(diffs: list[PromptDiff], rows: list[dict[str, Any]], threshold: float, related: float) -> dict:
    moved, side, nearest = [], [], []
    for d in diffs:
        fid, overlap = _nearest(d.prompt, rows)
        nearest.append({"prompt": d.prompt, "feedback_id": fid, "overlap": overlap})
        if d.kl > threshold:
            moved.append(d.prompt)
            if overlap < related:
                side.append(d.prompt)
    kls = [d.kl for d in diffs]
    return {"threshold": threshold, "related": related, "mean_kl": sum(kls) / len(kls), "max_kl": max(kls),
            "moved": moved, "side_effects": side, "nearest_feedback": nearest}

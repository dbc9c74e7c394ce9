"""Shared helpers of the internals tests: prompts and independent reference implementations."""

from __future__ import annotations

import torch

from whyllm.model.hooks import capture, intervene

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
# longer than the tiny Gemma's sliding window (16): exercises real attention masks
LONG_CLEAN = CLEAN + " Mary. Then Alice and Bob talked, and Bob said"
LONG_CORRUPTED = CLEAN + " Mary. Then Alice and Bob talked, and Alice said"


def site_modules(model, component):
    """(name -> module, inputs?) of ``component`` at every layer, as the naive reference patches it."""
    ad = model.adapter
    if component == "resid_pre":
        return {str(i): b for i, b in enumerate(ad.blocks)}, True
    if component == "resid_post":
        return {str(i): b for i, b in enumerate(ad.blocks)}, False
    if component == "head":
        return {str(i): ad.part(i, "attn_o") for i in range(ad.n_layers)}, True
    return {str(i): ad.part(i, component) for i in range(ad.n_layers)}, False


def activations(model, ids, component):
    mods, inputs = site_modules(model, component)
    with torch.no_grad(), capture(mods, inputs=inputs) as acts:
        model.hf(input_ids=ids)
    return dict(acts)


def logit_diff(model, ids, target_id, foil_id, edits=None, inputs=False):
    """The real model's last-position logit difference, with optional ``intervene`` edits."""
    with torch.no_grad(), intervene(edits or {}, inputs=inputs):
        logits = model.hf(input_ids=ids).logits[0, -1].float()
    return float(logits[target_id] - (logits[foil_id] if foil_id is not None else 0.0))


def naive_patch(model, clean_ids, corrupted_ids, component, layer, where, target_id, foil_id, head=None):
    """One full forward pass of the corrupted prompt with one clean activation patched in (the reference)."""
    mods, inputs = site_modules(model, component)
    src = activations(model, clean_ids, component)[str(layer)]
    n_heads = model.adapter.n_heads

    def fn(t):
        t = t.clone()
        if head is None:
            t[:, where] = src[:, where]
        else:
            v, s = t.view(*t.shape[:2], n_heads, -1), src.view(*src.shape[:2], n_heads, -1)
            v[:, where, head] = s[:, where, head]
        return t

    return logit_diff(model, corrupted_ids, target_id, foil_id, {mods[str(layer)]: fn}, inputs)


def boom(_t):
    raise RuntimeError("forced failure inside the forward pass")

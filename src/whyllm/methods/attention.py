"""Attention patterns of every layer and head, ranked by each head's direct effect on the target."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from whyllm.errors import InputError, UnsupportedModelError
from whyllm.methods._internals import attention_weights, check_index, default_token, token_id
from whyllm.methods.components import decompose, direct_sites
from whyllm.model.base import Model
from whyllm.model.hooks import capture
from whyllm.results.base import meta
from whyllm.results.internals import AttentionResult

__all__ = ["attention", "eager_attention"]


@contextmanager
def eager_attention(model: Model) -> Iterator[None]:
    """Switch the model to eager attention (which returns its weights) for the block; restore after.

    Fused kernels (SDPA, flash) never materialise the attention weights.
    """
    hf = model.hf
    original = hf.config._attn_implementation
    changed = original != "eager"
    if changed:
        hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        if changed:
            hf.set_attn_implementation(original)


def _select(values: Sequence[int] | None, size: int, what: str, plural: str) -> tuple[int, ...]:
    if values is None:
        return tuple(range(size))
    if isinstance(values, int):
        values = [values]
    chosen = tuple(dict.fromkeys(check_index(v, size, what, plural) for v in values))
    if not chosen:
        raise InputError(f"no {plural} selected; give at least one or None for all")
    return chosen


def attention(
    model: Model,
    prompt: str,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    target: str | None = None,
    max_tokens: int = 256,
) -> AttentionResult:
    """Attention weights of the chosen layers and heads, with each head's direct logit attribution.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text.
        layers: layer indices to keep (negative count from the end); ``None`` = all.
        heads: head indices to keep; ``None`` = all.
        target: token whose logit the head importance explains; default the model's top prediction.
        max_tokens: keep at most the last ``max_tokens`` positions (queries and keys) to bound the
            result's size; earlier keys are then cut off and rows sum to less than 1.

    Returns:
        An :class:`AttentionResult` with ``(layer, head, query, key)`` patterns and ``(layer, head)``
        importance.
    """
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise InputError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    ad = model.adapter
    lays = _select(layers, ad.n_layers, "layer", "layers")
    hds = _select(heads, ad.n_heads, "head", "heads")
    ids = model.encode(prompt)  # (1, pos)
    outs, ins = direct_sites(model)
    with torch.no_grad(), eager_attention(model):
        with (
            capture(outs) as got_out,
            capture(ins, inputs=True) as got_in,
            attention_weights(model, lays) as att,
        ):
            real = model.hf(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()
        if len(att) != len(lays):
            raise UnsupportedModelError(
                f"{model.name}: the attention modules return no weights even with eager attention; "
                "whyllm cannot show their patterns"
            )
        tid = token_id(model, target) if target is not None else default_token(model, real)[1]
        dec = decompose(model, {k: v[0, -1] for k, v in {**got_out, **got_in}.items()}, tid, None)
    offset = max(0, ids.shape[1] - max_tokens)
    pats = torch.stack([att[lay][0, list(hds)] for lay in lays])  # (layer, head, q, k)
    pats = pats[..., offset:, offset:].float().cpu()
    imp = torch.zeros(ad.n_layers, ad.n_heads)
    for p in dec.parts:
        if p.kind == "head":
            imp[p.layer, p.head] = p.value
    return AttentionResult(
        prompt=prompt, input_ids=tuple(ids[0].tolist()), input_tokens=tuple(model.token_texts(ids[0])),
        offset=offset, layers=lays, heads=hds, patterns=pats, importance=imp[list(lays)][:, list(hds)],
        target=target, target_id=tid, target_token=model.token_texts([tid])[0],
        meta=meta(model, "attention", layers=list(lays), heads=list(hds), target=target,
                  max_tokens=max_tokens),
    )

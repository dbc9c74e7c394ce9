"""Attention patterns of every layer and head, ranked by each head's direct effect on the target."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from whyllm.methods.engine.args import check_int, select, target_and_foil
from whyllm.methods.engine.direct import capture_direct, decompose
from whyllm.methods.engine.limits import require_memory
from whyllm.model.base import Model
from whyllm.model.patches import attention_weights, check_weights, eager_attention
from whyllm.results.base import meta
from whyllm.results.internals import AttentionResult

__all__ = ["attention"]


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
    check_int(max_tokens, "max_tokens")
    ad = model.adapter
    lays = select(layers, ad.n_layers, "layer", "layers")
    hds = select(heads, ad.n_heads, "head", "heads")
    ids = model.encode(prompt)  # (1, pos)
    n = ids.shape[1]
    require_memory(ad.n_layers * ad.n_heads * n * n * 4 * 2, f"attention weights of {n} positions",
                   "use a shorter prompt", model.device)  # eager attention holds every layer's weights
    with torch.no_grad(), eager_attention(model):
        with capture_direct(model) as acts, attention_weights(model, lays) as att:
            real = model.hf(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()
        check_weights(model, att, lays)
        tid, _ = target_and_foil(model, target, None, real)
        dec = decompose(model, acts.at(-1), tid, None)
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

"""Logit lens: decode the residual stream after every layer with the model's own read-out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from whyllm.methods.engine.args import check_int, resolve_positions, token_id
from whyllm.methods.engine.limits import require_memory
from whyllm.model.base import Model
from whyllm.model.hooks import capture
from whyllm.results.base import meta
from whyllm.results.internals import LensResult

__all__ = ["lens_from", "lens_inputs", "logit_lens"]

_CHUNK_ELEMENTS = 1 << 25  # logits decoded at once (128 MB of float32): bounds memory, not speed


def _decode(model: Model, resid: Tensor, k: int, target: int | None) -> tuple[Tensor, ...]:
    """Top-k, entropy and target prob/rank of ``resid`` ``(n, d_model)``, a chunk of rows at a time.

    Rows of all layers go through together: each chunk reads the unembedding matrix once, which is
    what a few rows cost (``positions=[-1]`` decodes every layer in one chunk). Each chunk makes
    three passes over its logits besides top-k: ``exp``, their sum and their dot product with the
    logits (entropy), and a count of the logits above the target's (rank).
    """
    rows = min(resid.shape[0], max(1, _CHUNK_ELEMENTS // model.adapter.d_vocab))
    z_buf = torch.empty(rows, model.adapter.d_vocab, device=resid.device)  # (rows, vocab)
    e_buf = torch.empty_like(z_buf)
    out: list[tuple[Tensor, ...]] = []
    for part in resid.split(rows):
        n = part.shape[0]
        z, e = model.adapter.logits_for(part, out=z_buf[:n]), e_buf[:n]
        m = z.amax(-1, keepdim=True)  # (n, 1)
        top = z.topk(k, dim=-1)
        torch.sub(z, m, out=e).exp_()  # exp(z - max)
        total = e.sum(-1)  # (n,)
        lse = m[:, 0] + total.log()
        ent = lse - e.mul_(z).sum(-1) / total  # H = lse - sum(p z)
        if target is None:
            tp = tr = torch.zeros(n)
        else:
            zt = z[:, target : target + 1]  # (n, 1)
            tp = torch.exp(zt[:, 0] - lse)
            tr = torch.sub(z, zt, out=e).clamp_(min=0).sign_().sum(-1).long() + 1  # logits above the target's
        out.append((top.indices, torch.exp(top.values - lse[:, None]), ent, tp, tr))
    return tuple(torch.cat(x) for x in zip(*out, strict=True))


def logit_lens(
    model: Model,
    prompt: str,
    *,
    target: str | None = None,
    top_k: int = 5,
    positions: Sequence[int] | None = None,
) -> LensResult:
    """Decode the residual stream after the embeddings and after every block, at every position.

    Each layer's residual goes through the model's final norm, unembedding and soft-capping
    (``model.adapter.logits_for``), so the last layer reproduces the model's real output.
    The logits are reduced to the top-k tokens (and the target's probability and rank) a chunk of
    rows at a time: the ``layer x pos x vocab`` logits are never held at once.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text.
        target: follow this continuation's first token (probability and rank per layer).
        top_k: tokens kept per cell.
        positions: positions to decode (negative count from the end); ``None`` = all. ``[-1]``
            costs about one forward pass.

    Returns:
        A :class:`LensResult` with ``n_layers + 1`` rows, embeddings first.
    """
    ids, pos, tid = lens_inputs(model, prompt, target=target, top_k=top_k, positions=positions)
    ad = model.adapter
    blocks = {f"L{i}": b for i, b in enumerate(ad.blocks)}
    with torch.no_grad():
        with capture({"embed": ad.blocks[0]}, inputs=True) as first, capture(blocks) as outs:
            model.hf(input_ids=torch.tensor([ids], device=model.device), use_cache=False, logits_to_keep=1)
        index = torch.tensor(pos, device=model.device)
        states = [first["embed"], *(outs[n] for n in blocks)]
        resid = torch.stack([s[0, index] for s in states])  # (layer, pos, d_model)
    return lens_from(model, prompt, ids, pos, resid, tid, target=target, top_k=top_k)


def lens_inputs(
    model: Model, prompt: str, *, target: str | None = None, top_k: int = 5,
    positions: Sequence[int] | None = None,
) -> tuple[list[int], tuple[int, ...], int | None]:
    """The checked arguments of :func:`logit_lens`: token ids, positions decoded, the target's id."""
    check_int(top_k, "top_k", maximum=model.adapter.d_vocab)
    ids = model.encode(prompt)  # (1, pos)
    pos = resolve_positions(positions, ids.shape[1])
    cells = (model.adapter.n_layers + 1) * len(pos)
    # per cell: top-k ids and probabilities, and their token strings (~60 bytes each as Python objects)
    require_memory(cells * top_k * 72, f"a logit-lens grid of {cells:,} cells x top {top_k}",
                   "pass fewer positions (e.g. positions=[-1]) or a smaller top_k", model.device)
    tid = token_id(model, target) if target is not None else None
    return ids[0].tolist(), tuple(pos), tid


def lens_from(
    model: Model, prompt: str, ids: list[int], pos: tuple[int, ...], resid: Tensor, tid: int | None, *,
    target: str | None = None, top_k: int = 5,
) -> LensResult:
    """The :func:`logit_lens` result from the residual stream ``resid`` ``(layer, pos, d_model)``.

    Args:
        model: the model.
        prompt: the text.
        ids: the prompt's token ids (from :func:`lens_inputs`).
        pos: the positions decoded (from :func:`lens_inputs`).
        tid: the target's token id, or ``None`` (from :func:`lens_inputs`).
        resid: the stream before the first block and after each block, at ``pos``.
        target: as :func:`logit_lens` takes it.
        top_k: as :func:`logit_lens` takes it.
    """
    k = min(top_k, model.adapter.d_vocab)
    names = ["embed", *(f"L{i}" for i in range(model.adapter.n_layers))]
    with torch.no_grad():
        flat = _decode(model, resid.flatten(0, 1), k, tid)  # rows layer-major
    shape = resid.shape[:2]
    top_ids, top_probs, ent, tp, tr = (x.reshape(*shape, *x.shape[1:]).cpu() for x in flat)
    uniq = top_ids.unique().tolist()
    text = dict(zip(uniq, model.token_texts(uniq), strict=True))
    top_tokens = tuple(tuple(tuple(text[i] for i in cell) for cell in row) for row in top_ids.tolist())
    return LensResult(
        prompt=prompt, input_ids=tuple(ids), input_tokens=tuple(model.token_texts(ids)),
        positions=pos, layer_names=tuple(names), top_ids=top_ids, top_probs=top_probs, top_tokens=top_tokens,
        entropy=ent, target=target, target_id=tid,
        target_token=model.token_texts([tid])[0] if tid is not None else None,
        target_probs=tp if tid is not None else None, target_ranks=tr if tid is not None else None,
        meta=meta(model, "logit_lens", target=target, top_k=top_k, positions=list(pos)),
    )

"""QK attribution: why a head attends where it does.

The pre-softmax score of head ``h`` from query position ``q`` to key position ``k`` is
``s = scaling * q_vec . k_vec``. The residual stream at each position is a sum of parts (embeddings,
every earlier head and MLP, constant biases: :func:`~whyllm.methods.engine.direct.residual_parts`), and
``q_vec = rope(q_norm(W_q ln1(x) + b_q))`` is linear in ``x`` once the norms' scales are frozen at their
real values (RoPE is a rotation, linear already). So ``q_vec`` and ``k_vec`` split into one term per
part and ``s`` into one term per (query part, key part) pair; the pairs sum to the real score up to
float error. The real score is recomputed from the projections the model really computed and checked
against the model's own attention weights (softmax over the keys).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from whyllm.errors import InputError, UnsupportedModelError
from whyllm.methods.engine.args import check_index
from whyllm.methods.engine.direct import DirectActivations, capture_direct, residual_parts
from whyllm.model.base import Model
from whyllm.model.hooks import capture, raw_hooks
from whyllm.model.patches import attention_weights, check_weights, eager_attention
from whyllm.results.base import meta
from whyllm.results.qk import QKResult

__all__ = ["qk"]

_WEIGHTS_TOLERANCE = 1e-2  # softmax of the recomputed scores vs the model's weights (bf16-safe)


@dataclass
class _End:
    """One end of a head's score: the projection module it reads and which of its output columns."""

    module: nn.Module
    weight: Tensor  # (d_model, d_head): the module's weight columns of this head
    cols: slice  # those columns of the module's output

    def bias(self) -> Tensor | None:
        """``(d_head,)`` the projection's bias for this head, or ``None``."""
        b = getattr(self.module, "bias", None)
        return b[self.cols].float() if isinstance(b, Tensor) else None


@dataclass
class _Path:
    """How one head turns the residual stream into its query (``q``) and key (``k``) vectors."""

    attn: nn.Module
    q: _End
    k: _End
    q_norm: nn.Module | None
    k_norm: nn.Module | None
    scaling: float
    softcap: float | None


def _path(model: Model, layer: int, head: int, kv: int) -> _Path:
    """The query/key path of query head ``head`` and key head ``kv``, or :class:`UnsupportedModelError`."""
    ad = model.adapter
    attn = ad.part(layer, "attn")
    d = ad.d_head
    ends = {port: _End(mod, w[:, cols], cols)
            for mod, w, heads in ad.qkv_projections(layer)  # raises UnsupportedModelError
            for port, h, cols in heads if (port, h) in (("q", head), ("k", kv))}
    norms = [getattr(attn, n, None) for n in ("q_norm", "k_norm")]
    for norm in norms:
        if norm is not None and getattr(norm, "weight", None) is not None and norm.weight.numel() != d:
            raise UnsupportedModelError(
                f"{model.name}: the attention's q/k norms act on {norm.weight.numel()} channels, not one "
                f"head ({d}); QK attribution supports per-head q/k norms only"
            )
    cap = getattr(attn, "attn_logit_softcapping", None) or getattr(ad.config, "attn_logit_softcapping", None)
    scaling = getattr(attn, "scaling", None)
    scaling = float(d**-0.5 if scaling is None else scaling)
    return _Path(attn, ends["q"], ends["k"], *norms, scaling, float(cap) if cap else None)


@contextmanager
def _call_kwargs(attn: nn.Module) -> Iterator[dict[str, Any]]:
    """Record the keyword arguments the model calls ``attn`` with (rotary cos/sin, attention mask)."""
    store: dict[str, Any] = {}

    def make(i: int) -> Callable:
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            store.update(kwargs)

        return hook

    with raw_hooks([attn], make, pre=True):
        yield store


def _rope(attn: nn.Module, cos_sin: Any) -> Callable[[Tensor, int | slice], Tensor] | None:
    """``rope(x (rows, pos, d_head), positions)``: the model's own rotary embedding; ``None`` without one."""
    if cos_sin is None:
        return None
    apply = getattr(sys.modules[type(attn).__module__], "apply_rotary_pos_emb", None)
    if apply is None:
        raise UnsupportedModelError(
            f"{type(attn).__name__} gets rotary position embeddings but its module has no "
            "apply_rotary_pos_emb; QK attribution cannot apply them"
        )
    cos, sin = (t.float() for t in cos_sin)  # (batch, pos, rotary_dim)

    def rope(x: Tensor, pos: int | slice) -> Tensor:
        c, s = cos[:1, pos], sin[:1, pos]  # (1, [pos,] rotary_dim)
        x4 = x[None] if x.dim() == 3 else x[None, :, None]  # (1, rows, pos or 1, d_head)
        c4, s4 = (c, s) if c.dim() == 3 else (c[:, None], s[:, None])  # (1, pos or 1, rotary_dim)
        out = apply(x4, x4, c4, s4)[0][0]
        return out if x.dim() == 3 else out[:, 0]

    return rope


def _frozen_rows(model: Model, norm: nn.Module | None, real: Tensor, rows: Tensor) -> Tensor:
    """``rows`` (parts of ``real``) through ``norm`` frozen at ``real``'s scale (unchanged without a norm)."""
    return rows if norm is None else model.adapter.frozen_norm(norm, real)(rows)


def _keep(mask: Any, q: int, n: int) -> Tensor:
    """``(n,)`` which keys the query at ``q`` may attend to (causal; sliding windows from the real mask)."""
    keep = torch.arange(n) <= q
    if isinstance(mask, Tensor) and mask.dim() == 4:
        row = mask[0, 0, q, :n].cpu()
        keep &= row if row.dtype == torch.bool else row > torch.finfo(row.dtype).min / 2
    return keep


@dataclass
class _Run:
    """What one forward pass of :func:`qk` recorded."""

    acts: DirectActivations
    resid: Tensor  # (pos, d_model) the layer's attention-norm input
    q_real: Tensor  # (pos, d_head) the head's query projection output
    k_real: Tensor  # (pos, d_head) its key head's key projection output
    kwargs: dict[str, Any]
    weights: Tensor  # (pos,) the head's attention weights from the query


def _forward(model: Model, path: _Path, layer: int, head: int, q: int, ids: Tensor) -> _Run:
    ln1 = model.adapter.part(layer, "ln1")
    mods = {"q": path.q.module, "k": path.k.module}
    with torch.no_grad(), eager_attention(model):
        with capture_direct(model) as acts, capture({"x": ln1}, inputs=True) as x, capture(mods) as proj, \
                _call_kwargs(path.attn) as kwargs, attention_weights(model, [layer]) as att:
            model.hf(input_ids=ids, use_cache=False, logits_to_keep=1)
        check_weights(model, att, [layer])
    q_real, k_real = proj["q"][0, :, path.q.cols].float(), proj["k"][0, :, path.k.cols].float()
    return _Run(acts, x["x"][0].float(), q_real, k_real, kwargs, att[layer][0, head, q].float().cpu())


def _real_scores(path: _Path, run: _Run, q: int, rope: Callable | None) -> Tensor:
    """``(q + 1,)`` the real pre-softmax (pre-cap) scores of the query at ``q`` to keys ``0..q``."""
    qv = run.q_real[q][None]  # (1, d_head)
    kv_ = run.k_real[: q + 1]  # (key, d_head)
    if path.q_norm is not None:
        qv = path.q_norm(qv).float()
    if path.k_norm is not None:
        kv_ = path.k_norm(kv_).float()
    if rope is not None:
        qv = rope(qv, q)
        kv_ = rope(kv_[None], slice(0, q + 1))[0]
    return path.scaling * (kv_ @ qv[0])


def _side(model: Model, path: _Path, run: _Run, layer: int, pos: int, which: str,
          rope: Callable | None) -> tuple[list[str], Tensor]:
    """Source names and ``(source, d_head)`` query or key terms at ``pos`` (the last source: constants)."""
    ad = model.adapter
    names, vecs, const = residual_parts(model, run.acts.at(pos), layer)  # (part, d_model), (d_model,)
    ln1 = ad.part(layer, "ln1")
    frozen = ad.frozen_norm(ln1, run.resid[pos])
    rows = frozen(torch.cat([vecs, const[None]]))  # (part + 1, d_model)
    beta = getattr(ln1, "bias", None)
    if isinstance(beta, Tensor):
        rows[-1] += beta.float()
    end = path.q if which == "q" else path.k
    terms = rows @ end.weight.float()  # (part + 1, d_head)
    bias = end.bias()
    if bias is not None:
        terms[-1] += bias
    real = (run.q_real if which == "q" else run.k_real)[pos]
    terms = _frozen_rows(model, path.q_norm if which == "q" else path.k_norm, real, terms)
    if rope is not None:
        terms = rope(terms, pos)
    return [*names, "bias"], terms


def _linearisation(model: Model, path: _Path, layer: int, rope: bool) -> str:
    ad = model.adapter
    ln1 = ad.part(layer, "ln1")
    kind = "LayerNorm (centring and scale)" if isinstance(ln1, nn.LayerNorm) else "RMSNorm scale"
    text = (f"The attention input norm ({ad.spec.ln1}, {kind}) is frozen at its real value at each position")
    if path.q_norm is not None or path.k_norm is not None:
        text += "; the per-head q_norm and k_norm scales are frozen at their real values"
    if ad.spec.attn_post_norm or ad.spec.mlp_post_norm:
        text += "; the post-attention and post-MLP norms of earlier layers are frozen at their real scales"
    text += "; RoPE is applied exactly (it is linear)" if rope else ""
    text += (". With these scales fixed the score is bilinear in the residual parts, so the pairs sum to "
             "the real score up to float error (error).")
    if path.softcap:
        text += (f" The model soft-caps attention scores (tanh(s / {path.softcap:g}) * {path.softcap:g}); "
                 "score and parts are pre-cap.")
    return text


def _position(value: int, n: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -n <= value < n:
        raise InputError(f"{what} position {value!r} is out of range; the prompt has positions 0..{n - 1} "
                         f"(or -{n}..-1)")
    return value % n


def qk(
    model: Model, prompt: str, *, layer: int, head: int, query: int = -1, key: int | None = None,
) -> QKResult:
    """Why a head attends where it does: its attention score split into pairs of upstream parts.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text.
        layer: the head's layer (negative counts from the end).
        head: the head (query head index; with grouped-query attention its key head is shared).
        query: the query position (negative counts from the end; default the last token).
        key: the key position, at most ``query``; default the key this head attends to most from there.

    Returns:
        A :class:`QKResult`: the pre-softmax score, its ``(query source, key source)`` parts (embeddings,
        earlier heads and MLPs, constant biases) that sum to it within ``error``, and the attention weight.
    """
    ad = model.adapter
    lay = check_index(layer, ad.n_layers, "layer", "layers")
    hd = check_index(head, ad.n_heads, "head", "heads")
    ids = model.encode(prompt)  # (1, pos)
    n = ids.shape[1]
    q = _position(query, n, "query")
    k = None if key is None else _position(key, n, "key")
    if k is not None and k > q:
        raise InputError(f"key position {key!r} ({k}) comes after query position {query!r} ({q}); a causal "
                         f"model's query only attends to keys 0..{q}")
    kv = hd // (ad.n_heads // ad.n_kv_heads)
    path = _path(model, lay, hd, kv)
    run = _forward(model, path, lay, hd, q, ids)
    keep = _keep(run.kwargs.get("attention_mask"), q, n)
    if k is None:
        k = int(run.weights.argmax())
    if not keep[k]:
        raise InputError(f"key position {k} is masked for query position {q} in layer {lay} (outside its "
                         "sliding window); the head cannot attend to it, choose a nearer key")
    with torch.no_grad():
        rope = _rope(path.attn, run.kwargs.get("position_embeddings"))
        real = _real_scores(path, run, q, rope).cpu()  # (q + 1,)
        names, q_terms = _side(model, path, run, lay, q, "q", rope)
        _, k_terms = _side(model, path, run, lay, k, "k", rope)
        parts = (path.scaling * q_terms @ k_terms.T).cpu().double()  # (query source, key source)
    capped = real if path.softcap is None else torch.tanh(real / path.softcap) * path.softcap
    allowed = keep[: q + 1]
    check = float((capped[allowed].softmax(-1) - run.weights[: q + 1][allowed]).abs().max())
    if not check <= _WEIGHTS_TOLERANCE:
        raise UnsupportedModelError(
            f"{model.name}: the attention scores whyllm recomputes for layer {lay} do not "
            f"reproduce the model's attention weights (max difference {check:.3g}); QK attribution does not "
            "support this attention variant"
        )
    score = float(real[k])
    tokens = model.token_texts(ids[0])
    return QKResult(
        prompt=prompt, input_ids=tuple(ids[0].tolist()), tokens=tuple(tokens), layer=lay, head=hd, kv_head=kv,
        query=q, key=k, sources=tuple(names), parts=parts, score=score,
        error=abs(float(parts.sum()) - score), probability=float(run.weights[k]),
        weights_check=check, scaling=path.scaling, softcap=path.softcap,
        linearisation=_linearisation(model, path, lay, rope is not None),
        meta=meta(model, "qk", layer=layer, head=head, query=query, key=key),
    )

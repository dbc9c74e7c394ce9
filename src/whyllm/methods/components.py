"""Direct logit attribution: which heads, MLPs and embeddings write the target logit.

The residual stream at the last position is a sum: embeddings (+ positional embeddings) plus every
attention and MLP output. Freezing the final norm's scale at its real value makes the read-out
linear, so each term's contribution to the target logit (or target - foil difference) is its
projection on one direction, and the contributions sum to the real logit. Attention outputs split
further into heads: the output projection's input is the concatenated heads, each multiplied by its
slice of the projection (``adapter.head_out_weight``). Gemma's extra norms after attention and MLP
are frozen the same way. With logit soft-capping the decomposition is of the pre-cap logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whyllm.errors import InputError
from whyllm.methods._internals import default_token, token_id
from whyllm.model.base import Model
from whyllm.model.hooks import capture
from whyllm.results.base import meta
from whyllm.results.internals import ComponentsResult, Neuron, Part

__all__ = ["components", "decompose", "direct_sites"]


def direct_sites(model: Model) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """Modules to capture for :func:`decompose`: (outputs by name, inputs by name)."""
    ad = model.adapter
    outs: dict[str, nn.Module] = {"embed": ad.embed, "final": ad.blocks[-1]}
    if ad.pos_embed is not None:
        outs["pos_embed"] = ad.pos_embed
    ins: dict[str, nn.Module] = {}
    for layer in range(ad.n_layers):
        outs[f"mlp{layer}"] = ad.part(layer, "mlp_out")
        ins[f"z{layer}"] = ad.part(layer, "attn_o")  # concatenated heads
        ins[f"neurons{layer}"] = ad.part(layer, "mlp_down")
        if ad.spec.attn_post_norm:
            ins[f"attn_post{layer}"] = ad.part(layer, "attn_out")
        if ad.spec.mlp_post_norm:
            ins[f"mlp_post{layer}"] = ad.part(layer, "mlp_out")
    return outs, ins


@dataclass
class Decomposition:
    """Raw output of :func:`decompose` (all at one position)."""

    parts: list[Part]
    total: float  # real pre-soft-cap logit (difference)
    neuron_values: list[Tensor]  # per layer (d_mlp,) direct effect of each neuron
    neuron_acts: list[Tensor]  # per layer (d_mlp,) activations


def _direction(model: Model, final: Tensor, target: int, foil: int | None) -> tuple[Tensor, float]:
    """``u`` with ``frozen_ln_final(v) . w_U == v . u`` for every part ``v``, and the norm bias term."""
    ad = model.adapter
    w = ad.unembed.weight[target].float()  # (d_model,)
    if foil is not None:
        w = w - ad.unembed.weight[foil].float()
    frozen = ad.frozen_norm(ad.ln_final, final)
    eye = torch.eye(final.shape[-1], device=final.device)  # (d_model, d_model)
    u = frozen(eye) @ w  # (d_model,): the frozen norm is linear, so this is its adjoint applied to w
    bias = getattr(ad.ln_final, "bias", None)
    return u, float(bias.float() @ w) if isinstance(bias, Tensor) else 0.0


def _attn_parts(model: Model, layer: int, acts: dict[str, Tensor], u: Tensor) -> list[Part]:
    ad = model.adapter
    z = acts[f"z{layer}"].float()  # (n_heads * d_head,)
    w_o = ad.head_out_weight(layer).float()  # (head, d_head, d_model)
    heads = torch.einsum("hd,hdm->hm", z.reshape(ad.n_heads, -1), w_o)  # (head, d_model)
    bias = ad.out_bias(layer, "attn_o")
    vecs = torch.cat([heads, bias.float()[None]]) if bias is not None else heads  # (head [+1], d_model)
    if ad.spec.attn_post_norm:
        vecs = ad.frozen_norm(ad.part(layer, "attn_out"), acts[f"attn_post{layer}"])(vecs)
    values = (vecs.float() @ u).tolist()
    parts = [Part(f"L{layer}.H{h}", "head", values[h], layer, h) for h in range(ad.n_heads)]
    if bias is not None:
        parts.append(Part(f"L{layer}.attn_bias", "attn_bias", values[-1], layer))
    return parts


def _neurons(model: Model, layer: int, acts: dict[str, Tensor], u: Tensor) -> tuple[Tensor, Tensor]:
    ad = model.adapter
    act = acts[f"neurons{layer}"].float()  # (d_mlp,)
    w_down = ad.mlp_down_weight(layer).float()  # (d_mlp, d_model)
    if ad.spec.mlp_post_norm:
        w_down = ad.frozen_norm(ad.part(layer, "mlp_out"), acts[f"mlp_post{layer}"])(w_down)
    return act * (w_down @ u), act  # (d_mlp,) each


@torch.no_grad()
def decompose(model: Model, acts: dict[str, Tensor], target: int, foil: int | None) -> Decomposition:
    """Split the logit (difference) at one position, given :func:`direct_sites` activations there.

    Args:
        model: the model.
        acts: name -> activation ``(d_model,)`` (or ``(d_mlp,)`` etc.) at the position.
        target: token id of the target.
        foil: token id of the foil, or ``None`` for the target logit alone.
    """
    ad = model.adapter
    final = acts["final"].float()
    u, norm_bias = _direction(model, final, target, foil)
    parts = [Part("embed", "embed", float(acts["embed"].float() @ u))]
    if "pos_embed" in acts:
        parts.append(Part("pos_embed", "pos_embed", float(acts["pos_embed"].float() @ u)))
    values, activations = [], []
    for layer in range(ad.n_layers):
        parts += _attn_parts(model, layer, acts, u)
        parts.append(Part(f"L{layer}.mlp", "mlp", float(acts[f"mlp{layer}"].float() @ u), layer))
        v, a = _neurons(model, layer, acts, u)
        values.append(v)
        activations.append(a)
    if norm_bias:
        parts.append(Part("ln_final.bias", "bias", norm_bias))
    ub = getattr(ad.unembed, "bias", None)
    if isinstance(ub, Tensor):
        value = float(ub[target] - (ub[foil] if foil is not None else 0.0))
        parts.append(Part("unembed.bias", "bias", value))
    total = _pre_cap_logit(model, acts["final"], target, foil)
    return Decomposition(parts, total, values, activations)


def _pre_cap_logit(model: Model, final: Tensor, target: int, foil: int | None) -> float:
    """The real logit (difference) before soft-capping, from the target (and foil) rows only."""
    ad = model.adapter
    ids = [target] + ([foil] if foil is not None else [])
    normed = ad.ln_final(final[None])  # (1, d_model)
    if isinstance(ad.unembed, nn.Linear):  # two rows, not the whole vocabulary
        bias = ad.unembed.bias[ids] if ad.unembed.bias is not None else None
        logits = F.linear(normed, ad.unembed.weight[ids], bias)[0].float()
    else:
        logits = ad.unembed(normed)[0, ids].float()
    return float(logits[0] - (logits[1] if foil is not None else 0.0))


def _top_neurons(dec: Decomposition, n: int, n_mlps: int = 3) -> tuple[Neuron, ...]:
    mlps = sorted((p for p in dec.parts if p.kind == "mlp"), key=lambda p: -abs(p.value))[:n_mlps]
    out = []
    for p in mlps:
        v, a = dec.neuron_values[p.layer], dec.neuron_acts[p.layer]
        for i in v.abs().topk(min(n, v.shape[0])).indices.tolist():
            out.append(Neuron(p.layer, i, float(a[i]), float(v[i])))
    return tuple(out)


def components(
    model: Model, prompt: str, *, target: str | None = None, foil: str | None = None, top_neurons: int = 10
) -> ComponentsResult:
    """Direct logit attribution of the next-token logit to embeddings, heads and MLPs.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text; the last position is decomposed.
        target: the token to explain (first token of the text); default the model's top prediction.
        foil: explain ``target - foil`` logit difference instead.
        top_neurons: neurons listed for each of the three MLPs with the largest effect (0: none).

    Returns:
        A :class:`ComponentsResult`; its ``parts`` sum to ``total`` (the real pre-soft-cap logit or
        difference) to float precision (about 1e-4 relative in float32), reported as ``error``.
    """
    if not isinstance(top_neurons, int) or top_neurons < 0:
        raise InputError(f"top_neurons must be a non-negative integer, got {top_neurons!r}")
    ids = model.encode(prompt)  # (1, pos)
    outs, ins = direct_sites(model)
    with torch.no_grad():
        with capture(outs) as got_out, capture(ins, inputs=True) as got_in:
            real = model.hf(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()
        acts = {k: v[0, -1] for k, v in {**got_out, **got_in}.items()}
        tid = token_id(model, target) if target is not None else default_token(model, real)[1]
        fid = token_id(model, foil, "foil") if foil is not None else None
        if fid == tid:
            raise InputError(
                f"target and foil are the same token ({target!r}, {foil!r}); pick a different foil"
            )
        dec = decompose(model, acts, tid, fid)
    s = sum(p.value for p in dec.parts)
    texts = model.token_texts([tid] + ([fid] if fid is not None else []))
    return ComponentsResult(
        prompt=prompt, input_ids=tuple(ids[0].tolist()), input_tokens=tuple(model.token_texts(ids[0])),
        position=ids.shape[1] - 1, target=target, target_id=tid, target_token=texts[0],
        parts=tuple(dec.parts), total=dec.total, error=s - dec.total,
        logit=float(real[tid] - (real[fid] if fid is not None else 0.0)),
        n_layers=model.adapter.n_layers, n_heads=model.adapter.n_heads, foil=foil, foil_id=fid,
        foil_token=texts[1] if fid is not None else None, neurons=_top_neurons(dec, top_neurons),
        softcap=model.adapter.softcap, meta=meta(model, "components", target=target, foil=foil,
                                                 top_neurons=top_neurons),
    )

"""Direct logit attribution: the residual stream at one position split into what each part writes.

The residual stream at a position is a sum: embeddings (+ positional embeddings) plus every attention
and MLP output. Freezing the final norm's scale at its real value makes the read-out linear, so each
term's contribution to the target logit (or target - foil difference) is its projection on one
direction, and the contributions sum to the real logit. Attention outputs split further into heads:
the output projection's input is the concatenated heads, each multiplied by its slice of the projection
(``adapter.head_out_weight``). Gemma's extra norms after attention and MLP are frozen the same way.
With logit soft-capping the decomposition is of the pre-cap logit.

Used by components (the decomposition itself) and attention (each head's importance).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from whyllm.model.base import Model
from whyllm.model.hooks import capture
from whyllm.results.internals import Part

__all__ = ["Decomposition", "DirectActivations", "capture_direct", "decompose", "residual_parts"]


def _sites(model: Model) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
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
class DirectActivations:
    """What :func:`capture_direct` recorded: module outputs and inputs ``(batch, pos, ...)`` by name."""

    outputs: dict[str, Tensor]
    inputs: dict[str, Tensor]

    def at(self, pos: int, row: int = 0) -> dict[str, Tensor]:
        """Every activation at position ``pos`` of batch row ``row``."""
        return {k: v[row, pos] for k, v in {**self.outputs, **self.inputs}.items()}


@contextmanager
def capture_direct(model: Model) -> Iterator[DirectActivations]:
    """Record, during the forward pass run inside the block, what :func:`decompose` needs."""
    outs, ins = _sites(model)
    with capture(outs) as got_out, capture(ins, inputs=True) as got_in:
        yield DirectActivations(got_out, got_in)


@dataclass
class Decomposition:
    """Output of :func:`decompose` (all at one position)."""

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


def _attn_vectors(model: Model, layer: int, acts: dict[str, Tensor]) -> Tensor:
    """What each head of ``layer`` (then its output bias, if any) adds to the residual.

    Returns ``(head [+1], d_model)``; Gemma's post-attention norm is frozen at its real scale.
    """
    ad = model.adapter
    z = acts[f"z{layer}"].float()  # (n_heads * d_head,)
    w_o = ad.head_out_weight(layer).float()  # (head, d_head, d_model)
    heads = torch.einsum("hd,hdm->hm", z.reshape(ad.n_heads, -1), w_o)  # (head, d_model)
    bias = ad.out_bias(layer, "attn_o")
    vecs = torch.cat([heads, bias.float()[None]]) if bias is not None else heads  # (head [+1], d_model)
    if ad.spec.attn_post_norm:
        vecs = ad.frozen_norm(ad.part(layer, "attn_out"), acts[f"attn_post{layer}"])(vecs)
    return vecs.float()


def _attn_parts(model: Model, layer: int, acts: dict[str, Tensor], u: Tensor) -> list[Part]:
    ad = model.adapter
    bias = ad.out_bias(layer, "attn_o")
    values = (_attn_vectors(model, layer, acts) @ u).tolist()
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
    """Split the logit (difference) at one position, given :func:`capture_direct` activations there.

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
    ids = [target] + ([foil] if foil is not None else [])
    logits = ad.logits_for(acts["final"][None], ids, softcap=False)[0].float()  # real pre-cap logits
    total = float(logits[0] - (logits[1] if foil is not None else 0.0))
    return Decomposition(parts, total, values, activations)


@torch.no_grad()
def residual_parts(model: Model, acts: dict[str, Tensor], layer: int) -> tuple[list[str], Tensor, Tensor]:
    """The residual stream entering block ``layer`` at one position, split into what wrote it.

    Args:
        model: the model.
        acts: :func:`capture_direct` activations at the position (``DirectActivations.at``).
        layer: the block whose input is split (0: the embeddings alone).

    Returns:
        ``(names, vectors, constant)``: names ``embed``, ``pos_embed``, ``L{l}.H{h}``, ``L{l}.mlp`` for the
        blocks before ``layer``; their vectors ``(part, d_model)``; and the sum of the constant terms
        (attention output biases) ``(d_model,)``. ``vectors.sum(0) + constant`` is the block's input.
    """
    ad = model.adapter
    names, vecs = ["embed"], [acts["embed"].float()]
    if "pos_embed" in acts:
        names.append("pos_embed")
        vecs.append(acts["pos_embed"].float())
    constant = torch.zeros_like(vecs[0])
    for lay in range(layer):
        heads = _attn_vectors(model, lay, acts)  # (head [+1], d_model)
        if heads.shape[0] > ad.n_heads:
            constant = constant + heads[-1]
        names += [f"L{lay}.H{h}" for h in range(ad.n_heads)] + [f"L{lay}.mlp"]
        vecs += [*heads[: ad.n_heads], acts[f"mlp{lay}"].float()]
    return names, torch.stack(vecs), constant

"""The two kinds of forward pass behind circuits: a gradient pass and an edge-ablation pass.

* :func:`gradient_pass` runs a batch of input embeddings forward and the metric backward, and returns
  what every writer wrote (per row) and, per reader input, the gradient of the metric with respect to
  that input alone (averaged over the rows asked for). A reader input is a copy of the residual stream
  seen by one projection head or one MLP, so its gradient is the gradient at the projection's (or MLP's)
  own input carried back through the norm before it: a vector-Jacobian product per reader.
* :func:`ablation_pass` runs the clean prompt once per row of edge masks. Every reader input is the
  residual stream minus, for each of its ablated edges, what that writer wrote in this run minus what
  it wrote in the corrupted (or mean) run: the reader sees the corrupted value along ablated edges and
  the live value along kept ones, the standard edge-ablation of circuit discovery.

A head's output is its slice of the output projection, passed through the post-attention norm (Gemma)
frozen at its real scale, so the heads' outputs sum to the attention output exactly.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from whyllm.methods.circuits.graph import Graph
from whyllm.methods.engine.direct import DirectActivations
from whyllm.methods.engine.sweep import Metric
from whyllm.model.base import Model
from whyllm.model.hooks import capture, intervene
from whyllm.model.patches import frozen

__all__ = ["Gradients", "ablation_pass", "gradient_pass", "work_dtype", "writer_outputs"]


def work_dtype(model: Model) -> torch.dtype:
    """The dtype the passes compute in: float64 for a float64 model, else float32."""
    return torch.float64 if model.adapter.unembed.weight.dtype == torch.float64 else torch.float32


def _heads_out(model: Model, layer: int, z: Tensor, post_in: Tensor | None) -> Tensor:
    """What each head of ``layer`` writes: ``(head, batch, pos, d_model)`` from ``z``."""
    ad = model.adapter
    dt = work_dtype(model)
    w_o = ad.head_out_weight(layer).to(dt)  # (head, d_head, d_model)
    heads = torch.einsum("bphd,hdm->hbpm", z.to(dt).view(*z.shape[:2], ad.n_heads, -1), w_o)
    if post_in is not None:
        heads = ad.frozen_norm(ad.part(layer, "attn_out"), post_in)(heads).to(dt)
    return heads


def _sites(model: Model) -> dict[str, dict[str, nn.Module]]:
    """Modules whose inputs the passes read, by kind and layer."""
    ad = model.adapter
    post = ad.spec.attn_post_norm is not None
    sites: dict[str, dict[str, nn.Module]] = {
        "block_in": {},
        "z": {},
        "post_in": {},
        "ln2_in": {},
    }
    for layer, block in enumerate(ad.blocks):
        sites["block_in"][str(layer)] = block
        sites["z"][str(layer)] = ad.part(layer, "attn_o")
        if post:
            sites["post_in"][str(layer)] = ad.part(layer, "attn_out")
        if not ad.parallel_residual:
            sites["ln2_in"][str(layer)] = ad.part(layer, "ln2")
    return sites


@torch.no_grad()
def writer_outputs(model: Model, acts: DirectActivations) -> Tensor:
    """What every writer wrote, in :attr:`Graph.writers` order: ``(writer, batch, pos, d_model)``.

    ``acts`` is recorded by :func:`~whyllm.methods.engine.direct.capture_direct`.
    """
    out, ins = acts.outputs, acts.inputs
    dt = work_dtype(model)
    embed = out["embed"].to(dt) + (out["pos_embed"].to(dt) if "pos_embed" in out else 0.0)
    parts = [embed[None]]
    for layer in range(model.adapter.n_layers):
        parts.append(_heads_out(model, layer, ins[f"z{layer}"], ins.get(f"attn_post{layer}")))
        parts.append(out[f"mlp{layer}"].to(dt)[None])
    return torch.cat(parts)


@dataclass
class Gradients:
    """What :func:`gradient_pass` returns.

    Attributes:
        ends: ``(end, pos, d_model)`` gradient of the metric at each reader input, averaged over rows.
        neuron_grads: per layer ``(pos, d_mlp)`` gradient at the MLP neurons, averaged over rows.
        metric: ``(batch,)`` the metric of every row.
    """

    ends: Tensor
    neuron_grads: list[Tensor]
    metric: Tensor


def _vjp(norm: nn.Module, x: Tensor, cotangents: Tensor) -> Tensor:
    """``cotangents`` ``(n, batch, pos, d)`` at ``norm``'s output carried back to its input ``x``."""
    n = cotangents.shape[0]
    with torch.enable_grad():
        xs = x.detach().expand(n, *x.shape).reshape(-1, *x.shape[1:]).requires_grad_(True)
        (g,) = torch.autograd.grad(norm(xs), xs, cotangents.reshape(xs.shape).to(xs.dtype))
    return g.view(cotangents.shape).to(cotangents.dtype)


def gradient_pass(model: Model, graph: Graph, embeds: Tensor, metric: Metric, rows: slice) -> Gradients:
    """Forward ``embeds`` ``(batch, pos, d_model)``, backward the metric of ``rows`` (summed).

    Args:
        model: the model.
        graph: its graph (from :func:`~whyllm.methods.circuits.graph.build_graph`).
        embeds: input embeddings, one prompt (or interpolation) per row.
        metric: scored at the last position.
        rows: the rows whose metric is differentiated; gradients are averaged over them.
    """
    ad = model.adapter
    dt = work_dtype(model)
    sites = _sites(model)
    projections = [ad.qkv_projections(layer) for layer in range(ad.n_layers)]
    proj_mods = {f"{layer}.{i}": m for layer, ps in enumerate(projections) for i, (m, _, _) in enumerate(ps)}
    mlps = {str(layer): ad.part(layer, "mlp") for layer in range(ad.n_layers)}
    downs = {str(layer): ad.part(layer, "mlp_down") for layer in range(ad.n_layers)}
    with ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        stack.enter_context(frozen(model))  # no weight gradients; the fast attention backward on CPU
        got = {k: stack.enter_context(capture(sites[k], inputs=True)) for k in ("block_in", "ln2_in")}
        proj_out = stack.enter_context(capture(proj_mods, detach=False))
        mlp_in = stack.enter_context(capture(mlps, inputs=True, detach=False))
        neurons = stack.enter_context(capture(downs, inputs=True, detach=False))
        final_in = stack.enter_context(capture({"f": ad.ln_final}, inputs=True, detach=False))
        embeds = embeds.detach().requires_grad_(True)  # the model needs one input that requires grad
        logits = model.hf(inputs_embeds=embeds, use_cache=False, logits_to_keep=1).logits[:, -1]
        values = metric.from_logits(logits)
        wrt = [
            *(proj_out[k] for k in proj_mods),
            *(mlp_in[k] for k in mlps),
            *(neurons[k] for k in downs),
            final_in["f"],
        ]
        grads = torch.autograd.grad(values[rows].sum(), wrt, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads, strict=True)]
    n_rows = len(range(*rows.indices(embeds.shape[0])))
    g_proj = dict(zip(proj_mods, grads[: len(proj_mods)], strict=True))
    g_mlp = grads[len(proj_mods) : len(proj_mods) + ad.n_layers]
    g_neurons = grads[len(proj_mods) + ad.n_layers : -1]
    g_final = grads[-1]

    def mean(t: Tensor) -> Tensor:
        return t[rows].to(dt).sum(0) / n_rows  # (pos, ...)

    ends: list[Tensor] = []
    for layer, ps in enumerate(projections):
        x = got["block_in"][str(layer)]
        cot = [
            g_proj[f"{layer}.{i}"][..., cols].to(dt) @ w[:, cols].T.to(dt)
            for i, (_, w, ends_) in enumerate(ps)
            for _, _, cols in ends_
        ]  # each (batch, pos, d_model)
        g = _vjp(ad.part(layer, "ln1"), x[rows], torch.stack([c[rows] for c in cot]))
        ends += list(g.sum(1) / n_rows)
        x_mid = x if ad.parallel_residual else got["ln2_in"][str(layer)]
        ends.append(_vjp(ad.part(layer, "ln2"), x_mid[rows], g_mlp[layer][rows][None])[0].sum(0) / n_rows)
    ends.append(mean(g_final))
    return Gradients(
        ends=torch.stack(ends).detach(),
        neuron_grads=[mean(g).detach() for g in g_neurons],
        metric=values.detach().to(dt),
    )


def ablation_pass(
    model: Model, graph: Graph, ids: Tensor, corrupted: Tensor, ablate: Tensor, metric: Metric
) -> Tensor:
    """The metric of the clean prompt with edges ablated, one row per mask.

    Args:
        model: the model.
        graph: its graph.
        ids: the clean prompt's ids ``(1, pos)``.
        corrupted: ``(writer, pos, d_model)`` what each writer writes in the corrupted (or mean) run.
        ablate: ``(end, rows, writer, pos or 1)`` 1 where the edge is ablated, 0 where it is kept.
        metric: scored at the last position.

    Returns:
        ``(rows,)`` the metric of each row.
    """
    ad = model.adapter
    rows = ablate.shape[1]
    sites = _sites(model)
    dt = work_dtype(model)
    # what each writer wrote in this run minus in the corrupted run, filled in forward order
    delta = torch.zeros(len(graph.writers), rows, ids.shape[1], ad.d_model, dtype=dt)
    done = [0]  # writers filled so far
    end_of = {(e.layer, e.port, e.head): i for i, e in enumerate(graph.ends)}

    def write(value: Tensor) -> None:
        """Store the next writer(s)' outputs ``(n, rows, pos, d_model)``."""
        n = done[0]
        delta[n : n + len(value)] = value.to(dt) - corrupted[n : n + len(value), None]
        done[0] = n + len(value)

    def removed(ends: list[int]) -> Tensor:
        """``(len(ends), rows, pos, d_model)``: what ablation takes out of each end's input."""
        n = done[0]
        mask = ablate[ends][:, :, :n].to(dt)
        if mask.shape[-1] == 1:  # positions merged: one mask for every position
            return torch.einsum("erw,wrpm->erpm", mask[..., 0], delta[:n])
        return torch.einsum("erwp,wrpm->erpm", mask, delta[:n])

    def project(layer: int, w: Tensor, bias: Tensor | None, ends_: list[tuple[str, int, slice]], got):
        def fn(y: Tensor) -> Tensor:
            x = got["block_in"][str(layer)]
            idx = [end_of[(layer, port, h)] for port, h, _ in ends_]
            xs = ad.part(layer, "ln1")(x[None] - removed(idx).to(x.dtype))  # (ends, rows, pos, d_model)
            y = y.clone()
            for i, (_, _, cols) in enumerate(ends_):
                y[..., cols] = (
                    xs[i].to(dt) @ w[:, cols] + (bias[cols].to(dt) if bias is not None else 0)
                ).to(y.dtype)
            return y

        return fn

    def mlp_input(layer: int, got):
        def fn(h: Tensor) -> Tensor:
            write(_heads_out(model, layer, got["z"][str(layer)], got["post_in"].get(str(layer))))
            x = got["block_in"][str(layer)] if ad.parallel_residual else got["ln2_in"][str(layer)]
            return ad.part(layer, "ln2")(x - removed([end_of[(layer, "in", None)]])[0].to(x.dtype))

        return fn

    def record_mlp(h: Tensor) -> Tensor:
        write(h[None])
        return h

    def final(x: Tensor) -> Tensor:
        return x - removed([len(graph.ends) - 1])[0].to(x.dtype)

    def embed(x: Tensor) -> Tensor:
        done[0] = 0
        write(x[None])
        return x

    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        got = {k: stack.enter_context(capture(v, inputs=True)) for k, v in sites.items()}
        fns: dict[nn.Module, object] = {}
        outs: dict[nn.Module, object] = {}
        for layer in range(ad.n_layers):
            for m, w, ends_ in ad.qkv_projections(layer):
                outs[m] = project(layer, w.to(dt), getattr(m, "bias", None), ends_, got)
            outs[ad.part(layer, "mlp_out")] = record_mlp
            fns[ad.part(layer, "mlp")] = mlp_input(layer, got)
        fns[ad.ln_final] = final
        stack.enter_context(intervene({ad.blocks[0]: embed}, inputs=True))
        stack.enter_context(intervene(fns, inputs=True))
        stack.enter_context(intervene(outs))
        batch = ids.expand(rows, -1)
        logits = model.hf(input_ids=batch, use_cache=False, logits_to_keep=1).logits[:, -1]
    return metric.from_logits(logits).to(dt)

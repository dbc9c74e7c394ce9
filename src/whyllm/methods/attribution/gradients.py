"""Gradient methods: saliency, input x gradient and integrated gradients, w.r.t. token embeddings.

Gradients are taken with respect to the output of the token-embedding module (Gemma's embedding
already includes its sqrt(d_model) scale; GPT-2's position embeddings are added later, inside the
model, and are not attributed). Parameters are frozen meanwhile, so no weight gradient is computed,
and only the read positions' logits are (``logits_to_keep``).

Integrated gradients lives in :mod:`whyllm.methods.attribution.integrated`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from whyllm.methods.attribution.engine import Job, MethodOutput
from whyllm.methods.attribution.targets import Target
from whyllm.methods.engine.progress import report
from whyllm.model.hooks import intervene
from whyllm.model.patches import frozen

__all__ = ["input_x_gradient", "row_grads", "saliency"]


def row_grads(job: Job, inputs: Tensor) -> Tensor:
    """Gradient of each group's score for each row of ``inputs``: ``(n_groups, rows, pos, d_model)``.

    One forward for the whole batch. With several groups (a per-token matrix) the graph is cut where
    the read positions' hidden states enter the unembedding: one backward through the
    vocabulary-sized read-out gives every group's gradient there at once (each read position belongs
    to one group), and only the transformer's backward runs once per group, batched
    (``is_grads_batched``: one vectorised pass over the saved graph). Without the cut, each group's
    backward would also multiply a (positions x vocabulary) gradient by the unembedding, mostly
    zeros. Falls back to one backward per group where an operation has no batching rule. ``inputs``
    must require gradients; call inside :func:`~whyllm.model.patches.frozen`.
    """
    n = job.target.n_groups
    if n == 1:
        scores = job.target.scores(job.model, inputs)  # (rows, 1)
        (grad,) = torch.autograd.grad(scores[:, 0], inputs, grad_outputs=torch.ones_like(scores[:, 0]))
        return grad.float()[None]
    owner = _read_owner(job.target, inputs.shape[1])
    cut: dict[str, Tensor] = {}

    def at_readout(h: Tensor) -> Tensor:
        cut["h"], cut["leaf"] = h, h.detach().requires_grad_(True)
        return cut["leaf"]

    with intervene({job.model.adapter.unembed: at_readout} if owner is not None else {}, inputs=True):
        scores = job.target.scores(job.model, inputs)  # (rows, n_groups)
    if owner is not None:
        (at_read,) = torch.autograd.grad(scores.sum(), cut["leaf"])  # (rows * R, n_pos, d_model)
        shaped = at_read.view(-1, owner.shape[0], *at_read.shape[1:])  # (rows, R, n_pos, d_model)
        mask = owner.to(at_read.device)[None] == torch.arange(n, device=at_read.device)[:, None, None]
        outputs, seeds = cut["h"], (shaped[None] * mask[:, None, :, :, None]).flatten(1, 2)
    else:  # some position is read by several groups: back from the scores
        outputs = scores
        seeds = torch.eye(n, device=scores.device, dtype=scores.dtype)[:, None, :].expand(n, *scores.shape)
    try:
        (grad,) = torch.autograd.grad(outputs, inputs, grad_outputs=seeds, is_grads_batched=True,
                                      retain_graph=True)
        return grad.float()  # (n_groups, rows, pos, d_model)
    except RuntimeError:  # no batching rule for some operation: one backward per group
        grads = [torch.autograd.grad(outputs, inputs, grad_outputs=seeds[g], retain_graph=g < n - 1)[0]
                 for g in range(n)]
        return torch.stack(grads).float()


def _read_owner(target: Target, length: int) -> Tensor | None:
    """``(R, n_pos)``: the group reading each (batch row, read position); ``None`` if one is shared."""
    positions, inverse = target.read_positions(length)
    owner = torch.full((target.rows, len(positions)), -1, dtype=torch.long)
    for row, pos, group in zip(target.read_row.tolist(), inverse.tolist(), target.read_group.tolist(),
                               strict=True):
        if owner[row, pos] not in (-1, group):
            return None
        owner[row, pos] = group
    return owner


def _input_grads(job: Job) -> Tensor:
    with frozen(job.model), torch.enable_grad():
        x = job.x.detach().clone().requires_grad_(True)
        grads = row_grads(job, x)[:, 0]
    report(job.progress, 1, 1)
    return grads  # (n_groups, pos, d_model)


def saliency(job: Job) -> MethodOutput:
    """L2 norm of the gradient at each token (always >= 0: how sensitive, not which direction)."""
    grads = _input_grads(job)
    return MethodOutput(token_scores=(grads.norm(dim=-1) * job.free).cpu())


def input_x_gradient(job: Job) -> MethodOutput:
    """``sum_d x_d * df/dx_d`` per token (a first-order estimate of each token's contribution)."""
    grads = _input_grads(job)
    return MethodOutput(token_scores=((grads * job.x.float()).sum(-1) * job.free).cpu())

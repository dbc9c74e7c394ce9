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

from whyllm.methods.attribution.engine import Job, MethodOutput, frozen

__all__ = ["input_x_gradient", "row_grads", "saliency"]


def row_grads(job: Job, inputs: Tensor) -> Tensor:
    """Gradient of each group's score for each row of ``inputs``: ``(n_groups, rows, pos, d_model)``.

    One forward for the whole batch. With several groups (a per-token matrix) their backward passes
    run batched (``is_grads_batched``: one vectorised pass over the saved graph), falling back to one
    backward per group where an operation has no batching rule. ``inputs`` must require gradients;
    call inside :func:`~whyllm.methods.attribution.engine.frozen`.
    """
    scores = job.target.scores(job.model, inputs)  # (rows, n_groups)
    n = job.target.n_groups
    if n == 1:
        (grad,) = torch.autograd.grad(scores[:, 0], inputs, grad_outputs=torch.ones_like(scores[:, 0]))
        return grad.float()[None]
    eye = torch.eye(n, device=scores.device, dtype=scores.dtype)[:, None, :].expand(n, *scores.shape)
    try:
        (grad,) = torch.autograd.grad(scores, inputs, grad_outputs=eye, is_grads_batched=True,
                                      retain_graph=True)
        return grad.float()  # (n_groups, rows, pos, d_model)
    except RuntimeError:  # no batching rule for some operation: one backward per group
        ones = torch.ones_like(scores[:, 0])
        grads = [torch.autograd.grad(scores[:, g], inputs, grad_outputs=ones, retain_graph=g < n - 1)[0]
                 for g in range(n)]
        return torch.stack(grads).float()


def _input_grads(job: Job) -> Tensor:
    with frozen(job.model), torch.enable_grad():
        x = job.x.detach().clone().requires_grad_(True)
        grads = row_grads(job, x)[:, 0]
    if job.progress is not None:
        job.progress(1, 1)
    return grads  # (n_groups, pos, d_model)


def saliency(job: Job) -> MethodOutput:
    """L2 norm of the gradient at each token (always >= 0: how sensitive, not which direction)."""
    grads = _input_grads(job)
    return MethodOutput(token_scores=(grads.norm(dim=-1) * job.free).cpu())


def input_x_gradient(job: Job) -> MethodOutput:
    """``sum_d x_d * df/dx_d`` per token (a first-order estimate of each token's contribution)."""
    grads = _input_grads(job)
    return MethodOutput(token_scores=((grads * job.x.float()).sum(-1) * job.free).cpu())

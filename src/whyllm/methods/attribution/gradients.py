"""Gradient methods: saliency, input x gradient and integrated gradients, w.r.t. token embeddings.

Gradients are taken with respect to the output of the token-embedding module (Gemma's embedding
already includes its sqrt(d_model) scale; GPT-2's position embeddings are added later, inside the
model, and are not attributed). Parameters are frozen meanwhile, so no weight gradient is computed,
and only the read positions' logits are (``logits_to_keep``).

Integrated gradients uses Gauss-Legendre quadrature on the straight path from the baseline to the
input: ``n`` nodes integrate polynomials of degree ``2n - 1`` exactly, so far fewer steps reach a given
completeness error than with a Riemann sum. Steps are batched, in chunks that fit ``max_memory``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.engine import Job, MethodOutput, frozen, rows_per_chunk

__all__ = ["COMPLETENESS_WARNING", "gauss_legendre", "input_x_gradient", "integrated_gradients", "saliency"]

COMPLETENESS_WARNING = 0.05  # warn above a 5% relative completeness error


def gauss_legendre(n: int) -> tuple[Tensor, Tensor]:
    """Nodes ``alpha`` in (0, 1) and weights (summing to 1) of ``n``-point Gauss-Legendre quadrature."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy((nodes + 1) / 2).float(), torch.from_numpy(weights / 2).float()


def _weighted_grads(job: Job, inputs: Tensor, weights: Tensor) -> Tensor:
    """``sum_rows weight * d score_g / d inputs`` for every group g: ``(n_groups, pos, d_model)``.

    One forward for the whole batch, then one backward per group (sharing the forward).
    """
    scores = job.target.scores(job.model, inputs)  # (rows, n_groups)
    w = weights.to(scores.device, scores.dtype)
    out = []
    for g in range(job.target.n_groups):
        (grad,) = torch.autograd.grad(scores[:, g], inputs, grad_outputs=w,
                                      retain_graph=g < job.target.n_groups - 1)
        out.append(grad.float().sum(0))  # (pos, d_model)
    return torch.stack(out)


def _input_grads(job: Job) -> Tensor:
    with frozen(job.model), torch.enable_grad():
        x = job.x.detach().clone().requires_grad_(True)
        grads = _weighted_grads(job, x, torch.ones(1))
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


def _ig(job: Job, steps: int) -> tuple[Tensor, float]:
    alphas, weights = gauss_legendre(steps)
    delta = (job.x - job.base).float()  # (1, pos, d_model), zero at masked tokens
    length = job.x.shape[1] + job.target.appended.shape[1]
    chunk = rows_per_chunk(job.model, length, job.target.read_off.numel() * job.target.rows,
                           grad=True, max_memory=job.max_memory)
    chunk = max(1, chunk // job.target.rows)
    total = torch.zeros(job.target.n_groups, *delta.shape[1:], device=delta.device)
    with frozen(job.model), torch.enable_grad():
        for start in range(0, steps, chunk):
            a = alphas[start:start + chunk].to(delta.device)[:, None, None]  # (c, 1, 1)
            path = (job.base.float() + a * delta).to(job.x.dtype).requires_grad_(True)  # (c, pos, d_model)
            total += _weighted_grads(job, path, weights[start:start + chunk])
            if job.progress is not None:
                job.progress(min(start + chunk, steps), steps)
    attr = (delta * total).sum(-1)  # (n_groups, pos)
    gap = (job.full - job.empty).to(attr.device).float()  # (n_groups,)
    err = ((attr.sum(-1) - gap).abs() / gap.abs().clamp(min=1e-6)).max()
    return attr.cpu(), float(err)


def integrated_gradients(
    job: Job, *, steps: int | str = 32, tolerance: float = 0.01, max_steps: int = 512,
) -> MethodOutput:
    """Integrated gradients from the baseline to the input (Gauss-Legendre quadrature).

    Args:
        job: the run.
        steps: quadrature points, or ``"auto"``: start at 16 and double until the relative
            completeness error is under ``tolerance`` (or ``max_steps`` is reached).
        tolerance: target completeness error for ``"auto"``.
        max_steps: most steps ``"auto"`` tries.

    The completeness error ``|sum(attr) - (f(x) - f(baseline))| / |f(x) - f(baseline)|`` is reported
    and a warning is raised above :data:`COMPLETENESS_WARNING`.
    """
    if steps == "auto":
        n = 16
        while True:
            attr, err = _ig(job, n)
            if err < tolerance or n * 2 > max_steps:
                break
            n *= 2
    else:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError(f"steps must be an integer >= 1 or 'auto', got {steps!r}")
        n = steps
        attr, err = _ig(job, n)
    if err > COMPLETENESS_WARNING:
        warnings.warn(
            f"integrated gradients' completeness error is {err:.1%} with {n} steps: the attributions do not "
            "add up to f(input) - f(baseline); use more steps (or steps='auto') or another baseline",
            UserWarning, stacklevel=3,
        )
    return MethodOutput(token_scores=attr, steps=n, completeness_error=err)

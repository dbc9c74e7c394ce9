"""Integrated gradients on the straight path from the baseline to the input embeddings.

``attr_i = (x_i - b_i) . integral_0^1 df/dx_i(b + a (x - b)) da``, summed over the embedding axis.

Quadrature: Gauss-Legendre (``n`` nodes integrate polynomials of degree ``2n - 1`` exactly), the same
nodes and weights as Captum's ``method="gausslegendre"``. The steps run batched, in chunks that fit
``max_memory``.

``steps="auto"`` integrates adaptively instead: the path is cut into panels of 8 Gauss-Legendre nodes
each, and since ``f`` itself is cheap to evaluate (a forward pass), each panel's own completeness
``|quadrature - (f(end) - f(start))|`` is known. Panels whose error is large are halved and
recomputed until the summed panel errors, which bound the completeness error, are under the
tolerance. Long inputs make ``f`` change abruptly somewhere along the path (attention switching
between tokens); refining only there converges where more uniform steps do not.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.engine import Job, MethodOutput, rows_per_chunk
from whyllm.methods.attribution.gradients import row_grads
from whyllm.methods.engine.limits import MAX_STEPS
from whyllm.methods.engine.progress import report
from whyllm.model.patches import frozen

__all__ = ["COMPLETENESS_WARNING", "gauss_legendre", "integrated_gradients"]

COMPLETENESS_WARNING = 0.05  # warn above a 5% relative completeness error
_PANEL = 8  # Gauss-Legendre nodes per panel (adaptive mode)
_START_PANELS = 4


def gauss_legendre(n: int) -> tuple[Tensor, Tensor]:
    """Nodes ``alpha`` in (0, 1) and weights (summing to 1) of ``n``-point Gauss-Legendre quadrature."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy((nodes + 1) / 2).float(), torch.from_numpy(weights / 2).float()


def _delta(job: Job) -> Tensor:
    return (job.x - job.base).float()  # (1, pos, d_model), zero at masked tokens


def _node_attr(job: Job, alphas: Tensor, done: int, budget: int) -> Tensor:
    """Token attributions ``delta . grad`` at each path point: ``(n_groups, len(alphas), pos)``."""
    delta = _delta(job)
    length = job.x.shape[1] + job.target.appended.shape[1]
    chunk = rows_per_chunk(job.model, length, job.target.read_off.numel() * job.target.rows,
                           grad=True, max_memory=job.max_memory)
    # several groups: their batched backward holds one gradient per group at every layer
    chunk = max(1, chunk // job.target.rows // job.target.n_groups)
    out = []
    with frozen(job.model), torch.enable_grad():
        for start in range(0, len(alphas), chunk):
            a = alphas[start:start + chunk].to(delta.device)[:, None, None]  # (c, 1, 1)
            path = (job.base.float() + a * delta).to(job.x.dtype).requires_grad_(True)  # (c, pos, d_model)
            out.append((row_grads(job, path) * delta).sum(-1).cpu())  # (n_groups, c, pos)
            report(job.progress, done + min(start + chunk, len(alphas)), budget)
    return torch.cat(out, dim=1)


@torch.no_grad()
def _f(job: Job, alphas: list[float]) -> Tensor:
    """The target at path points, ``(len(alphas), n_groups)``."""
    a = torch.tensor(alphas, device=job.x.device)[:, None, None]
    return job.target.scores(job.model, (job.base.float() + a * _delta(job)).to(job.x.dtype)).float().cpu()


def _error(job: Job, attr: Tensor) -> float:
    gap = (job.full - job.empty).float()  # (n_groups,)
    return float(((attr.sum(-1) - gap).abs() / gap.abs().clamp(min=1e-6)).max())


def _fixed(job: Job, steps: int) -> tuple[Tensor, int, dict]:
    alphas, weights = gauss_legendre(steps)
    attr = (_node_attr(job, alphas, 0, steps) * weights[None, :, None]).sum(1)  # (n_groups, pos)
    return attr, steps, {}


def _adaptive(job: Job, tolerance: float, max_steps: int) -> tuple[Tensor, int, dict]:
    t, w = gauss_legendre(_PANEL)
    f = {0.0: job.empty.float(), 1.0: job.full.float()}
    gap = (job.full - job.empty).float().abs().clamp(min=1e-6)  # (n_groups,)
    panels: dict[tuple[float, float], tuple[Tensor, Tensor]] = {}  # (a, b) -> (attr, error)
    todo = [(k / _START_PANELS, (k + 1) / _START_PANELS) for k in range(_START_PANELS)]
    evaluations = 0
    while todo:
        alphas = torch.cat([a + (b - a) * t for a, b in todo])
        per_node = _node_attr(job, alphas, evaluations, max_steps)  # (n_groups, nodes, pos)
        evaluations += len(alphas)
        ends = sorted({e for p in todo for e in p} - set(f))
        f.update(zip(ends, _f(job, ends), strict=True) if ends else [])
        for k, (a, b) in enumerate(todo):
            node = per_node[:, k * _PANEL:(k + 1) * _PANEL]  # (n_groups, 8, pos)
            attr = ((b - a) * w[None, :, None] * node).sum(1)  # (n_groups, pos)
            panels[(a, b)] = (attr, (attr.sum(-1) - (f[b] - f[a])).abs() / gap)
        errors = {p: float(e.max()) for p, (_, e) in panels.items()}
        total = max(float(sum(e for _, e in panels.values()).max()), 0.0)
        if total <= tolerance:
            break
        worst = sorted(errors, key=errors.get, reverse=True)
        todo, covered = [], 0.0
        for a, b in worst:  # halve the worst panels, up to half the total error, within the budget
            if covered >= total / 2 or evaluations + len(todo) * _PANEL + 2 * _PANEL > max_steps:
                break
            del panels[(a, b)]
            todo += [(a, (a + b) / 2), ((a + b) / 2, b)]
            covered += errors[(a, b)]
    attr = sum(a for a, _ in panels.values())
    return attr, len(panels) * _PANEL, {"panels": len(panels), "gradient_evaluations": evaluations}


def integrated_gradients(
    job: Job, *, steps: int | str = 32, tolerance: float = 0.01, max_steps: int = 512,
) -> MethodOutput:
    """Integrated gradients from the baseline to the input.

    Args:
        job: the run.
        steps: Gauss-Legendre points on the whole path, or ``"auto"``: adaptive panels (see the
            module docstring) until the relative completeness error is under ``tolerance``.
        tolerance: target completeness error for ``"auto"``.
        max_steps: most gradient evaluations ``"auto"`` may spend.

    The completeness error ``|sum(attr) - (f(x) - f(baseline))| / |f(x) - f(baseline)|`` is reported
    and a warning is raised above :data:`COMPLETENESS_WARNING`.
    """
    if steps == "auto":
        least = _PANEL * _START_PANELS
        if not (isinstance(tolerance, float | int) and 0 < tolerance < 1) or isinstance(max_steps, bool) \
                or not isinstance(max_steps, int) or not least <= max_steps <= MAX_STEPS:
            raise InputError(f"steps='auto' needs 0 < tolerance < 1 and {least} <= max_steps <= {MAX_STEPS}; "
                             f"got tolerance={tolerance!r}, max_steps={max_steps!r}")
        attr, n, extras = _adaptive(job, tolerance, max_steps)
    elif isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InputError(f"steps must be an integer from 1 to {MAX_STEPS} or 'auto', got {steps!r}")
    else:
        attr, n, extras = _fixed(job, steps)
    err = _error(job, attr)
    if err > COMPLETENESS_WARNING:
        warnings.warn(
            f"integrated gradients' completeness error is {err:.1%} with {n} steps: the attributions do not "
            "add up to f(input) - f(baseline); use more steps (or steps='auto') or another baseline",
            UserWarning, stacklevel=3,
        )
    return MethodOutput(token_scores=attr, steps=n, completeness_error=err, extras=extras)

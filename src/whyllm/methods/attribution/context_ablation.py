"""Context ablation with a sparse linear surrogate (as in ContextCite, Cohen-Wang et al. 2024).

``samples`` random ablations each keep every unit with probability ``keep_prob`` (the others are
replaced by the baseline, as in occlusion: by default the mean embedding); the target is computed
on each (batched), and a Lasso regression of the target on the keep/drop pattern gives each unit's
weight: its estimated effect on the target of keeping it. Seeded, so runs repeat. Cheaper than
occlusion when there are many units (long inputs at word or sentence granularity), since the sample
count is fixed.
"""

from __future__ import annotations

import numpy as np
import torch

from whyllm.errors import InputError
from whyllm.methods.attribution.aggregate import unit_mask
from whyllm.methods.attribution.engine import Job, MethodOutput, masked_scores
from whyllm.methods.engine.limits import MAX_SAMPLES, check_seed

__all__ = ["context_ablation", "lasso"]


def lasso(
    x: np.ndarray, y: np.ndarray, alpha: float, *, iters: int = 1000, tol: float = 1e-7,
) -> tuple[np.ndarray, float]:
    """Minimise ``||y - x w - b||^2 / (2 n) + alpha * ||w||_1`` by cyclic coordinate descent.

    Same objective as scikit-learn's ``Lasso(alpha)`` with an intercept. Returns ``(w, b)``.
    """
    x_mean, y_mean = x.mean(0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    n, p = xc.shape
    col = (xc**2).sum(0) / n
    w = np.zeros(p)
    resid = yc.copy()
    for _ in range(iters):
        biggest = 0.0
        for j in range(p):
            if col[j] == 0:
                continue
            rho = xc[:, j] @ resid / n + col[j] * w[j]
            new = np.sign(rho) * max(abs(rho) - alpha, 0.0) / col[j]
            if new != w[j]:
                resid -= xc[:, j] * (new - w[j])
                biggest = max(biggest, abs(new - w[j]))
                w[j] = new
        if biggest < tol:
            break
    return w, float(y_mean - x_mean @ w)


def context_ablation(
    job: Job, *, samples: int = 64, keep_prob: float = 0.5, alpha: float = 0.01, seed: int = 0,
) -> MethodOutput:
    """Surrogate weights of ``job.units`` from random ablations.

    Args:
        job: the run.
        samples: random ablations to run (batched).
        keep_prob: probability that a unit is kept in a sample.
        alpha: L1 penalty of the Lasso fit (in target units).
        seed: random seed of the ablation patterns.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or not 2 <= samples <= MAX_SAMPLES:
        raise InputError(f"samples must be an integer from 2 to {MAX_SAMPLES}, got {samples!r}")
    check_seed(seed)
    if not (isinstance(keep_prob, float | int) and 0 < keep_prob < 1):
        raise InputError(f"keep_prob must be in (0, 1), got {keep_prob!r}")
    n_units, n = len(job.units), job.x.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.rand(samples, n_units, generator=gen) < keep_prob  # (samples, units)
    masks = torch.stack([unit_mask(job.units, n, (~k).nonzero()[:, 0]) for k in keep])  # (samples, pos)
    y = masked_scores(job.model, job.target, job.x, job.base, masks, max_memory=job.max_memory,
                      progress=job.progress).double().numpy()  # (samples, n_groups)
    xs = keep.double().numpy()
    weights, r2 = [], []
    for g in range(y.shape[1]):
        w, b = lasso(xs, y[:, g], alpha)
        weights.append(w)
        ss = ((y[:, g] - y[:, g].mean()) ** 2).sum()
        r2.append(float(1 - ((y[:, g] - xs @ w - b) ** 2).sum() / ss) if ss > 0 else 1.0)
    extras = {"samples": samples, "keep_prob": keep_prob, "alpha": alpha, "seed": seed, "r2": min(r2)}
    return MethodOutput(unit_scores=torch.tensor(np.stack(weights), dtype=torch.float32), extras=extras)

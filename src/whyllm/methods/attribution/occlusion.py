"""Occlusion (leave-one-unit-out): how much the target drops when one unit is replaced.

Each unit (token, word or sentence) in turn is replaced, token by token, by the baseline token's
embedding (by default the pad token: the same "absent" input as integrated gradients' baseline, and
what Captum's ``LLMAttribution(FeatureAblation)`` substitutes by default), keeping every position,
so the model sees the same sequence length. Score = ``f(x) - f(x with the unit replaced)``.

Rows are batched and share the key/value cache of their unchanged prefix (see
:func:`whyllm.methods.attribution.engine.masked_scores`).
"""

from __future__ import annotations

import torch

from whyllm.methods.attribution.aggregate import unit_mask
from whyllm.methods.attribution.engine import Job, MethodOutput, masked_scores

__all__ = ["occlusion"]


def occlusion(job: Job, *, reuse_prefix: bool = True) -> MethodOutput:
    """Leave-one-out scores of ``job.units``.

    Args:
        job: the run.
        reuse_prefix: share the unchanged prefix's key/value cache within a batch (faster; the
            results are the same up to float rounding).
    """
    n = job.x.shape[1]
    masks = torch.stack([unit_mask(job.units, n, [k]) for k in range(len(job.units))])  # (units, pos)
    scores = masked_scores(job.model, job.target, job.x, job.base, masks, max_memory=job.max_memory,
                           reuse_prefix=reuse_prefix, progress=job.progress)  # (units, n_groups)
    return MethodOutput(unit_scores=(job.full.cpu()[None, :] - scores).T.contiguous())

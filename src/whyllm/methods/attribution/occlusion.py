"""Occlusion (leave-one-unit-out): how much the target drops when one unit is replaced.

Each unit (token, word or sentence) in turn is replaced, token by token, by the baseline embedding,
keeping every position, so the model sees the same sequence length. Score = ``f(x) - f(x with the
unit replaced)``. The default replacement is the mean token embedding, an "average token" without an
identity of its own: a specific token (pad, eos) placed in a sentence is itself read by the model,
and on Gemma 3 270M which one is used decides whether a name or the final token ranks first (see
docs/attribution.md). ``baseline="<pad>"`` reproduces Captum's ``LLMAttribution(FeatureAblation)``.

Rows are batched and share the key/value cache of their unchanged prefix (see
:func:`whyllm.methods.attribution.engine.masked_scores`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from whyllm.methods.attribution.aggregate import unit_mask
from whyllm.methods.attribution.engine import Job, MethodOutput, Scoring, score

__all__ = ["occlusion", "occlusion_output", "occlusion_scoring"]


def occlusion_scoring(job: Job, *, reuse_prefix: bool = True) -> Scoring:
    """The edited inputs occlusion scores: one per unit, that unit replaced by the baseline."""
    n = job.x.shape[1]
    masks = torch.stack([unit_mask(job.units, n, [k]) for k in range(len(job.units))])  # (units, pos)
    return Scoring(job.target, job.x, job.base, masks, max_memory=job.max_memory, reuse_prefix=reuse_prefix,
                   progress=job.progress)


def occlusion_output(job: Job, scores: Tensor) -> MethodOutput:
    """Unit scores from the target on the edited inputs ``(units, n_groups)``: the drop from ``job.full``."""
    return MethodOutput(unit_scores=(job.full.cpu()[None, :] - scores.cpu()).T.contiguous())


def occlusion(job: Job, *, reuse_prefix: bool = True) -> MethodOutput:
    """Leave-one-out scores of ``job.units``.

    Args:
        job: the run.
        reuse_prefix: share the unchanged prefix's key/value cache within a batch (faster; the
            results are the same up to float rounding).
    """
    return occlusion_output(job, score(job.model, occlusion_scoring(job, reuse_prefix=reuse_prefix)))

"""Faithfulness of an attribution: does removing what it ranks first change the output?

With units ranked by score (highest first), ``n`` units and ``f`` the target function (as explained),
"removing" a unit meaning replacing its tokens by the job's baseline (as occlusion does; by default the
mean token embedding, whatever the method, so that the metrics of different methods compare):

* comprehensiveness at fraction k (ERASER, DeYoung et al. 2020): ``f(x) - f(x without the top
  max(1, round(k n)) units)``; higher is more faithful;
* sufficiency at k: ``f(x) - f(x with only those units)``; lower is more faithful;
* deletion curve: ``f`` as the top units are removed, at ``curve_points`` evenly spaced fractions
  (plus every fraction above); ``deletion_auc`` is the trapezoid area under ``f(x without top t) - f(x)``
  over t in [0, 1], so it is <= 0 when the ranking is right; lower is more faithful;
* random-order baseline: the same curve with the units removed in :data:`RANDOM_ORDERS` seeded random
  orders, averaged point by point: the reference a ranking must beat (its AUC is what a ranking that
  knows nothing scores).

The edited inputs run in two batched, prefix-sharing calls (typically 10-16 rows for the ranking, twice
that for the random orders), so scoring costs about as much as a cheap attribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.aggregate import UnitSpan, unit_mask
from whyllm.methods.attribution.engine import Job, masked_scores
from whyllm.results.attribution import Faithfulness

__all__ = [
    "DEFAULT_FRACTIONS", "RANDOM_ORDERS", "RANDOM_SEED", "FaithfulnessPlan", "faithfulness", "plan",
]

DEFAULT_FRACTIONS = (0.1, 0.2, 0.5)
RANDOM_ORDERS = 3  # random deletion orders averaged for the baseline curve
RANDOM_SEED = 0  # their seed: the same orders for every method, so baselines of one prompt agree


def _count(k: float, n: int) -> int:
    return min(n, max(1, round(k * n)))


@dataclass(frozen=True, eq=False)
class FaithfulnessPlan:
    """The edited inputs the metrics of one ranking score, and how to read the metrics off their scores.

    Attributes:
        fractions: the top-k fractions. n: units. deletion / keep: units removed per deletion point and
            kept per sufficiency point.
        keys / index / rows: each ranking point's mask (bytes), distinct mask -> row, and the distinct
            masks ``(distinct, pos)`` to score.
        rand_keys / rand_index / rand_rows: the same for the random orders (``rand_rows`` is ``None``
            when there is no point between none and every unit removed).
        orders: random orders averaged.
    """

    fractions: tuple[float, ...]
    n: int
    deletion: list[int]
    keep: list[int]
    keys: list[bytes]
    index: dict[bytes, int]
    rows: Tensor
    rand_keys: list[bytes]
    rand_index: dict[bytes, int]
    rand_rows: Tensor | None
    orders: int

    def result(self, values: Tensor, rand_values: Tensor | None, full: float,
               replacement: str) -> Faithfulness:
        """The metrics from the target on :attr:`rows` ``(distinct,)`` and on :attr:`rand_rows`."""
        score_of = [float(values[self.index[k]]) for k in self.keys]
        del_scores, suff_scores = score_of[: len(self.deletion)], score_of[len(self.deletion):]
        rand: list[float] = []
        if self.rand_keys:
            rand_of = [float(rand_values[self.rand_index[k]]) for k in self.rand_keys]
            rand = torch.tensor(rand_of, dtype=torch.float64).view(self.orders, -1).mean(0).tolist()
        comp = tuple(full - del_scores[self.deletion.index(c)] for c in self.keep)
        return Faithfulness(
            fractions=tuple(float(k) for k in self.fractions), comprehensiveness_at=comp,
            sufficiency_at=tuple(full - s for s in suff_scores),
            deletion_fractions=(0.0, *(c / self.n for c in self.deletion)),
            deletion_scores=(full, *del_scores), full_score=full, empty_score=del_scores[-1],
            replacement=replacement, random_deletion_scores=(full, *rand, del_scores[-1]),
            random_orders=self.orders,
        )


def _distinct(masks: list[Tensor]) -> tuple[list[bytes], dict[bytes, int], Tensor | None]:
    """Each mask's key, distinct key -> row, and the distinct masks ``(distinct, pos)`` (each run once)."""
    keys = [m.numpy().tobytes() for m in masks]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}  # distinct masks, in order
    rows = torch.stack([masks[keys.index(k)] for k in index]) if masks else None
    return keys, index, rows


def plan(units: list[UnitSpan], scores: Tensor, length: int, *,
         fractions: tuple[float, ...] = DEFAULT_FRACTIONS, curve_points: int = 10) -> FaithfulnessPlan:
    """The inputs to score for the metrics of the ranking ``scores`` ``(n_units,)`` of ``units``."""
    if not fractions or any(not 0 < k <= 1 for k in fractions):
        raise InputError(f"faithfulness fractions must be in (0, 1], got {fractions!r}")
    n = len(units)
    order = sorted(range(n), key=lambda k: (-float(scores[k]), k))
    deletion = sorted({_count(k, n) for k in fractions} | {max(1, round(i * n / curve_points))
                                                           for i in range(1, curve_points + 1)} | {n})
    keep = [_count(k, n) for k in fractions]
    masks = [unit_mask(units, length, order[:c]) for c in deletion]
    masks += [unit_mask(units, length, order[c:]) for c in keep]
    randoms, counts = _random_orders(n), deletion[:-1]  # the last count removes every unit: no order
    rand_masks = [unit_mask(units, length, p[:c]) for p in randoms for c in counts]
    keys, index, rows = _distinct(masks)
    return FaithfulnessPlan(tuple(fractions), n, deletion, keep, keys, index, rows, *_distinct(rand_masks),
                            len(randoms))


def faithfulness(
    job: Job, units: list[UnitSpan], scores: Tensor, *, fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    curve_points: int = 10, replacement: str = "mean",
) -> Faithfulness:
    """Comprehensiveness, sufficiency, the deletion curve of one ranking and its random-order baseline.

    Args:
        job: the run; its target must have a single group (use ``Target.summed``).
        units: the ranked units.
        scores: ``(n_units,)`` their scores.
        fractions: top-k fractions for comprehensiveness and sufficiency.
        curve_points: evenly spaced points of the deletion curve.
        replacement: label of ``job.base``, the embedding removed tokens are replaced by.
    """
    p = plan(units, scores, job.x.shape[1], fractions=fractions, curve_points=curve_points)
    def scores(rows: Tensor) -> Tensor:
        return masked_scores(job.model, job.target, job.x, job.base, rows, max_memory=job.max_memory)[:, 0]

    values = scores(p.rows)
    # the random orders: a call of their own, so the method's rows batch as they would alone
    rand = scores(p.rand_rows) if p.rand_rows is not None else None
    return p.result(values, rand, float(job.full[0]), replacement)


def _random_orders(n: int) -> list[list[int]]:
    """:data:`RANDOM_ORDERS` seeded permutations of ``n`` units (a CPU generator: the same everywhere)."""
    gen = torch.Generator().manual_seed(RANDOM_SEED)
    return [torch.randperm(n, generator=gen).tolist() for _ in range(RANDOM_ORDERS)]

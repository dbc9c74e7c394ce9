"""Results of :func:`whyllm.explain` (input attribution) and :func:`whyllm.evaluate` (method ranking)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from whyllm.results.base import Result

__all__ = ["AttributionResult", "EvaluationResult", "Faithfulness", "Unit"]

GRANULARITIES = ("token", "word", "sentence", "turn")


@dataclass(frozen=True)
class Unit:
    """One scored piece of the input at the chosen granularity.

    Attributes:
        text: the input text the unit covers (whitespace kept).
        score: its attribution (positive: pushes the target up).
        start / end: token span ``[start, end)`` into ``input_tokens``.
        role: chat role (``system``/``user``/``assistant``), ``"output"`` for generated tokens in a
            per-token matrix, or ``None`` for a plain prompt.
    """

    text: str
    score: float
    start: int
    end: int
    role: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"a unit needs a token span start < end, got [{self.start}, {self.end})")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (see docs/schema.md)."""
        return {"text": self.text, "score": self.score, "start": self.start, "end": self.end,
                "role": self.role}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Unit:
        """Inverse of :meth:`to_dict`."""
        return cls(d["text"], d["score"], d["start"], d["end"], d.get("role"))


@dataclass(frozen=True)
class Faithfulness:
    """How much the model's output depends on the units an attribution ranks first.

    All values are in the units of the target score (nats for log-probabilities).

    Attributes:
        fractions: the top-k fractions of units used (e.g. 0.1, 0.2, 0.5).
        comprehensiveness_at: per fraction, ``f(x) - f(x without its top units)`` (higher: more faithful).
        sufficiency_at: per fraction, ``f(x) - f(x with only its top units)`` (lower: more faithful).
        deletion_fractions / deletion_scores: the deletion curve, ``f`` as top units are removed.
        full_score / empty_score: ``f`` on the real input and with every unit removed.
        replacement: what removed tokens were replaced by (``"mean"``: the mean token embedding, the
            default for every method; else the run's explicit baseline).
        random_deletion_scores: the random-order baseline of the deletion curve: ``f`` at the same
            fractions with units removed in ``random_orders`` seeded random orders, averaged; ``None``
            in documents written before it existed.
        random_orders: how many random orders were averaged (0 when there is no baseline).
    """

    fractions: tuple[float, ...]
    comprehensiveness_at: tuple[float, ...]
    sufficiency_at: tuple[float, ...]
    deletion_fractions: tuple[float, ...]
    deletion_scores: tuple[float, ...]
    full_score: float
    empty_score: float
    replacement: str = "mean"
    random_deletion_scores: tuple[float, ...] | None = None
    random_orders: int = 0

    def __post_init__(self) -> None:
        if not len(self.fractions) == len(self.comprehensiveness_at) == len(self.sufficiency_at):
            raise ValueError("faithfulness needs one comprehensiveness and sufficiency value per fraction")
        if len(self.deletion_fractions) != len(self.deletion_scores) or len(self.deletion_scores) < 2:
            raise ValueError("the deletion curve needs matching fractions and scores (at least 2 points)")
        rand = self.random_deletion_scores
        if rand is not None and (len(rand) != len(self.deletion_scores) or self.random_orders < 1):
            raise ValueError("the random-order baseline needs one score per deletion fraction and at least "
                             f"one order, got {len(rand)} scores and {self.random_orders} orders")

    @property
    def comprehensiveness(self) -> float:
        """Mean comprehensiveness over the fractions (ERASER's AOPC form)."""
        return sum(self.comprehensiveness_at) / len(self.fractions)

    @property
    def sufficiency(self) -> float:
        """Mean sufficiency over the fractions."""
        return sum(self.sufficiency_at) / len(self.fractions)

    @property
    def deletion_auc(self) -> float:
        """Area under ``f(x without top t) - f(x)`` for t in [0, 1] (trapezoid; lower: more faithful)."""
        return self._auc(self.deletion_scores)

    @property
    def random_deletion_auc(self) -> float | None:
        """The same area for the random-order baseline (``None`` without one): the AUC to beat."""
        return None if self.random_deletion_scores is None else self._auc(self.random_deletion_scores)

    def _auc(self, scores: tuple[float, ...]) -> float:
        xs, ys = self.deletion_fractions, [s - self.full_score for s in scores]
        return sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (see docs/schema.md)."""
        return {
            "comprehensiveness": self.comprehensiveness, "sufficiency": self.sufficiency,
            "deletion_auc": self.deletion_auc, "fractions": list(self.fractions),
            "comprehensiveness_at": list(self.comprehensiveness_at),
            "sufficiency_at": list(self.sufficiency_at),
            "deletion_curve": {"fraction": list(self.deletion_fractions),
                               "score": list(self.deletion_scores)},
            "full_score": self.full_score, "empty_score": self.empty_score,
            "replacement": self.replacement,
            "random_deletion": None if self.random_deletion_scores is None else {
                "score": list(self.random_deletion_scores), "auc": self.random_deletion_auc,
                "orders": self.random_orders},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Faithfulness:
        """Inverse of :meth:`to_dict`."""
        rand = d.get("random_deletion")
        return cls(
            tuple(d["fractions"]), tuple(d["comprehensiveness_at"]), tuple(d["sufficiency_at"]),
            tuple(d["deletion_curve"]["fraction"]), tuple(d["deletion_curve"]["score"]),
            d["full_score"], d["empty_score"], d.get("replacement", "mean"),
            tuple(rand["score"]) if rand else None, rand["orders"] if rand else 0,
        )


@dataclass(frozen=True, eq=False)
class AttributionResult(Result):
    """Which parts of the input made the model produce ``target``.

    Attributes:
        prompt: the text given (a chat is stored as its templated text).
        method / granularity: attribution method and unit size (token, word, sentence or turn).
        target / target_ids: the explained continuation (text and token ids).
        foil / foil_ids: the contrast ("why target rather than foil"), or ``None``.
        target_kind: ``next_token``, ``token``, ``continuation``, ``contrast`` or ``sampled``.
        score: the target function on the real input, ``f(x)`` (log-probability, or a difference of them).
        input_ids / input_tokens: every input token (``pos``), special and template tokens included.
        token_scores: ``(pos,)`` float32 attribution per input token (0 for masked tokens; a unit-level
            method spreads each unit's score evenly over its tokens).
        units: scored units at ``granularity``, in input order; masked tokens (BOS, chat template) are
            in none.
        faithfulness: comprehensiveness, sufficiency and the deletion curve, or ``None`` when turned off.
        baseline: what "absent" means for this run (baseline token or ``"zero"``/``"tensor"``).
        steps / completeness_error: integrated gradients' step count and relative completeness error.
        matrix: ``(n_out, pos)`` per-generated-token attributions (``per_token=True``), else ``None``;
            row ``j`` explains output token ``j`` from every earlier token.
        matrix_tokens: the output tokens labelling the matrix rows.
        step: for :func:`whyllm.explain_step`, how that token was sampled (distribution after the decoding
            settings, cut candidates, runner-up), else ``None``.
        extras: method-specific diagnostics (e.g. the surrogate's fit for context ablation).
        meta: model, method, parameters, whyllm version.
    """

    kind: ClassVar[str] = "attribution"
    prompt: str
    method: str
    granularity: str
    target: str
    target_ids: tuple[int, ...]
    foil: str | None
    foil_ids: tuple[int, ...] | None
    target_kind: str
    score: float
    input_ids: tuple[int, ...]
    input_tokens: tuple[str, ...]
    token_scores: torch.Tensor = field(repr=False)
    units: tuple[Unit, ...]
    faithfulness: Faithfulness | None = None
    baseline: str = "pad"
    steps: int | None = None
    completeness_error: float | None = None
    matrix: torch.Tensor | None = field(default=None, repr=False)
    matrix_tokens: tuple[str, ...] | None = None
    step: dict[str, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.input_ids)
        if len(self.input_tokens) != n or tuple(self.token_scores.shape) != (n,):
            raise ValueError(f"input_ids, input_tokens and token_scores must all have length {n}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if any(u.end > n for u in self.units):
            raise ValueError("a unit's token span runs past the input")
        if self.matrix is not None and (self.matrix.ndim != 2 or self.matrix.shape[1] != n):
            raise ValueError(f"matrix must be (n_out, {n}), got {tuple(self.matrix.shape)}")
        if not math.isfinite(self.score):
            raise ValueError(f"the target score must be finite, got {self.score}")

    def ranked(self) -> list[Unit]:
        """Units sorted by score, most positive first."""
        return sorted(self.units, key=lambda u: -u.score)

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "prompt": self.prompt, "method": self.method,
            "granularity": self.granularity, "target": self.target, "target_ids": list(self.target_ids),
            "foil": self.foil, "foil_ids": list(self.foil_ids) if self.foil_ids is not None else None,
            "target_kind": self.target_kind, "score": self.score, "input_ids": list(self.input_ids),
            "input_tokens": list(self.input_tokens), "token_scores": self.token_scores.tolist(),
            "units": [u.to_dict() for u in self.units],
            "faithfulness": self.faithfulness.to_dict() if self.faithfulness else None,
            "baseline": self.baseline, "steps": self.steps, "completeness_error": self.completeness_error,
            "matrix": self.matrix.tolist() if self.matrix is not None else None,
            "matrix_tokens": list(self.matrix_tokens) if self.matrix_tokens is not None else None,
            "step": self.step, "extras": self.extras, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> AttributionResult:
        return cls(
            prompt=d["prompt"], method=d["method"], granularity=d["granularity"], target=d["target"],
            target_ids=tuple(d["target_ids"]), foil=d.get("foil"),
            foil_ids=tuple(d["foil_ids"]) if d.get("foil_ids") is not None else None,
            target_kind=d["target_kind"], score=d["score"], input_ids=tuple(d["input_ids"]),
            input_tokens=tuple(d["input_tokens"]), token_scores=torch.tensor(d["token_scores"]),
            units=tuple(Unit.from_dict(u) for u in d["units"]),
            faithfulness=Faithfulness.from_dict(d["faithfulness"]) if d.get("faithfulness") else None,
            baseline=d["baseline"], steps=d.get("steps"), completeness_error=d.get("completeness_error"),
            matrix=torch.tensor(d["matrix"]) if d.get("matrix") is not None else None,
            matrix_tokens=tuple(d["matrix_tokens"]) if d.get("matrix_tokens") is not None else None,
            step=d.get("step"), extras=d.get("extras", {}), meta=d.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per unit: ``rank`` (1 = highest), ``text``, ``score``, ``start``, ``end``, ``role``."""
        import pandas as pd

        rank = {id(u): i + 1 for i, u in enumerate(self.ranked())}
        rows = [{"rank": rank[id(u)], **u.to_dict()} for u in self.units]
        return pd.DataFrame(rows, columns=["rank", "text", "score", "start", "end", "role"])


@dataclass(frozen=True, eq=False)
class EvaluationResult(Result):
    """Attribution methods ranked by faithfulness over a set of prompts.

    Attributes:
        prompts: the prompts evaluated.
        methods: the methods compared.
        rows: one dict per (prompt, method): ``prompt`` (index), ``method``, ``comprehensiveness``,
            ``sufficiency``, ``deletion_auc``, ``seconds``.
        ranking: one dict per method, best first: ``rank``, ``method``, the three metrics' means,
            ``seconds`` (mean) and ``mean_rank`` (mean of the method's rank on each metric).
        settings: the settings used (granularity, steps, baseline, fractions).
    """

    kind: ClassVar[str] = "evaluation"
    prompts: tuple[str, ...]
    methods: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    ranking: tuple[dict[str, Any], ...]
    settings: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.rows) != len(self.prompts) * len(self.methods):
            raise ValueError("an evaluation needs one row per (prompt, method)")
        if {r["method"] for r in self.ranking} != set(self.methods):
            raise ValueError("the ranking must list every method once")

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "prompts": list(self.prompts), "methods": list(self.methods),
            "rows": list(self.rows), "ranking": list(self.ranking), "settings": self.settings,
            "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> EvaluationResult:
        return cls(
            prompts=tuple(d["prompts"]), methods=tuple(d["methods"]), rows=tuple(d["rows"]),
            ranking=tuple(d["ranking"]), settings=d.get("settings", {}), meta=d.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per (prompt, method)."""
        import pandas as pd

        cols = ["prompt", "method", "comprehensiveness", "sufficiency", "deletion_auc", "seconds"]
        return pd.DataFrame(list(self.rows), columns=cols)

"""Results of parameter attribution (``params``) and training-data attribution (``influence``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from whyllm.results.base import Result

__all__ = ["InfluenceExample", "InfluenceResult", "ParamGroup", "ParamUnit", "ParamsResult"]


@dataclass(frozen=True)
class ParamGroup:
    """One group of parameters (a module's weight and bias, e.g. ``L3.attn.q``, ``embed``, ``L3.ln1``).

    Attributes:
        name: canonical name (``embed``, ``L{l}.attn.q``, ``L{l}.mlp.down``, ``L{l}.ln1``, ``ln_final``...).
        kind: ``embed``, ``unembed``, ``attn``, ``mlp``, ``norm`` or ``other``.
        layer: block index, or ``None`` outside the blocks.
        n_params: number of scalars in the group.
        score: ``sum(grad * weight)``: the first-order change of the metric if the group were zeroed,
            with the sign flipped (positive = the group raises the metric).
        abs_score: ``sum(|grad * weight|)``: how much the group's individual weights matter.
        predicted_change: first-order change when every weight is scaled by ``1 - epsilon``
            (``-epsilon * score``); ``None`` without the check.
        measured_change: the real change of the metric under that scaling; ``None`` without the check.
        scale_invariant: the metric does not depend on the group's overall scale (``|score| / abs_score``
            tiny and, when checked, the rescaling changes nothing): its ``score`` is ~0 by construction
            (a norm follows it), not because it does not matter.
    """

    name: str
    kind: str
    layer: int | None
    n_params: int
    score: float
    abs_score: float
    predicted_change: float | None = None
    measured_change: float | None = None
    scale_invariant: bool = False

    @property
    def relative(self) -> float:
        """``|score| / abs_score`` (0 when the group has no gradient)."""
        return abs(self.score) / self.abs_score if self.abs_score > 0 else 0.0


@dataclass(frozen=True)
class ParamUnit:
    """A piece of one group: a weight row, an MLP neuron or an attention head.

    Attributes:
        kind: ``row`` (one output row of a matrix, or one token's embedding row), ``neuron`` (an MLP
            neuron's down-projection column) or ``head`` (an attention head's output-projection columns).
        group: the :class:`ParamGroup` it belongs to.
        layer: block index, or ``None``.
        index: row, neuron or head index.
        score: ``sum(grad * weight)`` over the unit: the first-order drop of the metric if it were zeroed.
        label: readable name (``L3.N512``, ``L2.H1``, ``embed['▁Paris']``...).
        predicted_change: first-order change on zeroing it (``-score``); ``None`` if not checked.
        measured_change: the real change when it is zeroed; ``None`` if not checked.
    """

    kind: str
    group: str
    layer: int | None
    index: int
    score: float
    label: str
    predicted_change: float | None = None
    measured_change: float | None = None


@dataclass(frozen=True, eq=False)
class ParamsResult(Result):
    """Which parameters drive one prediction: gradient x weight per group, row, neuron and head.

    The metric is the target's log-probability at the last position (or the target - foil logit
    difference). The built-in check scales each group by ``1 - epsilon`` and compares the real change
    with the first-order prediction; ``correlation`` is computed only over groups whose measured
    change is not negligible, so scale-invariant groups (score ~0 by construction) cannot make it pass.

    Attributes:
        prompt / input_ids / input_tokens: the prompt and its tokens.
        target / target_id / target_token: the explained token; foil likewise (or ``None``).
        metric: ``log_prob`` or ``logit_diff``; ``value``: its value.
        groups: every parameter group, in model order.
        rows / neurons / heads: the units with the largest ``|score|``.
        epsilon: the check's relative rescaling.
        correlation / rank_correlation: Pearson / Spearman of predicted vs measured changes over the
            ``n_correlated`` groups with a non-negligible measured change; ``None`` when undefined.
        largest_miss: the group with the largest ``|predicted - measured|`` (``name``, ``predicted``,
            ``measured``, ``share``: the miss over the largest measured change); ``None`` unchecked.
        unit_correlation: Pearson of predicted vs measured changes on zeroing the checked units.
        notes: plain-language caveats (scale-invariant groups, an undefined correlation).
        seconds: wall time of ``attribution`` (one forward + one backward) and ``check``.
        meta: model, method, parameters, whyllm version.
    """

    kind: ClassVar[str] = "params"
    prompt: str
    input_ids: tuple[int, ...]
    input_tokens: tuple[str, ...]
    target: str | None
    target_id: int
    target_token: str
    metric: str
    value: float
    groups: tuple[ParamGroup, ...]
    rows: tuple[ParamUnit, ...] = ()
    neurons: tuple[ParamUnit, ...] = ()
    heads: tuple[ParamUnit, ...] = ()
    foil: str | None = None
    foil_id: int | None = None
    foil_token: str | None = None
    epsilon: float = 0.01
    checked: bool = False
    correlation: float | None = None
    rank_correlation: float | None = None
    n_correlated: int = 0
    largest_miss: dict[str, Any] | None = None
    unit_correlation: float | None = None
    notes: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("ParamsResult needs at least one parameter group")
        if len({g.name for g in self.groups}) != len(self.groups):
            raise ValueError("parameter group names must be unique")
        if self.metric not in ("log_prob", "logit_diff"):
            raise ValueError(f"metric must be 'log_prob' or 'logit_diff', got {self.metric!r}")

    @property
    def scale_invariant(self) -> tuple[str, ...]:
        """Names of the groups flagged scale-invariant."""
        return tuple(g.name for g in self.groups if g.scale_invariant)

    def top(self, k: int = 10, *, by: str = "score") -> list[ParamGroup]:
        """The ``k`` groups with the largest ``|score|`` (or ``abs_score`` with ``by="abs_score"``)."""
        return sorted(self.groups, key=lambda g: -abs(getattr(g, by)))[:k]

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "prompt": self.prompt, "input_ids": list(self.input_ids),
            "input_tokens": list(self.input_tokens), "target": self.target, "target_id": self.target_id,
            "target_token": self.target_token, "foil": self.foil, "foil_id": self.foil_id,
            "foil_token": self.foil_token, "metric": self.metric, "value": self.value,
            "groups": [{**vars(g), "relative": g.relative} for g in self.groups],
            "rows": [vars(u) for u in self.rows], "neurons": [vars(u) for u in self.neurons],
            "heads": [vars(u) for u in self.heads], "epsilon": self.epsilon, "checked": self.checked,
            "correlation": self.correlation, "rank_correlation": self.rank_correlation,
            "n_correlated": self.n_correlated, "largest_miss": self.largest_miss,
            "unit_correlation": self.unit_correlation, "scale_invariant": list(self.scale_invariant),
            "notes": list(self.notes), "seconds": self.seconds, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> ParamsResult:
        skip = ("groups", "rows", "neurons", "heads", "model", "scale_invariant")
        rest = {k: v for k, v in d.items() if k not in skip}
        return cls(
            **{**rest, "input_ids": tuple(d["input_ids"]), "input_tokens": tuple(d["input_tokens"]),
               "notes": tuple(d["notes"])},
            groups=tuple(ParamGroup(**{k: v for k, v in g.items() if k != "relative"}) for g in d["groups"]),
            rows=tuple(ParamUnit(**u) for u in d["rows"]),
            neurons=tuple(ParamUnit(**u) for u in d["neurons"]),
            heads=tuple(ParamUnit(**u) for u in d["heads"]),
        )

    def to_dataframe(self):
        """One row per parameter group."""
        import pandas as pd

        return pd.DataFrame([{**vars(g), "relative": g.relative} for g in self.groups])


@dataclass(frozen=True)
class InfluenceExample:
    """One training example's influence on the prediction.

    Attributes:
        index: its ``index`` in the run's ``examples.jsonl``.
        text: its text.
        score: TracIn score: the sum over checkpoints of learning rate x steps x
            ``grad log p(target) . -grad loss(example)``; positive = training on it raised the target.
    """

    index: int
    text: str
    score: float


@dataclass(frozen=True, eq=False)
class InfluenceResult(Result):
    """Which training examples most raised (``examples``) or lowered (``opponents``) one prediction.

    Attributes:
        run_dir: the training run explained.
        prompt / target / target_ids / target_tokens: the prediction (all target tokens are scored).
        log_prob: the target's log-probability under the run's last checkpoint.
        checkpoints: the checkpoint steps whose gradients were used.
        n_examples: training examples scored.
        examples: the top proponents, highest score first.
        opponents: the strongest opponents, most negative first.
        verify: ``None``, or the retraining check: ``k``, ``seeds``, ``top_k_drop`` (fall of the target's
            log-probability when retrained without the top-k proponents), ``random_drop`` (mean fall without
            k random examples), ``random_drops`` (one per seed), ``baseline`` (log-probability of the
            original run), ``separated`` (top-k drop larger than every random drop).
        seconds: wall time of ``scores`` and ``verify``.
        meta: model, method, parameters, whyllm version.
    """

    kind: ClassVar[str] = "influence"
    run_dir: str
    prompt: str
    target: str
    target_ids: tuple[int, ...]
    target_tokens: tuple[str, ...]
    log_prob: float
    checkpoints: tuple[int, ...]
    n_examples: int
    examples: tuple[InfluenceExample, ...]
    opponents: tuple[InfluenceExample, ...] = ()
    verify: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise ValueError("InfluenceResult needs at least one checkpoint")
        scores = [e.score for e in self.examples]
        if scores != sorted(scores, reverse=True):
            raise ValueError("examples must be sorted by score, highest first")

    def _doc(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir, "prompt": self.prompt, "target": self.target,
            "target_ids": list(self.target_ids), "target_tokens": list(self.target_tokens),
            "log_prob": self.log_prob, "checkpoints": list(self.checkpoints), "n_examples": self.n_examples,
            "examples": [vars(e) for e in self.examples], "opponents": [vars(e) for e in self.opponents],
            "verify": self.verify, "seconds": self.seconds, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> InfluenceResult:
        return cls(**{
            **d, "target_ids": tuple(d["target_ids"]), "target_tokens": tuple(d["target_tokens"]),
            "checkpoints": tuple(d["checkpoints"]),
            "examples": tuple(InfluenceExample(**e) for e in d["examples"]),
            "opponents": tuple(InfluenceExample(**e) for e in d["opponents"]),
        })

    def to_dataframe(self):
        """One row per listed example (proponents then opponents)."""
        import pandas as pd

        rows = [{**vars(e), "role": "proponent"} for e in self.examples]
        rows += [{**vars(e), "role": "opponent"} for e in self.opponents]
        return pd.DataFrame(rows, columns=["index", "text", "score", "role"])

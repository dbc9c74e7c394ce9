"""Results of the feedback loop: stored items, a tuning run, and a base-vs-tuned diff."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from whyllm.results.base import Result

__all__ = ["DiffResult", "FeedbackListResult", "PromptDiff", "TuneResult"]

_ITEM_COLUMNS = ("id", "prompt", "completion", "verdict", "correction", "reason", "model", "source",
                 "created_at")


@dataclass(frozen=True, eq=False)
class FeedbackListResult(Result):
    """Feedback items as stored (see :mod:`whyllm.feedback.store` for the columns).

    Attributes:
        items: one dict per item, oldest first.
        db: the database file they were read from.

    """

    kind: ClassVar[str] = "feedback"
    items: tuple[dict[str, Any], ...]
    db: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any("id" not in it for it in self.items):
            raise ValueError("every feedback item needs an id")

    def _doc(self) -> dict[str, Any]:
        return {"model": self.meta.get("model"), "db": self.db, "items": [dict(it) for it in self.items],
                "meta": self.meta}

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> FeedbackListResult:
        return cls(items=tuple(d["items"]), db=d.get("db", ""), meta=d.get("meta", {}))

    def to_dataframe(self):
        """One row per item."""
        import pandas as pd

        return pd.DataFrame([{c: it.get(c) for c in _ITEM_COLUMNS} for it in self.items],
                            columns=list(_ITEM_COLUMNS))


@dataclass(frozen=True, eq=False)
class TuneResult(Result):
    """A LoRA adapter tuned on stored feedback.

    Attributes:
        adapter_dir: where the adapter (and ``whyllm-tune.json``) was saved.
        method: ``dpo``, ``kto`` or ``sft``.
        base: the base model's ``name`` and ``weights_hash``.
        feedback_ids: the items trained on.
        n_rows: training rows built from them (pairs, labelled completions or SFT rows).
        steps: optimiser steps taken in total (a resumed run counts the earlier ones).
        losses: ``(step, loss)`` as logged.
        checkpoints: ``{step, path, learning_rate}`` of each adapter-only checkpoint.
        settings: every training setting (LoRA rank, learning rate, batch size, beta, seed...).
        seconds: wall time of this run (checkpoint saves included).
        step_seconds: median time of one optimiser step (forward, backward, update).

    """

    kind: ClassVar[str] = "tune"
    adapter_dir: str
    method: str
    base: dict[str, Any]
    feedback_ids: tuple[int, ...]
    n_rows: int
    steps: int
    losses: tuple[tuple[int, float], ...]
    checkpoints: tuple[dict[str, Any], ...]
    settings: dict[str, Any]
    seconds: float
    step_seconds: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in ("dpo", "kto", "sft"):
            raise ValueError(f"method must be dpo, kto or sft, got {self.method!r}")
        if self.steps < 0 or self.n_rows < 0:
            raise ValueError("steps and n_rows must be >= 0")

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "adapter_dir": self.adapter_dir,
            "method": self.method, "base": self.base,
            "feedback_ids": list(self.feedback_ids), "n_rows": self.n_rows, "steps": self.steps,
            "losses": [list(x) for x in self.losses], "checkpoints": list(self.checkpoints),
            "settings": self.settings, "seconds": self.seconds, "step_seconds": self.step_seconds,
            "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> TuneResult:
        d = {k: v for k, v in d.items() if k != "model"}
        return cls(**{**d, "feedback_ids": tuple(d["feedback_ids"]),
                      "losses": tuple((int(s), float(v)) for s, v in d["losses"]),
                      "checkpoints": tuple(d["checkpoints"])})

    def to_dataframe(self):
        """One row per logged loss."""
        import pandas as pd

        return pd.DataFrame(list(self.losses), columns=["step", "loss"])


@dataclass(frozen=True, eq=False)
class PromptDiff:
    """How one prompt's prediction changed from the base to the tuned model.

    Attributes:
        prompt: the text.
        kl: KL(tuned || base) of the next-token distributions, in nats.
        base_top / tuned_top: the most likely next token of each (``{token, prob}``).
        gained / lost: tokens whose probability rose / fell most (``{token, id, base_prob, tuned_prob}``).
        first_divergence: the first step where same-seed generations differ (``{step, base_token,
            tuned_token}``), or ``None`` if they agree; base_text / tuned_text: the generations.
        layers: ``{layer, kl}`` KL between the logit-lens distributions of each layer (``embed``, ``L0``...).
        components: ``{name, base, tuned, change}`` direct effect on the ``gained[0] - lost[0]`` logit
            difference of each head / MLP, largest absolute change first.
        feedback: ``{id, score, verdict, prompt}`` TracIn influence of each training item on the change,
            most responsible first (positive: training on it moved the model this way).

    """

    prompt: str
    kl: float
    base_top: dict[str, Any]
    tuned_top: dict[str, Any]
    gained: tuple[dict[str, Any], ...]
    lost: tuple[dict[str, Any], ...]
    first_divergence: dict[str, Any] | None
    base_text: str
    tuned_text: str
    layers: tuple[dict[str, Any], ...] = ()
    components: tuple[dict[str, Any], ...] = ()
    feedback: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.kl >= -1e-6:
            raise ValueError(f"kl must be >= 0, got {self.kl}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromptDiff:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass(frozen=True, eq=False)
class DiffResult(Result):
    """Base vs tuned model over several prompts, and where the change lives.

    Attributes:
        adapter_dir / base_model: what was compared.
        prompts: one :class:`PromptDiff` per prompt, in the order given.
        lora: ``{module, norm}`` Frobenius norm of each LoRA weight change ``scale * B @ A``, largest first.
        summary: ``moved`` (prompts with KL above ``threshold``), ``side_effects`` (moved prompts no
            training item shares a prompt with... see :func:`whyllm.diff`), ``threshold``, mean KL.

    """

    kind: ClassVar[str] = "diff"
    adapter_dir: str
    base_model: str
    prompts: tuple[PromptDiff, ...]
    lora: tuple[dict[str, Any], ...]
    summary: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("a diff needs at least one prompt")

    def _doc(self) -> dict[str, Any]:
        return {"model": self.meta.get("model"), "adapter_dir": self.adapter_dir,
                "base_model": self.base_model,
                "prompts": [p.to_dict() for p in self.prompts], "lora": list(self.lora),
                "summary": self.summary, "meta": self.meta}

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> DiffResult:
        return cls(adapter_dir=d["adapter_dir"], base_model=d["base_model"],
                   prompts=tuple(PromptDiff.from_dict(p) for p in d["prompts"]), lora=tuple(d["lora"]),
                   summary=d["summary"], meta=d.get("meta", {}))

    def to_dataframe(self):
        """One row per prompt."""
        import pandas as pd

        rows = [{"prompt": p.prompt, "kl": p.kl, "base_top": p.base_top.get("token"),
                 "tuned_top": p.tuned_top.get("token"),
                 "first_divergence": (p.first_divergence or {}).get("step"),
                 "top_feedback": p.feedback[0]["id"] if p.feedback else None} for p in self.prompts]
        return pd.DataFrame(rows, columns=["prompt", "kl", "base_top", "tuned_top", "first_divergence",
                                           "top_feedback"])

"""Results of training from scratch (:class:`TrainResult`) and of emergence analyses (``EmergeResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from whyllm.results.base import Result

__all__ = ["FRONTIER", "TrainResult"]

# A frontier-scale training run for scale: 6 * parameters * tokens, as for the runs trained here.
FRONTIER: dict[str, Any] = {
    "name": "Llama 3.1 405B", "parameters": 405e9, "tokens": 15.6e12, "flops": 3.8e25,
    "source": "Meta, The Llama 3 Herd of Models (2024): 3.8e25 FLOPs",
}


def _r(x: float, digits: int = 6) -> float:
    return round(float(x), digits)


@dataclass(frozen=True, eq=False)
class TrainResult(Result):
    """A training run: its loss curves, speed and compute.

    Attributes:
        run_dir: the run directory (checkpoints, run.json, examples.jsonl).
        task / preset / family: what was trained.
        n_params: parameters of the model (embeddings included).
        steps / completed_steps: requested and done optimizer steps; ``resumed_from``: the step this
            call started at (0 for a new run).
        batch_size / seq_len: examples per step and tokens per example.
        tokens: tokens trained on in total; ``flops``: ``6 * n_params * tokens``.
        tokens_per_s: training throughput of this call (optimizer steps only).
        wall_s / train_s / checkpoint_s / eval_s: this call's wall time and its parts.
        train_loss: training loss of every step, step 1 first (``(steps,)``).
        evals: held-out figures at each checkpoint: ``step``, ``loss``, ``accuracy``,
            ``in_context_loss``, ``in_context_accuracy`` (second half of each sequence).
        checkpoints: steps with a checkpoint folder.
        frontier: a frontier-scale run's compute, for comparison (:data:`FRONTIER`).
        meta: provenance.
    """

    kind: ClassVar[str] = "train"
    run_dir: str
    task: str
    preset: str
    family: str
    n_params: int
    steps: int
    completed_steps: int
    resumed_from: int
    batch_size: int
    seq_len: int
    tokens: int
    flops: float
    tokens_per_s: float
    wall_s: float
    train_s: float
    checkpoint_s: float
    eval_s: float
    train_loss: tuple[float, ...] = field(repr=False)
    evals: tuple[dict[str, float], ...] = field(repr=False)
    checkpoints: tuple[int, ...] = ()
    frontier: dict[str, Any] = field(default_factory=lambda: dict(FRONTIER))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.train_loss) != self.completed_steps:
            raise ValueError(f"train_loss has {len(self.train_loss)} values for {self.completed_steps} steps")
        if any("step" not in e for e in self.evals):
            raise ValueError("every eval needs a 'step'")

    @property
    def frontier_share(self) -> float:
        """This run's compute as a fraction of the frontier run's."""
        return self.flops / self.frontier["flops"]

    @property
    def checkpoint_share(self) -> float:
        """Share of this call's wall time spent writing checkpoints."""
        return self.checkpoint_s / self.wall_s if self.wall_s else 0.0

    def _doc(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in (
            "run_dir", "task", "preset", "family", "n_params", "steps", "completed_steps", "resumed_from",
            "batch_size", "seq_len", "tokens", "frontier", "meta")}
        doc.update({k: _r(getattr(self, k), 4) for k in (
            "tokens_per_s", "wall_s", "train_s", "checkpoint_s", "eval_s")})
        doc["flops"] = float(f"{self.flops:.6g}")
        doc["frontier_share"] = float(f"{self.frontier_share:.6g}")
        doc["train_loss"] = [_r(x) for x in self.train_loss]
        doc["evals"] = [{k: (_r(v) if k != "step" else int(v)) for k, v in e.items()} for e in self.evals]
        doc["checkpoints"] = list(self.checkpoints)
        return doc

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> TrainResult:
        d = {k: v for k, v in d.items() if k != "frontier_share"}
        return cls(**{**d, "train_loss": tuple(d["train_loss"]), "evals": tuple(d["evals"]),
                      "checkpoints": tuple(d["checkpoints"])})

    def to_dataframe(self):
        """One row per step: training loss, and the held-out figures at checkpoint steps."""
        import pandas as pd

        rows = {s: {"step": s, "train_loss": loss} for s, loss in enumerate(self.train_loss, 1)}
        for e in self.evals:
            rows.setdefault(e["step"], {"step": e["step"], "train_loss": None}).update(
                {f"eval_{k}": v for k, v in e.items() if k != "step"})
        return pd.DataFrame([rows[s] for s in sorted(rows)])

"""Results of training from scratch (:class:`TrainResult`) and of emergence (:class:`EmergeResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from whyllm.results.base import Result

__all__ = ["FRONTIER", "EmergeResult", "TrainResult"]

# A frontier-scale training run for scale: 6 * parameters * tokens, as for the runs trained here.
FRONTIER: dict[str, Any] = {
    "name": "Llama 3.1 405B",
    "parameters": 405e9,
    "tokens": 15.6e12,
    "flops": 3.8e25,
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
        n_params: trainable parameters (embeddings included; the frozen zero MLPs of attention-only
            presets excluded).
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
        doc = {
            k: getattr(self, k)
            for k in (
                "run_dir",
                "task",
                "preset",
                "family",
                "n_params",
                "steps",
                "completed_steps",
                "resumed_from",
                "batch_size",
                "seq_len",
                "tokens",
                "frontier",
                "meta",
            )
        }
        doc.update(
            {
                k: _r(getattr(self, k), 4)
                for k in ("tokens_per_s", "wall_s", "train_s", "checkpoint_s", "eval_s")
            }
        )
        doc["flops"] = float(f"{self.flops:.6g}")
        doc["frontier_share"] = float(f"{self.frontier_share:.6g}")
        doc["train_loss"] = [_r(x) for x in self.train_loss]
        doc["evals"] = [{k: (_r(v) if k != "step" else int(v)) for k, v in e.items()} for e in self.evals]
        doc["checkpoints"] = list(self.checkpoints)
        return doc

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> TrainResult:
        d = {k: v for k, v in d.items() if k != "frontier_share"}
        return cls(
            **{
                **d,
                "train_loss": tuple(d["train_loss"]),
                "evals": tuple(d["evals"]),
                "checkpoints": tuple(d["checkpoints"]),
            }
        )

    def to_dataframe(self):
        """One row per step: training loss, and the held-out figures at checkpoint steps."""
        import pandas as pd

        rows = {s: {"step": s, "train_loss": loss} for s, loss in enumerate(self.train_loss, 1)}
        for e in self.evals:
            rows.setdefault(e["step"], {"step": e["step"], "train_loss": None}).update(
                {f"eval_{k}": v for k, v in e.items() if k != "step"}
            )
        return pd.DataFrame([rows[s] for s in sorted(rows)])


_FIGURES = ("loss", "accuracy", "in_context_loss", "in_context_accuracy", "target_prob")


@dataclass(frozen=True, eq=False)
class EmergeResult(Result):
    """How a prediction emerged over the checkpoints of a training run.

    Attributes:
        run_dir / task: the run analysed.
        prompt / target / target_token: the prediction followed (target: its first token).
        layer_names: rows of each checkpoint's logit lens (``embed``, ``L0``...).
        checkpoints: one dict per checkpoint, in step order: ``step``; held-out ``loss``, ``accuracy``,
            ``in_context_loss``, ``in_context_accuracy``; ``target_prob`` after the prompt; ``lens``
            (the target's probability decoded after each layer, ``(layer,)``); ``components`` (direct
            logit attribution to the target by part name); ``induction`` and ``previous_token``
            head scores ``(layer, head)`` as nested lists.
        phase_changes: steepest drops of the in-context loss: ``step`` (end of the steepest
            interval), ``from_step``/``to_step`` (the drop's window), ``before``/``after`` (in-context
            loss), ``rate`` (nats per step), ``heads`` (``layer``, ``head``, ``role``, ``rise``).
        ablation: at the last checkpoint, the held-out figures with each head zeroed
            (``layer``, ``head``, ``loss``, ``accuracy``, ``in_context_loss``, ``in_context_accuracy``).
        group_ablation: the same with all heads of one ``role`` formed in a phase change zeroed
            together (``step``, ``role``, ``heads`` as ``[layer, head]`` pairs, and the figures).
        seconds: analysis time per checkpoint (loading included).
        meta: provenance.
    """

    kind: ClassVar[str] = "emerge"
    run_dir: str
    task: str
    prompt: str
    target: str
    target_token: str
    layer_names: tuple[str, ...]
    checkpoints: tuple[dict[str, Any], ...] = field(repr=False)
    phase_changes: tuple[dict[str, Any], ...] = ()
    ablation: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    group_ablation: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    seconds: tuple[float, ...] = field(default=(), repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise ValueError("an EmergeResult needs at least one checkpoint")
        steps = [c["step"] for c in self.checkpoints]
        if steps != sorted(steps):
            raise ValueError(f"checkpoints must be in step order, got {steps}")
        for c in self.checkpoints:
            if len(c["lens"]) != len(self.layer_names):
                raise ValueError(
                    f"lens of step {c['step']} has {len(c['lens'])} layers, not {len(self.layer_names)}"
                )

    @property
    def steps(self) -> list[int]:
        """Checkpoint steps."""
        return [c["step"] for c in self.checkpoints]

    def series(self, name: str) -> list[float]:
        """One figure (e.g. ``in_context_loss``) over the checkpoints."""
        return [c[name] for c in self.checkpoints]

    @property
    def induction_head(self) -> tuple[int, int] | None:
        """``(layer, head)`` of the induction head, or ``None`` when no head qualifies.

        The head whose induction score rose most in the largest phase change; without one, the head
        with the highest induction score at the last checkpoint if that score is at least 0.3.
        """
        for phase in sorted(self.phase_changes, key=lambda p: p["after"] - p["before"]):
            for h in phase["heads"]:
                if h["role"] == "induction":
                    return h["layer"], h["head"]
        grid = self.checkpoints[-1]["induction"]
        best = max(
            ((lay, h) for lay, row in enumerate(grid) for h in range(len(row))),
            key=lambda lh: grid[lh[0]][lh[1]],
        )
        return best if grid[best[0]][best[1]] >= 0.3 else None

    def _doc(self) -> dict[str, Any]:
        cks = []
        for c in self.checkpoints:
            heads = [
                {
                    "layer": lay,
                    "head": h,
                    "induction_score": _r(c["induction"][lay][h]),
                    "previous_token_score": _r(c["previous_token"][lay][h]),
                }
                for lay in range(len(c["induction"]))
                for h in range(len(c["induction"][lay]))
            ]
            cks.append(
                {
                    "step": c["step"],
                    **{k: _r(c[k]) for k in _FIGURES},
                    "lens": [_r(x) for x in c["lens"]],
                    "components": {k: _r(v) for k, v in c["components"].items()},
                    "heads": heads,
                }
            )
        phases = [{**p, **{k: _r(p[k]) for k in ("before", "after", "rate")}} for p in self.phase_changes]
        ablation = [{k: (_r(v) if isinstance(v, float) else v) for k, v in a.items()} for a in self.ablation]
        groups = [
            {k: (_r(v) if isinstance(v, float) else v) for k, v in a.items()} for a in self.group_ablation
        ]
        return {
            "run_dir": self.run_dir,
            "task": self.task,
            "prompt": self.prompt,
            "target": self.target,
            "target_token": self.target_token,
            "layer_names": list(self.layer_names),
            "checkpoints": cks,
            "phase_changes": phases,
            "induction_head": list(self.induction_head) if self.induction_head else None,
            "ablation": ablation,
            "group_ablation": groups,
            "seconds": [_r(s, 4) for s in self.seconds],
            "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> EmergeResult:
        cks = []
        for c in d["checkpoints"]:
            n_layers = max(h["layer"] for h in c["heads"]) + 1
            n_heads = max(h["head"] for h in c["heads"]) + 1
            grids = {k: [[0.0] * n_heads for _ in range(n_layers)] for k in ("induction", "previous_token")}
            for h in c["heads"]:
                grids["induction"][h["layer"]][h["head"]] = h["induction_score"]
                grids["previous_token"][h["layer"]][h["head"]] = h["previous_token_score"]
            cks.append({**{k: v for k, v in c.items() if k != "heads"}, **grids})
        return cls(
            run_dir=d["run_dir"],
            task=d["task"],
            prompt=d["prompt"],
            target=d["target"],
            target_token=d["target_token"],
            layer_names=tuple(d["layer_names"]),
            checkpoints=tuple(cks),
            phase_changes=tuple(d["phase_changes"]),
            ablation=tuple(d["ablation"]),
            group_ablation=tuple(d.get("group_ablation", ())),
            seconds=tuple(d["seconds"]),
            meta=d.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per (checkpoint, layer, head): head scores beside the checkpoint's figures."""
        import pandas as pd

        rows = []
        for c in self.checkpoints:
            base = {"step": c["step"], **{k: c[k] for k in _FIGURES}}
            for lay, row in enumerate(c["induction"]):
                for h, score in enumerate(row):
                    rows.append(
                        {
                            **base,
                            "layer": lay,
                            "head": h,
                            "induction_score": score,
                            "previous_token_score": c["previous_token"][lay][h],
                        }
                    )
        return pd.DataFrame(rows)

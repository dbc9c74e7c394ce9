"""Results of :func:`whyllm.generate` and :func:`whyllm.sample`: steps, alternatives, branch points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from whyllm.results.base import Result
from whyllm.results.predict import Candidate, check_candidates

__all__ = ["GenerationResult", "SamplesResult", "Step"]


@dataclass(frozen=True)
class Step:
    """One generated token.

    Attributes:
        index: 0-based step number.
        token / id: the chosen token.
        prob / logprob: its probability under the model's own distribution (temperature 1).
        sample_prob: its probability under the distribution actually sampled from (after
            temperature, top-k and top-p); 1.0 for greedy decoding.
        rank: its 1-based rank under the model's distribution (1 = the most likely token).
        entropy: entropy of the model's distribution at this step, in nats.
        kept: how many tokens the decoding settings left to choose from (vocab size if none cut).
        alternatives: the most likely tokens at this step under the model's distribution.

    """

    index: int
    token: str
    id: int
    prob: float
    logprob: float
    sample_prob: float
    rank: int
    entropy: float
    kept: int
    alternatives: tuple[Candidate, ...]

    def __post_init__(self) -> None:
        if self.index < 0 or self.rank < 1 or self.kept < 1:
            raise ValueError(f"step {self.index}: index must be >= 0, rank and kept >= 1")
        for name in ("prob", "sample_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0 + 1e-6:
                raise ValueError(f"step {self.index}: {name} must be in [0, 1], got {getattr(self, name)}")
        check_candidates(self.alternatives, f"step {self.index} alternatives")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (see docs/schema.md)."""
        d = {k: v for k, v in vars(self).items() if k != "alternatives"}
        return {**d, "alternatives": [vars(c) for c in self.alternatives]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "alternatives": tuple(Candidate(**c) for c in d["alternatives"])})


@dataclass(frozen=True, eq=False)
class GenerationResult(Result):
    """A continuation generated token by token, with every step's alternatives.

    Attributes:
        prompt: the text given. prompt_ids: its tokens (``pos``).
        text: the generated continuation (without the prompt).
        steps: one :class:`Step` per generated token.
        stop_reason: ``"eos"`` (the model ended), ``"length"`` (``max_new_tokens`` reached) or
            ``"stop"`` (a stop string appeared).
        settings: decoding settings actually used, the seed included (so a run can be repeated).

    """

    kind: ClassVar[str] = "generate"
    prompt: str
    prompt_ids: tuple[int, ...]
    text: str
    steps: tuple[Step, ...]
    stop_reason: str
    settings: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stop_reason not in ("eos", "length", "stop"):
            raise ValueError(f"stop_reason must be 'eos', 'length' or 'stop', got {self.stop_reason!r}")
        if [s.index for s in self.steps] != list(range(len(self.steps))):
            raise ValueError("steps must be numbered 0, 1, 2, ... in order")

    @property
    def ids(self) -> tuple[int, ...]:
        """Generated token ids."""
        return tuple(s.id for s in self.steps)

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "prompt": self.prompt, "prompt_ids": list(self.prompt_ids),
            "text": self.text, "steps": [s.to_dict() for s in self.steps], "stop_reason": self.stop_reason,
            "settings": self.settings, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> GenerationResult:
        return cls(
            prompt=d["prompt"], prompt_ids=tuple(d["prompt_ids"]), text=d["text"],
            steps=tuple(Step.from_dict(s) for s in d["steps"]), stop_reason=d["stop_reason"],
            settings=d["settings"], meta=d.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per step."""
        import pandas as pd

        rows = [{k: v for k, v in vars(s).items() if k != "alternatives"} for s in self.steps]
        return pd.DataFrame(rows, columns=[f for f in Step.__dataclass_fields__ if f != "alternatives"])


@dataclass(frozen=True, eq=False)
class SamplesResult(Result):
    """Several sampled continuations of one prompt and the tree of where they diverge.

    Attributes:
        samples: the continuations; sample ``i`` used seed ``settings["seed"] + i``.
        tree: root node of the divergence tree. A node is ``{"text", "ids", "tokens", "probs",
            "sample_probs", "samples", "children"}``: a run of tokens shared by the samples listed,
            ending where they branch. A child's ``probs[0]`` is the model's probability of the draw
            that started that branch.

    """

    kind: ClassVar[str] = "samples"
    prompt: str
    samples: tuple[GenerationResult, ...]
    tree: dict[str, Any]
    settings: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("a SamplesResult needs at least one sample")
        missing = {"text", "ids", "tokens", "probs", "samples", "children"} - set(self.tree)
        if missing:
            raise ValueError(f"tree root lacks {sorted(missing)}")
        if sorted(self.tree["samples"]) != list(range(len(self.samples))):
            raise ValueError("the tree root must hold every sample")

    def branch_points(self) -> list[dict[str, Any]]:
        """Nodes where the samples split, depth first, each with its step index ``at``."""
        out: list[dict[str, Any]] = []

        def walk(node: dict[str, Any], depth: int) -> None:
            end = depth + len(node["ids"])
            if len(node["children"]) > 1:
                out.append({"at": end, "node": node})
            for child in node["children"]:
                walk(child, end)

        walk(self.tree, 0)
        return out

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "prompt": self.prompt,
            "samples": [s._doc() for s in self.samples], "tree": self.tree,
            "settings": self.settings, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> SamplesResult:
        return cls(
            prompt=d["prompt"], samples=tuple(GenerationResult._from_doc(s) for s in d["samples"]),
            tree=d["tree"], settings=d["settings"], meta=d.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per (sample, step)."""
        import pandas as pd

        frames = [s.to_dataframe().assign(sample=i) for i, s in enumerate(self.samples)]
        return pd.concat(frames, ignore_index=True)

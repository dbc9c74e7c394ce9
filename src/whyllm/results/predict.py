"""Result of :func:`whyllm.predict`: the next-token distribution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from whyllm.results.base import Result

__all__ = ["Candidate", "PredictResult", "TargetScore", "check_candidates"]


@dataclass(frozen=True)
class Candidate:
    """One token of a distribution: ``rank`` is 1 for the most likely token."""

    token: str
    id: int
    prob: float
    logprob: float
    rank: int


def check_candidates(cands: tuple[Candidate, ...], what: str) -> None:
    """Raise ``ValueError`` unless ``cands`` are valid, most likely first, with increasing ranks."""
    for c in cands:
        if not 0.0 <= c.prob <= 1.0 + 1e-6:
            raise ValueError(f"{what}: probability of token {c.token!r} must be in [0, 1], got {c.prob}")
        if c.rank < 1:
            raise ValueError(f"{what}: rank of token {c.token!r} must be >= 1, got {c.rank}")
    if any(a.prob < b.prob for a, b in zip(cands, cands[1:], strict=False)) or \
            any(a.rank >= b.rank for a, b in zip(cands, cands[1:], strict=False)):
        raise ValueError(f"{what} must be sorted, most likely first, with increasing ranks")


@dataclass(frozen=True)
class TargetScore:
    """How likely a given continuation is: per token and in total (log-probs in nats)."""

    text: str
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    logprobs: tuple[float, ...]
    ranks: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.tokens) == len(self.logprobs) == len(self.ranks) > 0):
            raise ValueError("TargetScore needs one id, token, logprob and rank per target token")

    @property
    def logprob(self) -> float:
        """Total log-probability of the continuation."""
        return float(sum(self.logprobs))

    @property
    def prob(self) -> float:
        """Probability of the whole continuation."""
        import math

        return math.exp(self.logprob)

    @property
    def rank(self) -> int:
        """Rank of the first target token in the next-token distribution."""
        return self.ranks[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (see docs/schema.md)."""
        return {
            "text": self.text, "ids": list(self.ids), "tokens": list(self.tokens),
            "logprobs": list(self.logprobs), "ranks": list(self.ranks),
            "logprob": self.logprob, "prob": self.prob, "rank": self.rank,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetScore:
        """Inverse of :meth:`to_dict`."""
        return cls(d["text"], tuple(d["ids"]), tuple(d["tokens"]), tuple(d["logprobs"]), tuple(d["ranks"]))


@dataclass(frozen=True, eq=False)
class PredictResult(Result):
    """Next-token distribution after ``prompt``.

    Attributes:
        prompt: the text given.
        input_ids / input_tokens: the prompt's tokens (``pos``), special tokens included.
        top: the ``top_k`` most likely next tokens, most likely first.
        entropy: entropy of the full distribution, in nats.
        target: score of a user-given continuation, or ``None``.
        logprobs: full next-token log-distribution, ``(vocab,)`` float32 on CPU (not in JSON).
        meta: model, method, parameters, whyllm version.

    """

    kind: ClassVar[str] = "predict"
    prompt: str
    input_ids: tuple[int, ...]
    input_tokens: tuple[str, ...]
    top: tuple[Candidate, ...]
    entropy: float
    target: TargetScore | None = None
    logprobs: torch.Tensor | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be a string, got {self.prompt!r}")
        if len(self.input_ids) != len(self.input_tokens):
            raise ValueError("input_ids and input_tokens differ in length")
        if not self.entropy >= -1e-6:  # also rejects NaN
            raise ValueError(f"entropy must be >= 0, got {self.entropy}")
        check_candidates(self.top, "top")
        if self.logprobs is not None and self.logprobs.dim() != 1:
            raise ValueError(f"logprobs must be a (vocab,) tensor, got shape {tuple(self.logprobs.shape)}")

    @property
    def probs(self):  # -> torch.Tensor | None
        """Full next-token distribution ``(vocab,)`` (``None`` for a result read back from JSON)."""
        return None if self.logprobs is None else self.logprobs.exp()

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"),
            "prompt": self.prompt,
            "input_ids": list(self.input_ids),
            "input_tokens": list(self.input_tokens),
            "top": [vars(c) for c in self.top],
            "entropy": self.entropy,
            "target": self.target.to_dict() if self.target else None,
            "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> PredictResult:
        return cls(
            prompt=d["prompt"], input_ids=tuple(d["input_ids"]), input_tokens=tuple(d["input_tokens"]),
            top=tuple(Candidate(**c) for c in d["top"]), entropy=d["entropy"],
            target=TargetScore.from_dict(d["target"]) if d.get("target") else None, meta=d.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per top candidate."""
        import pandas as pd

        return pd.DataFrame([vars(c) for c in self.top], columns=["rank", "token", "id", "prob", "logprob"])

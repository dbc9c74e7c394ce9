"""Result of QK attribution: one head's attention score split into pairs of upstream parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from whyllm.results.base import Result

__all__ = ["QKResult", "source_kind"]


def source_kind(name: str) -> str:
    """The kind of a source name: ``embed``, ``pos_embed``, ``head``, ``mlp`` or ``bias``."""
    if name in ("embed", "pos_embed", "bias"):
        return name
    return "mlp" if name.endswith(".mlp") else "head"


@dataclass(frozen=True, eq=False)
class QKResult(Result):
    """Why a head attends where it does: its pre-softmax score split into (query part, key part) pairs.

    The score of head ``layer``/``head`` from position ``query`` to ``key`` is
    ``scaling * q_vec . k_vec``. Each side's residual stream is split into its sources (``sources``:
    ``embed``, ``pos_embed``, every earlier head ``L{l}.H{h}`` and MLP ``L{l}.mlp``, and ``bias`` for the
    constant terms: norm and projection biases); with the norms' scales frozen at their real values
    (``linearisation``) the score is bilinear in them, so ``parts.sum() == score`` up to ``error``.

    Attributes:
        prompt / input_ids / tokens: the prompt and its tokens.
        layer / head: the head; ``kv_head`` is its key head (grouped-query attention shares one).
        query / key: the positions.
        sources: source names, the same list on both sides (``parts``' axes).
        parts: ``(query_source, key_source)`` contribution of each pair to the score (float64).
        score: the real pre-softmax score (pre-cap with attention soft-capping), recomputed from the
            model's own projections.
        error: ``|parts.sum() - score|``.
        probability: the model's attention weight from ``query`` to ``key``.
        weights_check: largest difference between the softmax of the recomputed scores over the keys and
            the model's attention weights from ``query`` (an independent check of ``score``).
        scaling: the factor in front of the dot product; softcap: the attention soft-cap, or ``None``.
        linearisation: in plain words, what was frozen to make the split exact.
    """

    kind: ClassVar[str] = "qk"
    prompt: str
    input_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    layer: int
    head: int
    kv_head: int
    query: int
    key: int
    sources: tuple[str, ...]
    parts: Tensor = field(repr=False)
    score: float
    error: float
    probability: float
    weights_check: float
    scaling: float
    linearisation: str
    softcap: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.sources)
        if tuple(self.parts.shape) != (n, n):
            raise ValueError(f"parts must be (query_source, key_source) = {(n, n)}, "
                             f"got {tuple(self.parts.shape)}")
        if len(set(self.sources)) != n:
            raise ValueError("source names must be unique")
        if len(self.tokens) != len(self.input_ids):
            raise ValueError("tokens and input_ids differ in length")
        if not 0 <= self.key <= self.query < len(self.tokens):
            raise ValueError(f"need 0 <= key <= query < {len(self.tokens)}, "
                             f"got key {self.key}, query {self.query}")

    @property
    def name(self) -> str:
        """The head as ``L{layer}.H{head}``."""
        return f"L{self.layer}.H{self.head}"

    @property
    def relative_error(self) -> float:
        """``error`` as a share of the score's magnitude (float32: about 1e-7; bfloat16: about 1e-2)."""
        return self.error / max(abs(self.score), 1e-12)

    @property
    def query_marginals(self) -> Tensor:
        """``(source,)`` each query source's contribution summed over the key sources."""
        return self.parts.sum(1)

    @property
    def key_marginals(self) -> Tensor:
        """``(source,)`` each key source's contribution summed over the query sources."""
        return self.parts.sum(0)

    def ranked(self, k: int | None = None) -> list[tuple[str, str, float]]:
        """The ``k`` largest pairs by magnitude (all when ``None``) as (query source, key source, value)."""
        flat = self.parts.reshape(-1)
        order = flat.abs().argsort(descending=True, stable=True)[:k].tolist()
        n = len(self.sources)
        return [(self.sources[i // n], self.sources[i % n], float(flat[i])) for i in order]

    def _marginals(self, values: Tensor) -> list[dict[str, Any]]:
        order = values.abs().argsort(descending=True, stable=True).tolist()
        return [{"source": self.sources[i], "value": float(values[i])} for i in order]

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "prompt": self.prompt, "input_ids": list(self.input_ids),
            "tokens": list(self.tokens), "layer": self.layer, "head": self.head, "kv_head": self.kv_head,
            "query": self.query, "key": self.key, "query_token": self.tokens[self.query],
            "key_token": self.tokens[self.key], "score": self.score, "error": self.error,
            "probability": self.probability, "weights_check": self.weights_check, "scaling": self.scaling,
            "softcap": self.softcap, "linearisation": self.linearisation, "sources": list(self.sources),
            "parts": [{"query_source": a, "key_source": b, "value": v}
                      for a, b, v in self.ranked()],
            "query_marginals": self._marginals(self.query_marginals),
            "key_marginals": self._marginals(self.key_marginals), "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> QKResult:
        sources = tuple(d["sources"])
        index = {s: i for i, s in enumerate(sources)}
        parts = torch.zeros(len(sources), len(sources), dtype=torch.float64)
        for p in d["parts"]:
            parts[index[p["query_source"]], index[p["key_source"]]] = p["value"]
        skip = ("model", "query_token", "key_token", "parts", "query_marginals", "key_marginals")
        rest = {k: v for k, v in d.items() if k not in skip}
        return cls(**{**rest, "input_ids": tuple(d["input_ids"]), "tokens": tuple(d["tokens"]),
                      "sources": sources, "parts": parts})

    def to_dataframe(self):
        """One row per (query source, key source) pair, largest magnitude first."""
        import pandas as pd

        rows = [{"query_source": a, "query_kind": source_kind(a), "key_source": b, "key_kind": source_kind(b),
                 "value": v} for a, b, v in self.ranked()]
        return pd.DataFrame(rows, columns=["query_source", "query_kind", "key_source", "key_kind", "value"])

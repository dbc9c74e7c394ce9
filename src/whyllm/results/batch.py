"""The summary of a batch run (:func:`whyllm.batch`): what it asked for, skipped, wrote and how fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from whyllm.results.base import Result

__all__ = ["BatchSummary"]


@dataclass(frozen=True, eq=False)
class BatchSummary(Result):
    """What a batch run did.

    Attributes:
        out: the output folder.
        rows: input rows.
        runs: the ``method`` labels run (``predict``, ``explain:occlusion``...).
        total: output rows the input asks for (rows x runs).
        skipped: output rows already written before this run (a resume).
        done: output rows written by this run.
        errors: error rows among them.
        seconds: wall time of this run's work (planning the resume included, loading the model not).
        meta: provenance (model, ``method="batch"``, engine and chunk, whyllm version).
    """

    kind: ClassVar[str] = "batch_summary"
    out: str
    rows: int
    runs: tuple[str, ...]
    total: int
    skipped: int
    done: int
    errors: int
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts = (self.rows, self.total, self.skipped, self.done, self.errors)
        if min(counts) < 0 or self.seconds < 0:
            raise ValueError(f"batch counts and seconds must be >= 0, got {counts} and {self.seconds}")
        if self.errors > self.done:
            raise ValueError(f"errors ({self.errors}) cannot exceed the rows written ({self.done})")

    @property
    def rows_per_second(self) -> float:
        """Output rows written per second by this run."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def remaining(self) -> int:
        """Output rows the input asks for that are not written yet."""
        return max(0, self.total - self.skipped - self.done)

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "out": self.out, "rows": self.rows, "runs": list(self.runs),
            "total": self.total, "skipped": self.skipped, "done": self.done, "errors": self.errors,
            "seconds": self.seconds, "rows_per_second": self.rows_per_second, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> BatchSummary:
        return cls(doc["out"], doc["rows"], tuple(doc["runs"]), doc["total"], doc["skipped"], doc["done"],
                   doc["errors"], doc["seconds"], doc.get("meta", {}))

    def to_dataframe(self):  # -> pandas.DataFrame
        """One row per figure: ``measure`` and ``value``.

        Measures: rows, total, skipped, done, errors, remaining, seconds, rows_per_second.
        """
        import pandas as pd

        names = ("rows", "total", "skipped", "done", "errors", "remaining", "seconds", "rows_per_second")
        return pd.DataFrame({"measure": list(names), "value": [float(getattr(self, n)) for n in names]})

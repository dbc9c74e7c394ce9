"""What every result shares: JSON documents, DataFrames, terminal and HTML views.

A result is a frozen dataclass. Its JSON document (``to_dict()``) follows the versioned schema in
``docs/schema.md``: ``schema_version``, ``kind`` and the result's own fields. ``from_dict`` reads that
document back. Views come from :mod:`whyllm.render` (imported lazily there, never printing).
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Self

from whyllm._version import __version__
from whyllm.errors import InputError
from whyllm.files import write_atomic

__all__ = ["SCHEMA_VERSION", "Result", "json_safe", "meta"]

SCHEMA_VERSION = 1


def meta(model: Any, method: str, **params: Any) -> dict[str, Any]:
    """Provenance stored on every result: model name, method, parameters and whyllm version."""
    name = getattr(model, "name", model)
    return {"model": str(name), "method": method, "params": params, "whyllm_version": __version__}


def json_safe(value: Any) -> Any:
    """``value`` with its non-finite floats (which JSON cannot hold) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class Result:
    """Mixin for result dataclasses: subclasses set ``kind`` and implement ``_doc``/``_from_doc``."""

    kind: ClassVar[str]

    def _doc(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document (versioned schema, see docs/schema.md)."""
        return {"schema_version": SCHEMA_VERSION, "kind": self.kind, **self._doc()}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Self:
        """Rebuild a result from :meth:`to_dict` output (tensors not in the document stay empty)."""
        if doc.get("kind") != cls.kind:
            raise InputError(f"document kind {doc.get('kind')!r} is not {cls.kind!r}")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise InputError(
                f"document schema_version {doc.get('schema_version')!r} is not {SCHEMA_VERSION}; "
                "it was written by another whyllm version"
            )
        return cls._from_doc({k: v for k, v in doc.items() if k not in ("schema_version", "kind")})

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict` (NaN and infinities, which JSON cannot hold, as ``null``).

        Also written to ``path`` when given.
        """
        doc = self.to_dict()
        try:
            text = json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False)
        except ValueError:  # a non-finite float somewhere (rare)
            text = json.dumps(json_safe(doc), indent=indent, ensure_ascii=False, allow_nan=False)
        if path is not None:
            write_atomic(path, text, "JSON document")
        return text

    def to_dataframe(self):  # -> pandas.DataFrame
        """Tidy table (one row per token / step / layer...)."""
        raise NotImplementedError

    def to_parquet(self, path: str | Path) -> None:
        """Write :meth:`to_dataframe` as Parquet (needs pyarrow)."""
        frame = self.to_dataframe()
        write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False), "Parquet file")

    def __rich__(self):
        from whyllm.render import dispatch  # views import results: imported on first use

        return dispatch.terminal(self)

    def _repr_html_(self) -> str:
        from whyllm.render.html import fragment

        return fragment(self)

    def to_html(self, path: str | Path | None = None) -> str:
        """Self-contained HTML report (inline CSS, no network); also written to ``path`` when given."""
        from whyllm.render.html import page

        text = page(self)
        if path is not None:
            write_atomic(path, text, "HTML report")
        return text

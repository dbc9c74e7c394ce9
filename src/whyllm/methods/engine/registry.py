"""Name -> entry tables: every registry in whyllm is a :class:`Registry` of :class:`Entry` s.

Entries hold the real function (no strings naming modules), a one-line summary, and what the
interfaces derive from the function's signature (its options). Unknown names raise
:class:`~whyllm.errors.UnknownMethodError` listing the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, TypeVar

from whyllm.errors import UnknownMethodError

__all__ = ["Entry", "Registry"]


@dataclass(frozen=True)
class Entry:
    """One registered function.

    Attributes:
        name: the public name (CLI command, API endpoint, ``method=`` value).
        fn: the function.
        summary: one line for help texts and docs tables.
    """

    name: str
    fn: Callable
    summary: str

    @property
    def options(self) -> tuple[str, ...]:
        """The function's keyword-only parameters (its options), in order."""
        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


E = TypeVar("E", bound=Entry)


class Registry(Mapping[str, E], Generic[E]):
    """A read-only table of entries by name.

    Args:
        kind: what the entries are, for error messages (``"analysis"``, ``"attribution method"``).
        entries: the entries; names must be unique.
    """

    def __init__(self, kind: str, entries: Iterable[E]):
        table = {}
        for e in entries:
            if e.name in table:
                raise ValueError(f"{kind} {e.name!r} is registered twice")
            table[e.name] = e
        self.kind = kind
        self._entries = MappingProxyType(table)

    def __getitem__(self, name: str) -> E:
        if name not in self._entries:
            raise UnknownMethodError(self.kind, name, list(self._entries))
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Every name, sorted."""
        return sorted(self._entries)

    def filter(self, keep: Callable[[E], bool]) -> Mapping[str, E]:
        """The entries for which ``keep(entry)`` is true, by name."""
        return {n: e for n, e in self._entries.items() if keep(e)}

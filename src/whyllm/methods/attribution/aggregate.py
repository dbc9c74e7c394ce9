"""Units of attribution: tokens grouped into words, sentences or chat turns using character offsets.

A token belongs to the word/sentence holding its first non-space character (so Gemma's ``" Mary"``
belongs to the word ``Mary``); a whitespace-only token joins the unit before it. Masked tokens
(special, chat template) belong to no unit and break runs, so units never cross turns.
Token scores add up into unit scores.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.inputs import Prepared
from whyllm.results.attribution import GRANULARITIES

__all__ = ["GRANULARITIES", "UnitSpan", "make_units", "spread", "unit_mask", "unit_scores", "unit_text"]

_WORD = re.compile(r"\w+|[^\w\s]+")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+")


@dataclass(frozen=True)
class UnitSpan:
    """Token span ``[start, end)`` of one unit, with its role."""

    start: int
    end: int
    role: str | None


def _segments(text: str, granularity: str) -> list[tuple[int, int]]:
    """Character spans of the words or sentences of ``text``."""
    if granularity == "word":
        return [m.span() for m in _WORD.finditer(text)]
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if text[start:m.end()].strip():
            spans.append((start, m.end()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _keys(prep: Prepared, granularity: str) -> list[object]:
    """A grouping key per token (``None`` for masked); equal consecutive keys form one unit."""
    segs = _segments(prep.text, granularity) if granularity in ("word", "sentence") else []
    starts = [s for s, _ in segs]
    keys: list[object] = []
    for i, span in enumerate(prep.spans):
        if bool(prep.masked[i]) or span is None:
            keys.append(None)
            continue
        if granularity == "token" or prep.roles[i] == "output":
            keys.append(("t", i))
            continue
        if granularity == "turn":
            keys.append(("turn", prep.turns[i]))
            continue
        first = next((c for c in range(*span) if not prep.text[c].isspace()), None)
        if first is None:  # whitespace only: join the previous unit (resolved below)
            keys.append("ws")
            continue
        seg = bisect.bisect_right(starts, first) - 1
        keys.append((prep.turns[i], seg))
    for i, k in enumerate(keys):
        if k == "ws":
            prev = keys[i - 1] if i > 0 else None
            keys[i] = prev if prev is not None else ("ws", i)
    return keys


def make_units(prep: Prepared, granularity: str) -> list[UnitSpan]:
    """The units of ``prep`` at ``granularity``, in input order."""
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity {granularity!r} is not valid; use {', '.join(GRANULARITIES)}")
    if granularity == "turn" and all(t is None for t in prep.turns):
        raise InputError("granularity 'turn' needs a chat prompt (a list of role/content messages)")
    keys = _keys(prep, granularity)
    units: list[UnitSpan] = []
    i = 0
    while i < len(keys):
        if keys[i] is None:
            i += 1
            continue
        j = i + 1
        while j < len(keys) and keys[j] == keys[i]:
            j += 1
        units.append(UnitSpan(i, j, prep.roles[i]))
        i = j
    return units


def unit_text(prep: Prepared, u: UnitSpan) -> str:
    """The text a unit covers."""
    spans = [s for s in prep.spans[u.start:u.end] if s is not None]
    return prep.text[spans[0][0]:spans[-1][1]] if spans else "".join(prep.tokens[u.start:u.end])


def unit_mask(units: list[UnitSpan], n: int, chosen: Tensor | list[int]) -> Tensor:
    """``(n,)`` bool mask of the tokens of the units whose indices are in ``chosen``."""
    mask = torch.zeros(n, dtype=torch.bool)
    for k in (chosen.tolist() if isinstance(chosen, Tensor) else chosen):
        mask[units[k].start:units[k].end] = True
    return mask


def unit_scores(token_scores: Tensor, units: list[UnitSpan]) -> Tensor:
    """Sum token scores ``(..., pos)`` into unit scores ``(..., n_units)``."""
    return torch.stack([token_scores[..., u.start:u.end].sum(-1) for u in units], dim=-1)


def spread(unit_values: Tensor, units: list[UnitSpan], n: int) -> Tensor:
    """Token scores ``(..., n)`` from unit scores ``(..., n_units)``: each unit's score split evenly."""
    out = torch.zeros(*unit_values.shape[:-1], n)
    for k, u in enumerate(units):
        out[..., u.start:u.end] = unit_values[..., k:k + 1] / (u.end - u.start)
    return out

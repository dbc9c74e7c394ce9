"""Argument resolution shared by the methods: tokens, layers, heads, positions. One error wording.

Every function raises :class:`~whyllm.errors.InputError` naming the value received and the valid range.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from whyllm.errors import InputError
from whyllm.model.base import Model

__all__ = [
    "check_index", "check_int", "default_token", "distinct", "resolve_positions", "same_length", "select",
    "target_and_foil", "token_id",
]


def check_int(value: object, what: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an integer in ``minimum..maximum``; else :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise InputError(f"{what} must be {kind}, got {value!r}")
    if maximum is not None and value > maximum:
        raise InputError(f"{what} must be at most {maximum}, got {value!r}")
    return value


def token_id(model: Model, text: str, what: str = "target") -> int:
    """First token id of ``text`` as a continuation (``" Paris"`` -> id of ``▁Paris``)."""
    return model.encode_continuation(text, what=what)[0]


def default_token(model: Model, logits: Tensor) -> tuple[str, int]:
    """The most likely next token of a ``(vocab,)`` logit vector, as (text, id)."""
    i = int(logits.argmax())
    return model.token_texts([i])[0], i


def distinct(target_id: int, foil_id: int | None, target: object, foil: object) -> None:
    """Refuse a foil that is the same token as the target (the contrast would be zero)."""
    if foil_id is not None and foil_id == target_id:
        raise InputError(f"target and foil are the same token ({target!r}, {foil!r}); pick a different foil")


def target_and_foil(
    model: Model, target: str | None, foil: str | None, logits: Tensor | None = None,
) -> tuple[int, int | None]:
    """Token ids of ``target`` (default: the top token of ``logits``, ``(vocab,)``) and ``foil``."""
    if target is not None:
        tid = token_id(model, target)
    elif logits is not None:
        tid = default_token(model, logits)[1]
    else:
        raise InputError("no target given and no prediction to default to; give a target")
    fid = token_id(model, foil, "foil") if foil is not None else None
    distinct(tid, fid, target, foil)
    return tid, fid


def check_index(value: int, size: int, what: str, plural: str) -> int:
    """``value`` made non-negative, or :class:`InputError` naming the valid range."""
    if isinstance(value, bool) or not isinstance(value, int) or not -size <= value < size:
        raise InputError(f"{what} {value!r} is out of range; this model has {plural} 0..{size - 1}")
    return value % size


def select(values: Sequence[int] | int | None, size: int, what: str, plural: str) -> tuple[int, ...]:
    """Indices in the order given without repeats (negative from the end); all when ``None``."""
    if values is None:
        return tuple(range(size))
    if isinstance(values, int):
        values = [values]
    chosen = tuple(dict.fromkeys(check_index(v, size, what, plural) for v in values))
    if not chosen:
        raise InputError(f"no {plural} selected; give at least one or None for all")
    return chosen


def resolve_positions(positions: Sequence[int] | None, n: int) -> tuple[int, ...]:
    """Absolute positions in order, without repeats (negative ones count from the end); all when ``None``."""
    if positions is None:
        return tuple(range(n))
    out: list[int] = []
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, int) or not -n <= p < n:
            raise InputError(
                f"position {p!r} is out of range; the prompt has positions 0..{n - 1} (or -{n}..-1)"
            )
        if p % n not in out:
            out.append(p % n)
    if not out:
        raise InputError("positions is empty; give at least one position or None for all")
    return tuple(sorted(out))


def same_length(model: Model, clean: Tensor, corrupted: Tensor) -> None:
    """Refuse a corrupted prompt whose token length differs from the clean one's, naming where."""
    a, b = clean[0].tolist(), corrupted[0].tolist()
    if len(a) == len(b):
        return
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    ta, tb = (model.token_texts(x[first : first + 1]) or ["<end>"] for x in (a, b))
    raise InputError(
        f"the clean prompt is {len(a)} tokens but the corrupted prompt is {len(b)}; they first differ at "
        f"token {first} ({ta[0]!r} vs {tb[0]!r}); patching and circuits need prompts of equal token length: "
        "change "
        "words for words that are one token each"
    )

"""The input being explained: token ids, where each token sits in the text, and which tokens are fixed.

A :class:`Prepared` input knows, for every token, its character span in the text (from the fast
tokenizer's offsets, or from decoding token by token when those are unavailable), its chat role and
turn, and whether it is *masked*: special tokens (BOS...) and chat-template tokens are never
attributed, removed or interpolated; they keep their real embedding in every run.

Baselines ("what an absent token looks like") live in :mod:`whyllm.methods.attribution.baselines`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from whyllm.errors import InputError, PromptTooLongError
from whyllm.model.base import Model, check_prompt
from whyllm.model.chat import ROLES, chat_prompt

__all__ = ["Prepared", "extend", "prepare", "prepare_ids"]

@dataclass(frozen=True)
class Prepared:
    """A tokenised input.

    Attributes:
        text: the text the spans index into (a chat's templated text).
        ids: ``(1, pos)`` token ids on the model's device.
        tokens: decoded text of each token.
        spans: per token, its ``(start, end)`` characters in ``text``, or ``None`` for special tokens.
        masked: ``(pos,)`` bool, True for tokens never attributed (special and chat-template tokens).
        roles / turns: per token, its chat role and message index (``None`` outside a chat).
        n_prompt: tokens of the prompt proper; later tokens are appended outputs (per-token matrix).
    """

    text: str
    ids: Tensor
    tokens: tuple[str, ...]
    spans: tuple[tuple[int, int] | None, ...]
    masked: Tensor
    roles: tuple[str | None, ...]
    turns: tuple[int | None, ...]
    n_prompt: int

    @property
    def n(self) -> int:
        """Number of tokens."""
        return int(self.ids.shape[1])


def _special_ids(model: Model) -> set[int]:
    return set(getattr(model.tokenizer, "all_special_ids", []) or [])


def _spans_from_offsets(model: Model, text: str, ids: Tensor) -> list[tuple[int, int] | None] | None:
    """Character spans from the fast tokenizer's offsets; ``None`` if they do not match ``ids``."""
    bos = getattr(model.tokenizer, "bos_token", None)
    templated = bool(bos) and text.startswith(bos)
    try:
        enc = model.tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
        return None
    if list(enc["input_ids"]) != ids[0].tolist():
        return None
    special = _special_ids(model)
    return [None if (i in special or a == b) else (int(a), int(b))
            for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)]


def _spans_from_pieces(model: Model, ids: list[int]) -> tuple[str, list[tuple[int, int] | None]]:
    """Text and spans by decoding token by token (specials left out of the text)."""
    special = _special_ids(model)
    text, spans = "", []
    for i in ids:
        if i in special:
            spans.append(None)
            continue
        piece = model.tokenizer.decode([i])
        spans.append((len(text), len(text) + len(piece)) if piece else None)
        text += piece
    return text, spans


def _build(model: Model, text: str, ids: Tensor, spans, roles=None, turns=None) -> Prepared:
    n = ids.shape[1]
    roles = roles or [None] * n
    masked = torch.tensor([s is None for s in spans], dtype=torch.bool)
    if any(r is not None for r in roles):  # a chat: template tokens (no role) are masked too
        masked |= torch.tensor([r is None for r in roles], dtype=torch.bool)
    if bool(masked.all()):
        raise InputError(f"the prompt {text!r} has no tokens to attribute (only special or template tokens)")
    return Prepared(
        text=text, ids=ids, tokens=tuple(model.token_texts(ids[0])), spans=tuple(spans), masked=masked,
        roles=tuple(roles), turns=tuple(turns or [None] * n), n_prompt=n,
    )


def _chat_roles(text: str, messages: list[dict[str, str]], spans) -> tuple[list, list]:
    """Role and turn of each token: the message whose content holds its first non-space character."""
    ranges, cursor = [], 0
    for turn, m in enumerate(messages):
        content = m["content"].strip()
        at = text.find(content, cursor) if content else -1
        if at < 0:
            raise InputError(f"message {turn} ({content[:40]!r}) was not found in the chat template's output")
        ranges.append((at, at + len(content), m["role"], turn))
        cursor = at + len(content)
    roles, turns = [], []
    for span in spans:
        hit = None
        if span is not None:
            first = next((c for c in range(*span) if not text[c].isspace()), span[0])
            hit = next((r for r in ranges if r[0] <= first < r[1]), None)
        roles.append(hit[2] if hit else None)
        turns.append(hit[3] if hit else None)
    return roles, turns


def prepare(model: Model, prompt: str | list[dict[str, str]], *, room: int = 0) -> Prepared:
    """Tokenise a prompt (text, or a chat as ``{"role", "content"}`` messages) for attribution.

    Args:
        model: the model.
        prompt: text, or chat messages (formatted with the model's chat template).
        room: tokens that must still fit after the prompt (the target's continuation).
    """
    if isinstance(prompt, list):
        for m in prompt:
            if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
                raise InputError(f"chat message {m!r} needs a role in {ROLES} and text content")
        text = chat_prompt(model, prompt)
        ids = model.encode(text, room=room)
        spans = _spans_from_offsets(model, text, ids)
        if spans is None:
            text, spans = _spans_from_pieces(model, ids[0].tolist())
        roles, turns = _chat_roles(text, prompt, spans)
        return _build(model, text, ids, spans, roles, turns)
    check_prompt(prompt)
    ids = model.encode(prompt, room=room)  # (1, pos)
    spans = _spans_from_offsets(model, prompt, ids)
    text = prompt
    if spans is None:
        text, spans = _spans_from_pieces(model, ids[0].tolist())
    return _build(model, text, ids, spans)


def prepare_ids(model: Model, ids: list[int], *, room: int = 0) -> Prepared:
    """An input given as token ids (e.g. a prompt plus earlier generated tokens)."""
    if len(ids) + room > model.adapter.n_ctx:
        raise PromptTooLongError(f"the input is {len(ids)} tokens (+{room}) but {model.name} accepts "
                                 f"at most {model.adapter.n_ctx}; shorten it")
    text, spans = _spans_from_pieces(model, ids)
    return _build(model, text, torch.tensor([ids], device=model.device), spans)


def extend(model: Model, prep: Prepared, out_ids: list[int]) -> Prepared:
    """``prep`` followed by generated tokens (role ``"output"``), for the per-token matrix."""
    if not out_ids:
        return prep
    pieces = model.token_texts(out_ids)
    text, spans = prep.text, list(prep.spans)
    for p in pieces:
        spans.append((len(text), len(text) + len(p)) if p else None)
        text += p
    ids = torch.cat([prep.ids, torch.tensor([out_ids], device=prep.ids.device)], dim=1)  # (1, pos + n)
    masked = torch.cat([prep.masked, torch.tensor([s is None for s in spans[prep.n:]], dtype=torch.bool)])
    return replace(
        prep, text=text, ids=ids, tokens=prep.tokens + tuple(pieces), spans=tuple(spans), masked=masked,
        roles=prep.roles + ("output",) * len(out_ids), turns=prep.turns + (None,) * len(out_ids),
    )

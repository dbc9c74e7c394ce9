"""Feedback as training data: TRL's dataset formats, and the lossless whyllm JSONL.

Formats (one JSON object per line):

- ``dpo`` (TRL preference): ``{"prompt", "chosen", "rejected"}``. A correction is chosen over the
  flagged completion; on one prompt, each completion judged bad is also paired with one judged good.
- ``kto`` (TRL unpaired preference): ``{"prompt", "completion", "label"}``; ``label`` is true for a
  good verdict and for every correction.
- ``sft`` (TRL prompt-completion): ``{"prompt", "completion"}``: corrections and good completions.
- ``jsonl``: every stored column, for backups and moving a store (import keeps everything but ids).

Items given as chat messages export in TRL's conversational form (``prompt`` a list of messages,
completions a one-message list); text items in its standard form.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from whyllm.errors import InputError

__all__ = ["FORMATS", "detect_format", "items_from_rows", "kto_rows", "pairs", "rows", "sft_rows"]

FORMATS = ("dpo", "kto", "sft", "jsonl")


def _prompt(item: dict[str, Any], conversational: bool) -> Any:
    return item["messages"] if conversational and item.get("messages") else item["prompt"]


def _answer(item: dict[str, Any], text: str, conversational: bool) -> Any:
    if conversational and item.get("messages"):
        return [{"role": "assistant", "content": text}]
    return text


def pairs(items: Sequence[dict[str, Any]], *, conversational: bool = True) -> list[dict[str, Any]]:
    """Preference pairs with the ids of the items each came from (``feedback_ids``)."""
    out: list[dict[str, Any]] = []
    goods: dict[tuple, list[dict]] = defaultdict(list)
    for it in items:
        if it["verdict"] == "good":
            goods[(it["model"], it["prompt"])].append(it)
    used: dict[tuple, int] = defaultdict(int)
    for it in items:
        chosen, ids = None, [it["id"]]
        if it.get("correction"):
            chosen = it["correction"]
        elif it["verdict"] == "bad" and goods[(it["model"], it["prompt"])]:
            key = (it["model"], it["prompt"])
            good = goods[key][used[key] % len(goods[key])]
            used[key] += 1
            chosen, ids = good["completion"], [it["id"], good["id"]]
        if chosen is None or chosen == it["completion"]:
            continue
        out.append({
            "prompt": _prompt(it, conversational), "chosen": _answer(it, chosen, conversational),
            "rejected": _answer(it, it["completion"], conversational), "feedback_ids": ids,
        })
    return out


def kto_rows(items: Sequence[dict[str, Any]], *, conversational: bool = True) -> list[dict[str, Any]]:
    """Unpaired labels: each completion with its verdict, each correction labelled good."""
    out = []
    for it in items:
        p = _prompt(it, conversational)
        out.append({"prompt": p, "completion": _answer(it, it["completion"], conversational),
                    "label": it["verdict"] == "good", "feedback_ids": [it["id"]]})
        if it.get("correction"):
            out.append({"prompt": p, "completion": _answer(it, it["correction"], conversational),
                        "label": True, "feedback_ids": [it["id"]]})
    return out


def sft_rows(items: Sequence[dict[str, Any]], *, conversational: bool = True) -> list[dict[str, Any]]:
    """Prompt-completion rows: corrections, and completions judged good."""
    out = []
    for it in items:
        text = it.get("correction") or (it["completion"] if it["verdict"] == "good" else None)
        if text:
            out.append({"prompt": _prompt(it, conversational),
                        "completion": _answer(it, text, conversational), "feedback_ids": [it["id"]]})
    return out


def rows(items: Sequence[dict[str, Any]], fmt: str, *, conversational: bool = True,
         with_ids: bool = False) -> list[dict[str, Any]]:
    """Rows of ``fmt`` (see the module docstring); ``with_ids`` keeps each row's ``feedback_ids``."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "jsonl":
        return [dict(it) for it in items]
    build = {"dpo": pairs, "kto": kto_rows, "sft": sft_rows}[fmt]
    out = build(items, conversational=conversational)
    return out if with_ids else [{k: v for k, v in r.items() if k != "feedback_ids"} for r in out]


def detect_format(row: dict[str, Any]) -> str:
    """Which format a row is in, from its keys.

    Raises:
        InputError: the keys match no format.

    """
    keys = set(row)
    if {"prompt", "completion", "verdict", "model"} <= keys:
        return "jsonl"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "dpo"
    if {"prompt", "completion", "label"} <= keys:
        return "kto"
    if {"prompt", "completion"} <= keys:
        return "sft"
    raise InputError(
        f"a row with keys {sorted(keys)!r} is in no known format; expected TRL preference "
        "(prompt, chosen, rejected), unpaired (prompt, completion, label), prompt-completion (prompt, "
        "completion) or a whyllm export"
    )


def _text(value: Any, what: str, line: int) -> str:
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"line {line}: {what} is empty or not text ({value!r}); fix or drop that line")
    return value


def items_from_rows(
    rows_in: Iterable[dict[str, Any]], *, model: str, render_chat=None, source: str = "cli",
    user: str | None = None,
) -> list[dict[str, Any]]:
    """Store-ready items from exported rows (any format, detected per row), checked before any write.

    Args:
        rows_in: parsed JSON objects.
        model: model name recorded for rows that do not carry one (TRL formats).
        render_chat: ``messages -> prompt text`` for conversational rows (the model's chat template).
        source: recorded as where the feedback came from.
        user: recorded as who gave it.

    """
    out = []
    for line, row in enumerate(rows_in, 1):
        if not isinstance(row, dict):
            raise InputError(f"line {line} is not a JSON object ({row!r})")
        fmt = detect_format(row)
        if fmt == "jsonl":
            item = {k: v for k, v in row.items() if k != "id"}
            out.append(item)
            continue
        messages = row["prompt"] if isinstance(row["prompt"], list) else None
        if messages is not None:
            if render_chat is None:
                raise InputError(f"line {line}: a conversational row needs the model's chat template; "
                                 "load a model to import it")
            prompt = render_chat(messages)
        else:
            prompt = _text(row["prompt"], "the prompt", line)
        base = {"model": model, "prompt": prompt, "messages": messages, "source": source, "user": user}
        if fmt == "dpo":
            item = {**base, "completion": _text(row["rejected"], "rejected", line), "verdict": "bad",
                    "correction": _text(row["chosen"], "chosen", line)}
        elif fmt == "kto":
            if not isinstance(row["label"], bool):
                raise InputError(f"line {line}: label must be true or false, got {row['label']!r}")
            item = {**base, "completion": _text(row["completion"], "the completion", line),
                    "verdict": "good" if row["label"] else "bad"}
        else:
            item = {**base, "completion": _text(row["completion"], "the completion", line), "verdict": "good"}
        out.append(item)
    return out

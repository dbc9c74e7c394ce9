r"""Human feedback on completions: store it, export it as training data, tune on it, diff the result.

Plain functions for the CLI and the server (arguments in, dicts out)::

    from whyllm import feedback
    item = feedback.add_feedback(model, "Q: capital of France?\\nA:", " Lyon", "bad", correction=" Paris")
    feedback.list_feedback()                     # [{id, prompt, completion, verdict, ...}]
    feedback.export_feedback("pairs.jsonl", "dpo")

Tuning (:func:`whyllm.tune`) and comparing base and tuned models (:func:`whyllm.diff`) live in
:mod:`whyllm.feedback.tune` and :mod:`whyllm.feedback.diff`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from whyllm.errors import InputError
from whyllm.feedback import formats, store
from whyllm.feedback.store import FeedbackStoreError, default_db

__all__ = [
    "FeedbackStoreError", "add_feedback", "check_item", "default_db", "export_feedback", "get_feedback",
    "import_feedback", "list_feedback", "read_jsonl", "remove_feedback",
]

Db = str | os.PathLike | None


def _check_text(value: Any, what: str, hint: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"the {what} is empty ({value!r}); {hint}")
    return value


def _check_ids(model, completion: str, ids: list[int]) -> list[int]:
    """Check the ids are this model's tokens and spell ``completion`` (trailing special tokens allowed)."""
    vocab = model.adapter.d_vocab
    bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < vocab]
    if bad:
        raise InputError(
            f"completion token id {bad[0]!r} is not a token of {model.name!r} (vocabulary 0..{vocab - 1}); "
            "the completion was produced by another model: record it under that model"
        )
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    body = list(ids)
    while body and body[-1] in special:
        body.pop()
    text = model.tokenizer.decode(body, skip_special_tokens=False)
    if text != completion:
        raise InputError(
            f"the completion token ids decode to {text!r} with {model.name!r}'s tokenizer, not to the "
            f"completion {completion!r}; the completion was produced by another model or edited"
        )
    return list(ids)


def check_item(prompt: Any, completion: Any, verdict: Any, correction: Any = None) -> None:
    """Check one item's text fields (cheap, before loading a model).

    Raises:
        InputError: an empty prompt, completion or correction, a correction equal to the completion, or
            an unknown verdict.

    """
    _check_text(prompt, "prompt", "give the text the model continued")
    _check_text(completion, "completion", "give the text the model produced")
    if correction is not None:
        _check_text(correction, "correction", "give the text the model should have produced, "
                    "or leave the correction out")
        if correction == completion:
            raise InputError(f"the correction is the completion itself ({correction!r}); "
                             "give a different text, or mark the completion good")
    if verdict not in store.VERDICTS:
        raise InputError(f"verdict must be one of {', '.join(store.VERDICTS)}, got {verdict!r}")


def add_feedback(
    model, prompt: str | None = None, completion: str | None = None, verdict: str = "bad", *,
    correction: str | None = None, reason: str | None = None, completion_ids: list[int] | None = None,
    settings: dict[str, Any] | None = None, messages: list[dict[str, str]] | None = None,
    generation=None, source: str = "api", user: str | None = None, db: Db = None,
) -> dict[str, Any]:
    """Record a verdict on a completion of ``model``; return the stored item.

    Args:
        model: the loaded :class:`~whyllm.Model` that produced the completion (its name and weights
            fingerprint are recorded and the token ids checked against it).
        prompt: the exact text the model continued (for a chat, the templated prompt; see ``messages``).
        completion: the completion's text.
        verdict: ``"good"`` or ``"bad"``.
        correction: what the model should have said instead (makes a preference pair).
        reason: why, in the user's words.
        completion_ids: the completion's exact token ids (default: ``completion`` tokenized).
        settings: decoding settings and seed that produced it.
        messages: the chat messages ``prompt`` was rendered from.
        generation: a :class:`~whyllm.GenerationResult` of ``model``: fills prompt, completion, ids and
            settings.
        source: ``"cli"``, ``"app"`` or ``"api"``.
        user: who gave the feedback.
        db: database path (default: ``feedback.sqlite`` in whyllm's cache).

    Raises:
        InputError: empty prompt, completion or correction, an unknown verdict, or a completion that
            does not belong to ``model``. FeedbackStoreError: the database is corrupt or locked.

    """
    from whyllm.model.adapters import weights_hash

    if generation is not None:
        produced_by = generation.meta.get("model")
        if produced_by not in (None, model.name):
            raise InputError(f"the generation was produced by {produced_by!r}, not by {model.name!r}; "
                             "record it with the model that produced it")
        prompt, completion = generation.prompt, generation.text
        completion_ids, settings = list(generation.ids), {**generation.settings, **(settings or {})}
    if messages is not None and prompt is None:
        from whyllm.methods.chat import chat_prompt

        prompt = chat_prompt(model, messages)
    check_item(prompt, completion, verdict, correction)
    ids = _check_ids(model, completion, completion_ids if completion_ids is not None
                     else model.encode_continuation(completion, what="completion"))
    item = {
        "model": model.name, "weights_hash": weights_hash(model, base_only=False), "prompt": prompt,
        "messages": messages, "settings": settings or {}, "completion": completion, "completion_ids": ids,
        "verdict": verdict, "reason": reason or None, "correction": correction, "source": source,
        "user": user,
    }
    return store.get(db, store.insert(db, item))


def list_feedback(db: Db = None, *, model: str | None = None, verdict: str | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """Stored items, oldest first, optionally only one model's or one verdict's."""
    return store.select(db, model=model, verdict=verdict, limit=limit)


def get_feedback(item_id: int, db: Db = None) -> dict[str, Any]:
    """One stored item (raises :class:`~whyllm.InputError` if there is none with that id)."""
    return store.get(db, item_id)


def remove_feedback(ids: list[int] | int, db: Db = None) -> list[int]:
    """Delete items by id (all or none); return the ids removed."""
    return store.delete(db, [ids] if isinstance(ids, int) else list(ids))


def export_feedback(path: str | os.PathLike | None, fmt: str = "dpo", db: Db = None, *,
                    model: str | None = None, conversational: bool = True) -> list[dict[str, Any]]:
    """Rows of the store in ``fmt`` (``dpo``, ``kto``, ``sft`` or ``jsonl``), also written to ``path``."""
    out = formats.rows(store.select(db, model=model), fmt, conversational=conversational)
    if path is not None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out)
        Path(path).write_text(text, encoding="utf-8")
    return out


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse a JSONL file, naming the line of any error."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"feedback file {str(p)!r} does not exist")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{str(p)!r} line {n} is not JSON ({e}); nothing was imported") from e
    return out


def import_feedback(path: str | os.PathLike | list[dict[str, Any]], db: Db = None, *,
                    model: str = "gemma-3-270m", render_chat=None, source: str = "cli",
                    user: str | None = None) -> list[int]:
    """Add every row of a JSONL export (a path, or its rows; any format) to the store, all or none.

    Rows in TRL formats carry no model: they are recorded under ``model`` (a name) without token ids.
    Returns the new ids.
    """
    rows = path if isinstance(path, list) else read_jsonl(path)
    items = formats.items_from_rows(rows, model=model, render_chat=render_chat, source=source, user=user)
    if not items:
        what = "the rows given" if isinstance(path, list) else repr(str(path))
        raise InputError(f"{what} hold no rows; nothing was imported")
    return store.insert_many(db, items)

"""Conversations as prompts: a list of messages formatted with the model's chat template."""

from __future__ import annotations

import warnings

from whyllm.errors import InputError
from whyllm.model.base import Model

__all__ = ["PLAIN_STOP", "ROLES", "chat_prompt", "reply_text"]

PLAIN_STOP = ("\nUser:",)
ROLES = ("system", "user", "assistant")


def chat_prompt(model: Model, messages: list[dict[str, str]]) -> str:
    """Prompt text for ``messages`` (``{"role", "content"}`` dicts), ready for the assistant's reply.

    Uses the tokenizer's chat template when there is one; a base model without one gets a plain
    ``User: / Assistant:`` transcript and a warning saying so.
    """
    if not messages:
        raise InputError("the conversation is empty; give at least one user message")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InputError(f"message {m!r} needs a 'role' in {ROLES} and text 'content'")
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise InputError("the conversation has no user message with text; say something to the model")
    if model.has_chat_template:
        return model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    warnings.warn(
        f"{model.name} has no chat template (a base model); using a plain 'User:/Assistant:' transcript",
        UserWarning, stacklevel=2,
    )
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def reply_text(result) -> str:
    """The reply of a chat generation (a :class:`~whyllm.GenerationResult`) without the next-turn marker."""
    text = result.text
    for stop in PLAIN_STOP:
        text = text.split(stop)[0]
    return text.strip()

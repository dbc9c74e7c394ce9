"""The loaded model every whyllm method takes: weights, tokenizer and adapter together."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from whyllm.errors import InputError, PromptTooLongError
from whyllm.model.adapter import ModelAdapter

__all__ = ["Model", "check_prompt", "check_text"]

def check_text(text: object, what: str = "text") -> str:
    """Return ``text`` if it is a string of valid Unicode; else :class:`InputError` naming the position.

    Lone surrogates (code points U+D800..U+DFFF, e.g. from undecodable bytes on a command line) cannot
    be encoded as UTF-8, so no tokenizer can read them.
    """
    if not isinstance(text, str):
        raise InputError(f"the {what} must be text, got {type(text).__name__} {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"the {what} is not valid Unicode: character {e.start} is a lone surrogate "
                         f"({text[e.start]!r}); give text that can be written as UTF-8") from None
    return text


def check_prompt(prompt: object, what: str = "prompt") -> str:
    """Return ``prompt`` if it is non-blank, valid text; else :class:`InputError` (cheap, before loading)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"the {what} is empty ({prompt!r}); give some text for the model to continue")
    return check_text(prompt, what)


@dataclass(eq=False)
class Model:
    """A Hugging Face causal LM, its tokenizer and its :class:`ModelAdapter`.

    Build it with :func:`whyllm.load_model`; methods take it as their first argument.
    """

    hf: torch.nn.Module
    tokenizer: object
    name: str
    adapter: ModelAdapter = field(init=False)

    def __post_init__(self) -> None:
        self.hf.eval()
        self.adapter = ModelAdapter(self.hf)

    @property
    def device(self) -> torch.device:
        """Device the input ids go to (the input embedding's)."""
        return self.adapter.embed.weight.device

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer carries a chat template."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, prompt: str, *, room: int = 0) -> Tensor:
        """Token ids ``(1, pos)`` of ``prompt`` with the model's special prefix (e.g. BOS).

        Args:
            prompt: non-empty text.
            room: tokens that must still fit in the context window after the prompt.

        Raises:
            InputError: empty prompt. PromptTooLongError: longer than the context window.

        """
        check_prompt(prompt)
        bos = getattr(self.tokenizer, "bos_token", None)
        templated = bool(bos) and prompt.startswith(bos)  # e.g. from a chat template: no second BOS
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=not templated)["input_ids"]
        limit = self.adapter.n_ctx
        if ids.shape[1] + room > limit:
            raise PromptTooLongError(
                f"the prompt is {ids.shape[1]} tokens"
                + (f" (+{room} to generate)" if room else "")
                + f" but {self.name} accepts at most {limit}; shorten it"
            )
        return ids.to(self.device)

    def encode_continuation(self, text: str, *, what: str = "target") -> list[int]:
        """Token ids of ``text`` as a continuation (no special tokens).

        Raises:
            InputError: ``text`` is empty or tokenizes to nothing or to the unknown token.

        """
        if not isinstance(text, str) or text == "":
            raise InputError(f"the {what} is empty ({text!r}); give the text the model should continue with")
        check_text(text, what)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if not ids or (unk is not None and unk in ids):
            raise InputError(
                f"the {what} {text!r} does not tokenize for {self.name} (got ids {ids}); "
                "check its spelling and leading space"
            )
        return list(ids)

    def token_texts(self, ids: list[int] | Tensor) -> list[str]:
        """Return the decoded text of each token id (raw, whitespace kept)."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return [self.tokenizer.decode([i]) for i in ids]

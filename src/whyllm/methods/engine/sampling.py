"""Decoding settings and the distribution they sample from (shared by generation and explain_step).

Decoding follows the usual order: logits / temperature, then top-k, then top-p (nucleus), then a draw
from the renormalised distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.engine.limits import MAX_TEMPERATURE, MIN_TEMPERATURE, check_seed

__all__ = ["DecodingSettings", "cut_logits", "sampling_distribution"]


@dataclass(frozen=True)
class DecodingSettings:
    """Validated decoding settings; ``greedy`` (or temperature 0) takes the most likely token.

    Raises:
        InputError: ``max_new_tokens`` < 1, ``temperature`` outside ``[0, MAX_TEMPERATURE]`` (or not
            finite), ``top_k`` < 1, ``top_p`` outside (0, 1], or ``seed`` outside ``0..MAX_SEED``.

    """

    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.temperature, int | float) or not math.isfinite(self.temperature) \
                or not (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE):
            raise InputError(
                f"temperature must be 0 (greedy) or a number from {MIN_TEMPERATURE:g} to "
                f"{MAX_TEMPERATURE:g}, got {self.temperature!r}; use 0 or --greedy for greedy decoding"
            )
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise InputError(
                f"top_k must be an integer >= 1, got {self.top_k!r}; leave it unset to keep every token"
            )
        if self.top_p is not None and not (isinstance(self.top_p, int | float) and 0 < self.top_p <= 1):
            raise InputError(f"top_p must be in (0, 1], got {self.top_p!r}; 1 keeps every token")
        if self.seed is not None:
            check_seed(self.seed)

    @property
    def is_greedy(self) -> bool:
        """True when decoding takes the argmax."""
        return self.greedy or self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as stored in results."""
        return dict(vars(self))


def cut_logits(logits: Tensor, s: DecodingSettings) -> Tensor:
    """Logits / temperature with the tokens top-k and top-p cut set to ``-inf``, ``(..., vocab)``.

    Ties are kept together: every token tied with the k-th most likely survives top-k (as in
    transformers), and every token tied with the least likely token of the nucleus survives top-p, so
    the result never depends on how a sort orders equal values.
    """
    scaled = logits / s.temperature  # (..., vocab)
    if s.top_k is not None and s.top_k < scaled.shape[-1]:
        kth = scaled.topk(s.top_k, dim=-1).values[..., -1:]  # (..., 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if s.top_p is not None and s.top_p < 1:
        probs = scaled.softmax(-1)  # (..., vocab)
        sorted_p = probs.sort(-1, descending=True).values
        before = sorted_p.cumsum(-1) - sorted_p  # mass of the more likely tokens
        kept = before < s.top_p  # the smallest set whose mass reaches top_p
        kept[..., 0] = True  # the likeliest token always (a top_p below float32's range rounds to 0)
        floor = sorted_p.masked_fill(~kept, float("inf")).min(-1, keepdim=True).values  # (..., 1)
        scaled = scaled.masked_fill(probs < floor, float("-inf"))
    return scaled


def sampling_distribution(logits: Tensor, s: DecodingSettings) -> Tensor:
    """Probabilities actually sampled from, ``(..., vocab)``: zero for tokens the settings cut.

    Greedy settings give a one-hot distribution on the argmax.
    """
    if s.is_greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return cut_logits(logits.float(), s).softmax(-1)

"""Target functions: the number an attribution explains, computed from input embeddings.

A target reads log-probabilities at a few positions and adds them with weights:

* next token / a given token: ``log p(t | x)`` at the last position;
* a multi-token continuation ``c``: ``sum_j log p(c_j | x, c_<j)`` (teacher forced: the continuation is
  appended after the input and is not itself attributed);
* contrastive, "why A rather than B": ``log p(A | x) - log p(B | x)`` (A and B may be continuations;
  each gets its own row of the batch when longer than one token);
* per generated token (``n_groups > 1``): one score per output token, the outputs being part of the input;
* sampled: the log-probability under the distribution actually sampled from (``logits / temperature``,
  renormalised over the tokens the top-k/top-p settings kept).

Only the logits of the positions read are computed (``logits_to_keep``), never the whole sequence's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from whyllm.errors import InputError, PromptTooLongError
from whyllm.model.base import Model

__all__ = ["Target", "continuation_target", "per_token_target"]


@dataclass(frozen=True, eq=False)
class Target:
    """A weighted sum of log-probabilities read at positions relative to the input's end.

    Attributes:
        kind: ``next_token``, ``token``, ``continuation``, ``contrast`` or ``sampled``.
        text / ids: the target continuation. foil / foil_ids: the contrast, or ``None``.
        appended: ``(rows, n_app)`` ids appended after the input in each batch row (may be empty).
        read_row / read_off / read_tok / read_weight / read_group: ``(n_reads,)`` per read: batch row,
            position offset from the input's last token (0 = last input token, ``j`` = appended token
            ``j - 1``, negative = earlier input tokens), token id, weight, output group.
        n_groups: number of scores per input (1, or the output length for a per-token matrix).
        temperature / keep: decoding transform applied before the softmax (``keep``: ``(vocab,)`` bool).
    """

    kind: str
    text: str
    ids: tuple[int, ...]
    foil: str | None
    foil_ids: tuple[int, ...] | None
    appended: Tensor
    read_row: Tensor
    read_off: Tensor
    read_tok: Tensor
    read_weight: Tensor
    read_group: Tensor
    n_groups: int = 1
    temperature: float = 1.0
    keep: Tensor | None = None

    @property
    def rows(self) -> int:
        """Batch rows each input needs (one per continuation when they differ)."""
        return int(self.appended.shape[0])

    @property
    def min_offset(self) -> int:
        """Earliest read, as an offset from the input's last token (<= 0)."""
        return int(self.read_off.min())

    def summed(self) -> Target:
        """The same target with every group added into one score."""
        return replace(self, read_group=torch.zeros_like(self.read_group), n_groups=1)

    def logprobs(self, model: Model, embeds: Tensor, *, cache=None) -> Tensor:
        """Log-probabilities at the read positions, ``(batch * rows, n_pos, vocab)``.

        Args:
            model: the model.
            embeds: ``(batch, pos, d_model)`` input embeddings after the cached prefix (all of them
                without a cache).
            cache: key/value cache of a shared prefix, already expanded to ``batch * rows``.
        """
        x = self.sequences(model, embeds)
        positions, _ = self.read_positions(embeds.shape[1])
        out = model.hf(inputs_embeds=x, cache=cache, use_cache=cache is not None,
                       logits_to_keep=positions.to(embeds.device))
        return self.normalise(out.logits)  # (batch * rows, n_pos, vocab)

    def normalise(self, logits: Tensor) -> Tensor:
        """Log-probabilities from logits ``(..., vocab)``: the decoding transform, then the softmax."""
        logits = logits.float()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.keep is not None:
            logits = logits.masked_fill(~self.keep.to(logits.device), float("-inf"))
        return logits.log_softmax(-1)

    def sequences(self, model: Model, embeds: Tensor) -> Tensor:
        """The batch rows the model runs for ``embeds`` ``(batch, pos, d_model)``.

        Each input followed by each row's appended tokens: ``(batch * rows, pos + n_app, d_model)``.
        """
        b = embeds.shape[0]
        if self.appended.shape[1] > 0:
            app = model.adapter.embed(self.appended.to(embeds.device)).to(embeds.dtype)  # (rows, n_app, d)
            return torch.cat([embeds.repeat_interleave(self.rows, 0), app.repeat(b, 1, 1)], dim=1)
        return embeds.repeat_interleave(self.rows, 0) if self.rows > 1 else embeds

    def read_positions(self, length: int) -> tuple[Tensor, Tensor]:
        """The distinct positions read in an input of ``length`` tokens, and each read's index into them."""
        pos = self.read_off + (length - 1)  # (n_reads,)
        if int(pos.min()) < 0:
            raise ValueError("a read position falls inside the cached prefix")
        return torch.unique(pos, return_inverse=True)

    def pick(self, logprobs: Tensor, length: int) -> Tensor:
        """Scores ``(batch, n_groups)`` from :meth:`logprobs` output."""
        _, inverse = self.read_positions(length)
        lp = logprobs.view(-1, self.rows, *logprobs.shape[1:])  # (batch, rows, n_pos, vocab)
        dev = lp.device
        vals = lp[:, self.read_row.to(dev), inverse.to(dev), self.read_tok.to(dev)]  # (batch, n_reads)
        vals = vals * self.read_weight.to(dev)
        out = torch.zeros(lp.shape[0], self.n_groups, device=dev, dtype=vals.dtype)
        return out.index_add(1, self.read_group.to(dev), vals)

    def scores(self, model: Model, embeds: Tensor, *, cache=None) -> Tensor:
        """The target function on a batch of inputs, ``(batch, n_groups)``."""
        return self.pick(self.logprobs(model, embeds, cache=cache), embeds.shape[1])


def _reads(conts: list[tuple[list[int], float]]) -> tuple[Tensor, ...]:
    single = all(len(c) == 1 for c, _ in conts)
    rows, offs, toks, weights = [], [], [], []
    for r, (c, w) in enumerate(conts):
        for j, t in enumerate(c):
            rows.append(0 if single else r)
            offs.append(j)
            toks.append(t)
            weights.append(w)
    n_rows = 1 if single else len(conts)
    width = 0 if single else max(len(c) for c, _ in conts) - 1
    appended = torch.zeros(n_rows, width, dtype=torch.long)
    if not single:
        for r, (c, _) in enumerate(conts):
            padded = (c[:-1] + [c[0]] * width)[:width]  # right padding is never read (causal model)
            appended[r] = torch.tensor(padded, dtype=torch.long)
    return (appended, torch.tensor(rows), torch.tensor(offs), torch.tensor(toks),
            torch.tensor(weights, dtype=torch.float32))


def continuation_target(
    model: Model, n_input: int, target_ids: list[int], text: str, *, foil_ids: list[int] | None = None,
    foil: str | None = None, kind: str | None = None, temperature: float = 1.0, keep: Tensor | None = None,
) -> Target:
    """``log p(target)`` (summed over its tokens), minus ``log p(foil)`` when a foil is given."""
    if foil_ids is not None and list(foil_ids) == list(target_ids):
        raise InputError(f"the target {text!r} and the foil {foil!r} are the same tokens ({target_ids}); "
                         "give a different foil")
    longest = max(len(target_ids), len(foil_ids or []))
    if n_input + longest - 1 > model.adapter.n_ctx:
        raise PromptTooLongError(f"the input ({n_input} tokens) plus the target ({longest}) is longer than "
                                 f"{model.name}'s context window of {model.adapter.n_ctx}; shorten them")
    conts = [(list(target_ids), 1.0)] + ([(list(foil_ids), -1.0)] if foil_ids is not None else [])
    appended, rows, offs, toks, weights = _reads(conts)
    if kind is None:
        kind = "contrast" if foil_ids is not None else "token" if len(target_ids) == 1 else "continuation"
    return Target(
        kind=kind, text=text, ids=tuple(target_ids), foil=foil,
        foil_ids=tuple(foil_ids) if foil_ids else None,
        appended=appended, read_row=rows, read_off=offs, read_tok=toks, read_weight=weights,
        read_group=torch.zeros_like(rows), temperature=temperature, keep=keep,
    )


def per_token_target(target_ids: list[int], text: str) -> Target:
    """One score per output token; the input already ends with all but the last output token."""
    n = len(target_ids)
    offs = torch.arange(n) - (n - 1)
    return Target(
        kind="continuation", text=text, ids=tuple(target_ids), foil=None, foil_ids=None,
        appended=torch.zeros(1, 0, dtype=torch.long), read_row=torch.zeros(n, dtype=torch.long),
        read_off=offs,
        read_tok=torch.tensor(target_ids), read_weight=torch.ones(n), read_group=torch.arange(n), n_groups=n,
    )

"""Shared machinery of the internals methods (lens, components, attention, patching, tracing).

* Token arguments: :func:`token_id` resolves a ``target``/``foil`` text to its first token.
* Recorded runs: :func:`record` runs the model once and keeps every block's call (the keyword
  arguments the model passes it: masks, position embeddings) and its input ``resid_pre``, so
  :func:`run_rows` can later restart the forward pass at any block without recomputing the blocks
  before it.
* Metrics: :class:`Metric` reads the logit difference, logit or probability of the target off a
  final residual stream, computing only the unembedding rows it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whyllm.errors import InputError
from whyllm.model.base import Model
from whyllm.model.hooks import capture, intervene, main_tensor, raw_hooks

__all__ = [
    "Group",
    "attention_weights",
    "Metric",
    "Recording",
    "check_index",
    "default_token",
    "record",
    "recovered_share",
    "replace_at",
    "resolve_positions",
    "rows_per_pass",
    "run_rows",
    "site_activation",
    "token_id",
]

Progress = Callable[[int, int], None]


def token_id(model: Model, text: str, what: str = "target") -> int:
    """First token id of ``text`` as a continuation (``" Paris"`` -> id of ``▁Paris``)."""
    return model.encode_continuation(text, what=what)[0]


def default_token(model: Model, logits: Tensor) -> tuple[str, int]:
    """The most likely next token of a ``(vocab,)`` logit vector, as (text, id)."""
    i = int(logits.argmax())
    return model.token_texts([i])[0], i


def check_index(value: int, size: int, what: str, plural: str) -> int:
    """``value`` made non-negative, or :class:`InputError` naming the valid range."""
    if not isinstance(value, int) or not -size <= value < size:
        raise InputError(f"{what} {value!r} is out of range; this model has {plural} 0..{size - 1}")
    return value % size


def resolve_positions(positions: Sequence[int] | None, n: int) -> tuple[int, ...]:
    """Absolute positions in order, without repeats (negative ones count from the end); all when ``None``."""
    if positions is None:
        return tuple(range(n))
    out: list[int] = []
    for p in positions:
        if not isinstance(p, int) or not -n <= p < n:
            raise InputError(
                f"position {p!r} is out of range; the prompt has positions 0..{n - 1} (or -{n}..-1)"
            )
        if p % n not in out:
            out.append(p % n)
    if not out:
        raise InputError("positions is empty; give at least one position or None for all")
    return tuple(sorted(out))


@dataclass
class Recording:
    """One forward pass, kept so later passes can restart at any block.

    Attributes:
        calls: per block, the positional arguments after the hidden states and the keyword arguments
            the model passed it (masks, position embeddings...).
        resid: ``n_layers + 1`` tensors ``(batch, pos, d_model)``: ``resid_pre`` of every block, then
            the last block's output.
        sites: extra module outputs/inputs captured by name.
        logits: the model's real logits at the last position ``(batch, vocab)`` (``None`` if not run).
    """

    calls: list[tuple[tuple, dict]]
    resid: list[Tensor]
    sites: dict[str, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None


@contextmanager
def _block_calls(blocks: Sequence[nn.Module]) -> Iterator[list]:
    """Record each block's hidden states and the other arguments it is called with."""
    store: list = [None] * len(blocks)

    def make(i: int) -> Callable:
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            if args:
                store[i] = (args[0].detach(), tuple(args[1:]), dict(kwargs))
            else:
                rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                store[i] = (kwargs["hidden_states"].detach(), (), rest)

        return hook

    with raw_hooks(blocks, make, pre=True):
        yield store


@contextmanager
def attention_weights(model: Model, layers: Sequence[int]) -> Iterator[dict[int, Tensor]]:
    """Record the attention weights ``(batch, head, query, key)`` that eager attention modules return.

    (``output_attentions=True`` would make transformers install permanent hooks on the model.)
    """
    store: dict[int, Tensor] = {}
    mods = [model.adapter.part(layer, "attn") for layer in layers]

    def make(i: int) -> Callable:
        def hook(mod: nn.Module, args: tuple, output: object) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if isinstance(weights, Tensor):
                store[layers[i]] = weights.detach()

        return hook

    with raw_hooks(mods, make, pre=False):
        yield store


def record(
    model: Model,
    ids: Tensor | None = None,
    *,
    embeds: Tensor | None = None,
    sites: Mapping[str, nn.Module] | None = None,
    site_inputs: Mapping[str, nn.Module] | None = None,
) -> Recording:
    """Run the model once (last-position logits only), recording what :func:`run_rows` needs.

    Args:
        model: the model.
        ids: input ids ``(1, pos)``.
        embeds: token embeddings ``(batch, pos, d_model)`` instead of ``ids``.
        sites: name -> module whose output to keep.
        site_inputs: name -> module whose first input to keep.
    """
    ad = model.adapter
    feed = {"input_ids": ids} if embeds is None else {"inputs_embeds": embeds}
    with (
        torch.no_grad(),
        _block_calls(ad.blocks) as calls,
        capture({"final": ad.blocks[-1], **(sites or {})}) as outs,
        capture(dict(site_inputs or {}), inputs=True) as ins,
    ):
        logits = model.hf(**feed, use_cache=False, logits_to_keep=1).logits[:, -1]  # (batch, vocab)
    resid = [c[0] for c in calls] + [outs.pop("final")]
    return Recording([(c[1], c[2]) for c in calls], resid, {**outs, **ins}, logits.float())


@dataclass(frozen=True)
class Metric:
    """What a patched run is scored by, read at the last position of the final residual stream.

    ``kind``: ``"logit_diff"`` (target - foil logit), ``"logit"`` (target logit) or ``"prob"``
    (target probability). Logits are the model's real outputs (soft-capped where the model caps).
    """

    kind: str
    target_id: int
    foil_id: int | None = None

    def __call__(self, model: Model, final: Tensor) -> Tensor:
        """Score final residuals ``(batch, d_model)`` -> ``(batch,)``."""
        ad = model.adapter
        if self.kind == "prob":  # needs the whole vocabulary: a few rows at a time
            return torch.cat([self._prob(ad.logits_from_resid(part).float()) for part in final.split(64)])
        logits = self._rows(model, final).float()  # (batch, 1 or 2)
        return logits[:, 0] - logits[:, 1] if self.kind == "logit_diff" else logits[:, 0]

    def _prob(self, logits: Tensor) -> Tensor:
        """Target probability from ``(batch, vocab)`` logits (a new small tensor, not a view)."""
        return (logits[:, self.target_id] - torch.logsumexp(logits, -1)).exp()

    def from_logits(self, logits: Tensor) -> Tensor:
        """Score the model's own logits ``(batch, vocab)`` -> ``(batch,)``."""
        logits = logits.float()
        if self.kind == "prob":
            return self._prob(logits)
        if self.kind == "logit_diff":
            return logits[:, self.target_id] - logits[:, self.foil_id]
        return logits[:, self.target_id]

    def _rows(self, model: Model, final: Tensor) -> Tensor:
        """Soft-capped logits of the target (and foil) only: ``(batch, 1 or 2)``."""
        ad = model.adapter
        ids = [self.target_id] + ([self.foil_id] if self.kind == "logit_diff" else [])
        normed = ad.ln_final(final)  # (batch, d_model)
        if isinstance(ad.unembed, nn.Linear):
            bias = ad.unembed.bias[ids] if ad.unembed.bias is not None else None
            logits = F.linear(normed, ad.unembed.weight[ids], bias)  # (batch, 1 or 2)
            if ad.softcap:
                logits = torch.tanh(logits / ad.softcap) * ad.softcap
            return logits
        return ad.unembed_normed(normed)[:, ids]


@dataclass
class Group:
    """Rows of one sweep that restart the forward pass at the same block.

    Attributes:
        start: block the rows enter (``n_layers``: straight to the read-out).
        x: the rows' input to that block ``(rows, pos, d_model)``.
        edit: optional ``(module in block start, fn)``; ``fn`` rewrites the module's main output (or
            input, see ``edit_inputs``) for these rows only: ``(rows, ...) -> (rows, ...)``.
        edit_inputs: whether ``edit`` rewrites the module's input instead of its output.
    """

    start: int
    x: Tensor
    edit: tuple[nn.Module, Callable[[Tensor], Tensor]] | None = None
    edit_inputs: bool = False


def _rewrite(parts: list[tuple[slice, Callable[[Tensor], Tensor]]]) -> Callable[[Tensor], Tensor]:
    def fn(t: Tensor) -> Tensor:
        out = t.clone()
        for rows, f in parts:
            out[rows] = f(t[rows])
        return out

    return fn


def _run_chunk(model: Model, rec: Recording, groups: list[Group], metric: Metric) -> Tensor:
    """Forward ``groups`` (sorted by start) together; rows join the batch at their start block."""
    ad = model.adapter
    offsets, n = [], 0
    for g in groups:
        offsets.append(slice(n, n + g.x.shape[0]))
        n += g.x.shape[0]
    edits: dict[bool, dict[nn.Module, list]] = {False: {}, True: {}}
    for g, rows in zip(groups, offsets, strict=True):
        if g.edit is not None:
            edits[g.edit_inputs].setdefault(g.edit[0], []).append((rows, g.edit[1]))
    h: Tensor | None = None
    with (
        torch.no_grad(),
        intervene({m: _rewrite(p) for m, p in edits[False].items()}),
        intervene({m: _rewrite(p) for m, p in edits[True].items()}, inputs=True),
    ):
        for layer in range(groups[0].start, ad.n_layers + 1):
            new = [g.x for g in groups if g.start == layer]
            if new:
                h = torch.cat([h, *new]) if h is not None else torch.cat(new)  # (rows so far, pos, d)
            if layer < ad.n_layers:
                args, kwargs = rec.calls[layer]
                h = main_tensor(ad.blocks[layer](h, *args, **kwargs))
        return metric(model, h[:, -1])  # (rows,)


def rows_per_pass(pos: int, max_tokens: int = 16384) -> int:
    """How many rows of ``pos`` tokens :func:`run_rows` puts in one pass (split groups to fit)."""
    return max(1, max_tokens // pos)


def run_rows(
    model: Model,
    rec: Recording,
    groups: list[Group],
    metric: Metric,
    *,
    max_tokens: int = 16384,
    progress: Progress | None = None,
) -> list[Tensor]:
    """Score every group's rows, batching groups up to ``max_tokens`` tokens per pass.

    A row entering at block ``l`` never runs the blocks before ``l``: its input there is already
    known (the corrupted run's residual stream, patched). Groups must each fit in one pass
    (:func:`rows_per_pass`). Returns one ``(rows,)`` tensor per group.
    """
    order = sorted(range(len(groups)), key=lambda i: groups[i].start)
    pos = groups[0].x.shape[1] if groups else 1
    cap = rows_per_pass(pos, max_tokens)
    results: dict[int, Tensor] = {}
    total = sum(g.x.shape[0] for g in groups)
    done = 0
    chunk: list[int] = []

    def flush() -> None:
        nonlocal done
        if not chunk:
            return
        values = _run_chunk(model, rec, [groups[i] for i in chunk], metric)
        n = 0
        for i in chunk:
            k = groups[i].x.shape[0]
            results[i] = values[n : n + k]
            n += k
        done += n
        chunk.clear()
        if progress is not None:
            progress(done, total)

    for i in order:
        rows = sum(groups[j].x.shape[0] for j in chunk)
        if chunk and rows + groups[i].x.shape[0] > cap:
            flush()
        chunk.append(i)
    flush()
    return [results[i] for i in range(len(groups))]


def site_activation(rec: Recording, component: str, layer: int) -> Tensor:
    """Activation ``(batch, pos, width)`` at ``component`` of ``layer``."""
    if component == "resid_pre":
        return rec.resid[layer]
    if component == "resid_post":
        return rec.resid[layer + 1]
    return rec.sites[str(layer)]


def replace_at(src: Tensor, pos: Tensor, heads: Tensor | None, n_heads: int) -> Callable[[Tensor], Tensor]:
    """Row ``r`` gets ``src`` ``(pos, width)`` at position(s) ``pos[r]`` (and head ``heads[r]``)."""

    def fn(t: Tensor) -> Tensor:  # t: (rows, pos, width)
        out = t.clone()
        rows = torch.arange(t.shape[0], device=t.device)
        if heads is None:
            out[rows, pos] = src[pos]
            return out
        view = out.view(*t.shape[:2], n_heads, -1)  # (rows, pos, head, d_head)
        s = src.view(src.shape[0], n_heads, -1)  # (pos, head, d_head)
        if pos.dim() == 1:  # one position per row
            view[rows, pos, heads] = s[pos, heads]
        else:  # pos: (rows, n) positions per row
            view[rows[:, None], pos, heads[:, None]] = s[pos, heads[:, None]]
        return out

    return fn


def recovered_share(values: Tensor, m_clean: float, m_corr: float) -> Tensor:
    """``values`` as the share of the clean - corrupted metric gap they recover (0 corrupted, 1 clean)."""
    if abs(m_clean - m_corr) < 1e-6:
        raise InputError(
            f"the clean and corrupted prompts score the same ({m_clean:.4g}); there is nothing to recover: "
            "pick a corrupted prompt (or a target/foil) for which the model's prediction changes"
        )
    return (values - m_corr) / (m_clean - m_corr) + 0.0  # + 0.0: no negative zeros

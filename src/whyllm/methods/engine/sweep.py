"""Recorded runs, metrics and the batched sweep behind activation patching and causal tracing.

* :func:`record` runs the model once and keeps every block's call (the keyword arguments the model
  passes it: masks, position embeddings) and its input ``resid_pre``, so :func:`run_rows` can restart
  the forward pass at any block without recomputing the blocks before it.
* :class:`Metric` reads the logit difference, logit or probability of the target off a final residual
  stream through the adapter's read-out, computing only the unembedding rows it needs.
* :func:`sweep` scores a grid of :class:`Cell` s: each cell puts a source run's activation at one site
  (layer x position(s), optionally one head) into a base run; rows of all cells join one growing batch
  at their block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from whyllm.errors import InputError
from whyllm.methods.engine.progress import Progress, report
from whyllm.model.base import Model
from whyllm.model.hooks import capture, intervene, main_tensor
from whyllm.model.patches import block_calls

__all__ = [
    "Cell", "Group", "Metric", "Recording", "record", "recovered_share", "replace_at", "rows_per_pass",
    "run_rows", "site_activation", "site_modules", "sweep",
]


@dataclass
class Recording:
    """One forward pass, kept so later passes can restart at any block.

    Attributes:
        calls: per block, the positional arguments after the hidden states and the keyword arguments
            the model passed it (masks, position embeddings...).
        resid: ``n_layers + 1`` tensors ``(batch, pos, d_model)``: ``resid_pre`` of every block, then
            the last block's output.
        sites: extra module outputs/inputs captured by name.
        logits: the model's real logits at the last position ``(batch, vocab)``.
    """

    calls: list[tuple[tuple, dict]]
    resid: list[Tensor]
    sites: dict[str, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None


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
        block_calls(model) as calls,
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

    @classmethod
    def for_tokens(cls, target_id: int, foil_id: int | None) -> Metric:
        """The logit difference when there is a foil, else the target logit."""
        return cls("logit_diff" if foil_id is not None else "logit", target_id, foil_id)

    def __call__(self, model: Model, final: Tensor) -> Tensor:
        """Score final residuals ``(batch, d_model)`` -> ``(batch,)``."""
        ad = model.adapter
        if self.kind == "prob":  # needs the whole vocabulary: a few rows at a time
            return torch.cat([self._prob(ad.logits_for(part).float()) for part in final.split(64)])
        ids = [self.target_id] + ([self.foil_id] if self.kind == "logit_diff" else [])
        logits = ad.logits_for(final, ids).float()  # (batch, 1 or 2)
        return logits[:, 0] - logits[:, 1] if self.kind == "logit_diff" else logits[:, 0]

    def _prob(self, logits: Tensor) -> Tensor:
        """Target probability from ``(batch, vocab)`` logits (a new small tensor, not a view)."""
        return (logits[:, self.target_id] - torch.logsumexp(logits, -1)).exp()

    def from_logits(self, logits: Tensor) -> Tensor:
        """Score the model's own logits ``(batch, vocab)`` -> ``(batch,)``."""
        logits = logits if logits.dtype == torch.float64 else logits.float()  # float64 models stay exact
        if self.kind == "prob":
            return self._prob(logits)
        if self.kind == "logit_diff":
            return logits[:, self.target_id] - logits[:, self.foil_id]
        return logits[:, self.target_id]


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
    model: Model, rec: Recording, groups: list[Group], metric: Metric, *, max_tokens: int = 16384,
    progress: Progress | None = None,
) -> list[Tensor]:
    """Score every group's rows, batching groups up to ``max_tokens`` tokens per pass.

    A row entering at block ``l`` never runs the blocks before ``l``: its input there is already
    known (the base run's residual stream, patched). Groups must each fit in one pass
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
        report(progress, done, total)

    for i in order:
        rows = sum(groups[j].x.shape[0] for j in chunk)
        if chunk and rows + groups[i].x.shape[0] > cap:
            flush()
        chunk.append(i)
    flush()
    return [results[i] for i in range(len(groups))]


def site_modules(model: Model, component: str) -> tuple[dict[str, nn.Module], bool]:
    """The module per layer whose output (or, for heads, input) ``component`` reads; and whether input."""
    ad = model.adapter
    name = {"attn_out": "attn_out", "mlp_out": "mlp_out", "head": "attn_o"}[component]
    return {str(layer): ad.part(layer, name) for layer in range(ad.n_layers)}, component == "head"


def record_sites(model: Model, component: str, ids: Tensor | None = None, *,
                 embeds: Tensor | None = None) -> Recording:
    """:func:`record` keeping ``component``'s activation at every layer (the residual needs nothing more)."""
    if component.startswith("resid"):
        return record(model, ids, embeds=embeds)
    mods, inputs = site_modules(model, component)
    return record(model, ids, embeds=embeds, **({"site_inputs": mods} if inputs else {"sites": mods}))


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


@dataclass(frozen=True)
class Cell:
    """One site of a sweep: where its score goes and what it patches.

    Attributes:
        index: the cell's index in the result grid (layer index first).
        layer: the layer patched.
        positions: position patched (a 0-d tensor) or positions patched together (``(n,)``).
        head: the head patched (component ``head``), else ``None``.
    """

    index: tuple[int, ...]
    layer: int
    positions: Tensor
    head: int | None = None


def _groups(model: Model, component: str, cells: Sequence[Cell], src: Recording, base: Recording,
            copies: int, max_tokens: int) -> tuple[list[Group], list[list[tuple[int, ...]]]]:
    """One group of rows per (layer, chunk of cells); each cell is ``copies`` rows of the base batch."""
    cap = max(1, rows_per_pass(base.resid[0].shape[1], max_tokens) // copies)
    mods = {} if component.startswith("resid") else site_modules(model, component)[0]
    by_layer: dict[int, list[Cell]] = {}
    for c in cells:
        by_layer.setdefault(c.layer, []).append(c)
    groups, owners = [], []
    for layer, live in by_layer.items():
        source, target = site_activation(src, component, layer), site_activation(base, component, layer)
        for k in range(0, len(live), cap):
            part = live[k : k + cap]
            pos = torch.stack([c.positions for c in part]).to(source.device)  # (cells,) or (cells, n)
            pos = pos.repeat_interleave(copies, dim=0)  # (rows, ...)
            heads = None
            if component == "head":
                heads = torch.tensor([c.head for c in part], device=source.device).repeat_interleave(copies)
            fn = replace_at(source[0], pos, heads, model.adapter.n_heads)
            if component.startswith("resid"):
                start = layer + (component == "resid_post")
                groups.append(Group(start, fn(target.repeat(len(part), 1, 1))))
            else:
                x = base.resid[layer].repeat(len(part), 1, 1)  # (rows, pos, d_model)
                groups.append(Group(layer, x, (mods[str(layer)], fn), component == "head"))
            owners.append([c.index for c in part])
    return groups, owners


def sweep(
    model: Model, component: str, cells: Sequence[Cell], src: Recording, base: Recording, metric: Metric,
    grid: Tensor, *, copies: int = 1, max_tokens: int = 16384, progress: Progress | None = None,
) -> Tensor:
    """Score every cell into ``grid`` (cells not given keep their value) and return it.

    Args:
        model: the model.
        component: ``resid_pre``, ``resid_post``, ``attn_out``, ``mlp_out`` or ``head``.
        cells: the sites to patch; leave out those that cannot change the output.
        src: the run whose activations are patched in (batch 1).
        base: the run patched into; its batch is ``copies`` rows (e.g. noise samples).
        metric: the score of a patched run, averaged over the ``copies`` rows.
        grid: the result grid, pre-filled with the base run's score.
        copies: rows of ``base`` per cell.
        max_tokens: tokens per batched pass (memory bound).
        progress: called as ``progress(rows_done, rows_total)``.
    """
    groups, owners = _groups(model, component, cells, src, base, copies, max_tokens)
    for idx, v in zip(owners, run_rows(model, base, groups, metric, max_tokens=max_tokens, progress=progress),
                      strict=True):
        for cell, x in zip(idx, v.reshape(-1, copies).mean(1).tolist(), strict=True):
            grid[cell] = x
    return grid

"""Activation patching and attribution patching (AtP) between a clean and a corrupted prompt.

Activation patching puts the clean run's activation at one site (layer x position, or layer x head)
into the corrupted run and measures the share of the clean - corrupted metric difference it
recovers. It is batched and never recomputes what a patch cannot change:

* a patch at block ``l`` leaves blocks ``0..l-1`` unchanged, so its run starts at block ``l`` from the
  corrupted run's recorded residual stream (rows of a sweep join one growing batch at their block);
* a site whose clean and corrupted activations are identical (every position before the first token
  where the prompts differ) cannot change anything: it scores the corrupted value without a run.

Attribution patching estimates every site at once from one clean pass and one corrupted pass with
its backward pass: effect ~ (clean - corrupted activation) . d metric / d activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from whyllm.errors import InputError, UnknownMethodError
from whyllm.methods.engine.args import (
    default_token,
    resolve_positions,
    same_length,
    select,
    target_and_foil,
    token_id,
)
from whyllm.methods.engine.progress import Progress
from whyllm.methods.engine.sweep import (
    Cell,
    Metric,
    record_sites,
    recovered_share,
    site_activation,
    site_modules,
    sweep,
)
from whyllm.model.base import Model
from whyllm.model.hooks import capture
from whyllm.results.base import meta
from whyllm.results.internals import PatchResult

__all__ = ["COMPONENTS", "METHODS", "attribution_patch", "compare_patching", "patch", "spearman"]

COMPONENTS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head")
METHODS = ("activation", "attribution")


@dataclass(frozen=True)
class _Pair:
    """The validated arguments of a patching run: both prompts' ids and the sites swept."""

    clean_ids: Tensor
    corrupted_ids: Tensor
    layers: tuple[int, ...]
    positions: tuple[int, ...]
    heads: tuple[int, ...]
    target: str | None
    foil: str | None

    def metric(self, model: Model, clean_logits: Tensor, corrupted_logits: Tensor
               ) -> tuple[Metric, float, float]:
        """The metric fixed from both runs' last-position logits ``(1, vocab)``, and its two values.

        Default target: the clean run's top token; default foil: the corrupted run's top token when it
        differs from the target (otherwise the metric is the target logit alone).
        """
        tid, fid = target_and_foil(model, self.target, self.foil, clean_logits[0])
        if self.foil is None:
            fid = default_token(model, corrupted_logits[0])[1]
            fid = None if fid == tid else fid
        m = Metric.for_tokens(tid, fid)
        m_clean, m_corr = float(m.from_logits(clean_logits)[0]), float(m.from_logits(corrupted_logits)[0])
        recovered_share(torch.zeros(()), m_clean, m_corr)  # fail before any sweep if nothing can be recovered
        return m, m_clean, m_corr


def _pair(model: Model, clean: str, corrupted: str, *, target: str | None, foil: str | None, component: str,
          method: str, compare: bool, positions: Sequence[int] | None, layers: Sequence[int] | None,
          heads: Sequence[int] | None) -> _Pair:
    """Validate arguments (cheap checks first) and tokenize both prompts."""
    if component not in COMPONENTS:
        raise UnknownMethodError("component", component, list(COMPONENTS))
    if method not in METHODS:
        raise UnknownMethodError("patching method", method, list(METHODS))
    if compare and method != "attribution":
        raise InputError("compare=True compares attribution patching with real patching; "
                         "it needs method='attribution'")
    ad = model.adapter
    lays = select(layers, ad.n_layers, "layer", "layers")
    hds = select(heads, ad.n_heads, "head", "heads")
    if target is not None:
        token_id(model, target)
    if foil is not None:
        token_id(model, foil, "foil")
    a, b = model.encode(clean), model.encode(corrupted)
    same_length(model, a, b)
    return _Pair(a, b, lays, resolve_positions(positions, a.shape[1]), hds, target, foil)


def _axes(component: str, per_position: bool) -> tuple[str, ...]:
    if component != "head":
        return ("layer", "pos")
    return ("layer", "head", "pos") if per_position else ("layer", "head")


def _cells(s: _Pair, component: str, per_position: bool) -> list[Cell]:
    """Every site of the grid, layer by layer."""
    all_pos = torch.tensor(s.positions)
    cells = []
    for li, layer in enumerate(s.layers):
        if component != "head":
            cells += [Cell((li, j), layer, torch.tensor(p)) for j, p in enumerate(s.positions)]
        elif per_position:
            cells += [Cell((li, i, j), layer, torch.tensor(p), h) for i, h in enumerate(s.heads)
                      for j, p in enumerate(s.positions)]
        else:
            cells += [Cell((li, i), layer, all_pos, h) for i, h in enumerate(s.heads)]
    return cells


def _changes(clean: Tensor, corrupted: Tensor, cell: Cell, n_heads: int) -> bool:
    a, b = clean[0, cell.positions], corrupted[0, cell.positions]
    if cell.head is not None:
        a = a.view(*a.shape[:-1], n_heads, -1)[..., cell.head, :]
        b = b.view(*b.shape[:-1], n_heads, -1)[..., cell.head, :]
    return not torch.equal(a, b)


def _activation(model: Model, s: _Pair, component: str, per_position: bool, max_tokens: int,
                progress: Progress | None) -> tuple[Tensor, Metric, float, float]:
    """Real patching of every cell that can change the output; the others keep the corrupted score.

    A site whose clean and corrupted activations are identical (every position before the first
    token where the prompts differ) cannot change anything.
    """
    clean = record_sites(model, component, s.clean_ids)
    corr = record_sites(model, component, s.corrupted_ids)
    metric, m_clean, m_corr = s.metric(model, clean.logits, corr.logits)
    differ = (s.clean_ids[0] != s.corrupted_ids[0]).nonzero()
    first = int(differ[0]) if len(differ) else s.clean_ids.shape[1]
    live = [c for c in _cells(s, component, per_position)
            if int(c.positions.max()) >= first and _changes(site_activation(clean, component, c.layer),
                                                            site_activation(corr, component, c.layer), c,
                                                            model.adapter.n_heads)]
    sizes = {"layer": len(s.layers), "pos": len(s.positions), "head": len(s.heads)}
    grid = torch.full(tuple(sizes[a] for a in _axes(component, per_position)), m_corr)
    values = sweep(model, component, live, clean, corr, metric, grid, max_tokens=max_tokens,
                   progress=progress)
    return values, metric, m_clean, m_corr


def _grad_modules(model: Model, component: str) -> tuple[dict[str, nn.Module], bool]:
    if component == "resid_pre":
        return {str(i): b for i, b in enumerate(model.adapter.blocks)}, True
    if component == "resid_post":
        return {str(i): b for i, b in enumerate(model.adapter.blocks)}, False
    return site_modules(model, component)


def _attribution(model: Model, s: _Pair, component: str, per_position: bool
                 ) -> tuple[Tensor, Metric, float, float]:
    """AtP: one clean pass, one corrupted pass with a backward pass; returns the metric-change estimate."""
    ad = model.adapter
    mods, inputs = _grad_modules(model, component)
    names = [str(layer) for layer in s.layers]
    with torch.no_grad(), capture(mods, inputs=inputs) as clean:
        clean_logits = model.hf(input_ids=s.clean_ids, use_cache=False, logits_to_keep=1).logits[:, -1]
    with torch.enable_grad():
        embeds = ad.embed(s.corrupted_ids).detach().requires_grad_(True)  # (1, pos, d_model)
        with capture(mods, inputs=inputs, detach=False) as corr:
            logits = model.hf(inputs_embeds=embeds, use_cache=False, logits_to_keep=1).logits[:, -1]
        metric, m_clean, m_corr = s.metric(model, clean_logits.detach(), logits.detach())
        value = metric.from_logits(logits)[0]
        grads = torch.autograd.grad(value, [corr[n] for n in names], allow_unused=True)
    pos = list(s.positions)
    rows = []
    for n, g in zip(names, grads, strict=True):
        delta = (clean[n] - corr[n].detach())[0].float()  # (pos, width)
        g = torch.zeros_like(delta) if g is None else g[0].float()
        if component != "head":
            rows.append((delta * g).sum(-1)[pos])  # (pos_sel,)
            continue
        per = (delta * g).view(delta.shape[0], ad.n_heads, -1).sum(-1)  # (pos, head)
        per = per[pos][:, list(s.heads)]
        rows.append(per.T if per_position else per.sum(0))
    return torch.stack(rows).detach().cpu(), metric, m_clean, m_corr


def _ranks(x: Tensor) -> Tensor:
    """Ranks of a 1-D tensor, ties sharing their average rank."""
    order = x.argsort()
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(x.numel(), dtype=torch.float64)
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, inverse, ranks)
    return (sums / counts)[inverse]


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two equally shaped tensors (all cells; 0 when one is constant)."""
    ra, rb = _ranks(a.reshape(-1).double()), _ranks(b.reshape(-1).double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float(ra @ rb) / denom if denom > 0 else 0.0


def patch(
    model: Model,
    clean: str,
    corrupted: str,
    *,
    target: str | None = None,
    foil: str | None = None,
    component: str = "resid_pre",
    method: str = "activation",
    positions: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    per_position: bool = False,
    compare: bool = False,
    max_tokens: int = 16384,
    progress: Progress | None = None,
) -> PatchResult:
    """Patch clean activations into the corrupted run at every layer x position (or layer x head).

    Args:
        model: from :func:`whyllm.load_model`.
        clean: the prompt whose activations are patched in.
        corrupted: the prompt run with them; the same number of tokens as ``clean``.
        target: the metric is the ``target - foil`` logit difference at the last position; default
            target: the clean run's top token.
        foil: default: the corrupted run's top token when it differs from the target (otherwise the
            metric is the target logit alone).
        component: ``resid_pre``, ``resid_post``, ``attn_out``, ``mlp_out`` or ``head`` (a head's
            output, i.e. its slice of the attention output projection's input).
        method: ``activation`` (real patching) or ``attribution`` (AtP: gradient estimate of every
            site from two forward passes and one backward pass).
        positions: positions swept (``head``: patched together); ``None`` = all.
        layers: layers swept; ``None`` = all.
        heads: heads swept (``component="head"``); ``None`` = all.
        per_position: with ``component="head"``, patch each head at each position separately.
        compare: with ``method="attribution"``, also run real patching and report the Spearman rank
            correlation (``reference`` and ``spearman`` of the result).
        max_tokens: tokens per batched pass (memory bound).
        progress: called as ``progress(rows_done, rows_total)`` during a sweep.

    Returns:
        A :class:`PatchResult` whose ``grid`` is the recovered share (0 = corrupted, 1 = clean).

    Raises:
        InputError: prompts of different token lengths, indices out of range, or prompts the
            metric does not tell apart. UnknownMethodError: unknown component or method.
    """
    s = _pair(model, clean, corrupted, target=target, foil=foil, component=component, method=method,
              compare=compare, positions=positions, layers=layers, heads=heads)
    values = reference = rho = None
    if method == "activation":
        values, m, m_clean, m_corr = _activation(model, s, component, per_position, max_tokens, progress)
        grid = recovered_share(values, m_clean, m_corr)
    else:
        est, m, m_clean, m_corr = _attribution(model, s, component, per_position)
        grid = est / (m_clean - m_corr)
        if compare:
            ref_values = _activation(model, s, component, per_position, max_tokens, progress)[0]
            reference = recovered_share(ref_values, m_clean, m_corr)
            rho = spearman(grid, reference)
    return PatchResult(
        clean_prompt=clean, corrupted_prompt=corrupted, tokens=tuple(model.token_texts(s.clean_ids[0])),
        corrupted_tokens=tuple(model.token_texts(s.corrupted_ids[0])), component=component, method=method,
        metric=m.kind, target_id=m.target_id, target_token=model.token_texts([m.target_id])[0],
        axes=_axes(component, per_position),
        layers=s.layers, positions=s.positions, heads=s.heads if component == "head" else (),
        grid=grid.float(),
        clean=m_clean, corrupted=m_corr, foil_id=m.foil_id,
        foil_token=model.token_texts([m.foil_id])[0] if m.foil_id is not None else None,
        values=values, reference=reference, spearman=rho,
        meta=meta(model, "patch", target=target, foil=foil, component=component, patch_method=method,
                  per_position=per_position, compare=compare),
    )


def attribution_patch(model: Model, clean: str, corrupted: str, **kwargs) -> PatchResult:
    """Attribution patching (AtP): :func:`patch` with ``method="attribution"`` (same arguments)."""
    return patch(model, clean, corrupted, **{**kwargs, "method": "attribution"})


def compare_patching(model: Model, clean: str, corrupted: str, **kwargs) -> PatchResult:
    """AtP with real patching alongside: the result's ``spearman`` says how well they agree."""
    return patch(model, clean, corrupted, **{**kwargs, "method": "attribution", "compare": True})

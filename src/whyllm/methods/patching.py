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
from whyllm.methods._internals import (
    Group,
    Metric,
    Progress,
    Recording,
    check_index,
    default_token,
    record,
    recovered_share,
    replace_at,
    resolve_positions,
    rows_per_pass,
    run_rows,
    site_activation,
    token_id,
)
from whyllm.model.base import Model
from whyllm.model.hooks import capture
from whyllm.results.base import meta
from whyllm.results.internals import PatchResult

__all__ = ["COMPONENTS", "METHODS", "attribution_patch", "compare_patching", "patch", "spearman"]

COMPONENTS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head")
METHODS = ("activation", "attribution")


@dataclass
class Setup:
    """Everything a sweep needs: both prompts' ids, the metric and its clean/corrupted values."""

    clean_ids: Tensor
    corrupted_ids: Tensor
    layers: tuple[int, ...]
    positions: tuple[int, ...]
    heads: tuple[int, ...]
    target: str | None
    foil: str | None
    metric: Metric | None = None  # set by :meth:`score` once both runs' logits are known

    def score(self, model: Model, clean_logits: Tensor, corrupted_logits: Tensor) -> tuple[float, float]:
        """Fix the metric from both runs' last-position logits ``(1, vocab)``; return its two values."""
        self.metric = _metric(model, self.target, self.foil, clean_logits[0], corrupted_logits[0])
        score = self.metric.from_logits
        return float(score(clean_logits)[0]), float(score(corrupted_logits)[0])


def _check_lengths(model: Model, clean: Tensor, corrupted: Tensor) -> None:
    a, b = clean[0].tolist(), corrupted[0].tolist()
    if len(a) == len(b):
        return
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    ta, tb = (model.token_texts(x[first : first + 1]) or ["<end>"] for x in (a, b))
    raise InputError(
        f"the clean prompt is {len(a)} tokens but the corrupted prompt is {len(b)}; they first differ at "
        f"token {first} ({ta[0]!r} vs {tb[0]!r}); patching needs prompts of equal token length: change "
        "words for words that are one token each"
    )


def _metric(model: Model, target: str | None, foil: str | None, clean_logits: Tensor,
            corrupted_logits: Tensor) -> Metric:
    tid = token_id(model, target) if target is not None else default_token(model, clean_logits)[1]
    if foil is not None:
        fid = token_id(model, foil, "foil")
        if fid == tid:
            raise InputError(
                f"target and foil are the same token ({target!r}, {foil!r}); pick a different foil"
            )
    else:
        fid = default_token(model, corrupted_logits)[1]
        fid = None if fid == tid else fid
    return Metric("logit_diff" if fid is not None else "logit", tid, fid)


def setup(model: Model, clean: str, corrupted: str, *, target: str | None, foil: str | None, component: str,
          method: str, positions: Sequence[int] | None, layers: Sequence[int] | None,
          heads: Sequence[int] | None) -> Setup:
    """Validate arguments (cheap checks first) and tokenize both prompts."""
    if component not in COMPONENTS:
        raise UnknownMethodError("component", component, list(COMPONENTS))
    if method not in METHODS:
        raise UnknownMethodError("patching method", method, list(METHODS))
    ad = model.adapter
    lays = tuple(dict.fromkeys(check_index(x, ad.n_layers, "layer", "layers")
                               for x in (range(ad.n_layers) if layers is None else layers)))
    hds = tuple(dict.fromkeys(check_index(x, ad.n_heads, "head", "heads")
                              for x in (range(ad.n_heads) if heads is None else heads)))
    if not lays or not hds:
        raise InputError("no layers or heads selected; give at least one or None for all")
    if target is not None:
        token_id(model, target)
    if foil is not None:
        token_id(model, foil, "foil")
    a, b = model.encode(clean), model.encode(corrupted)
    _check_lengths(model, a, b)
    return Setup(a, b, lays, resolve_positions(positions, a.shape[1]), hds, target, foil)


def site_modules(model: Model, component: str) -> tuple[dict[str, nn.Module], bool]:
    """The module per layer whose output (or, for heads, input) ``component`` patches."""
    ad = model.adapter
    name = {"attn_out": "attn_out", "mlp_out": "mlp_out", "head": "attn_o"}[component]
    return {str(layer): ad.part(layer, name) for layer in range(ad.n_layers)}, component == "head"


def _record(model: Model, ids: Tensor, component: str) -> Recording:
    if component.startswith("resid"):
        return record(model, ids)
    mods, inputs = site_modules(model, component)
    return record(model, ids, **({"site_inputs": mods} if inputs else {"sites": mods}))



def _cells(model: Model, s: Setup, component: str, per_position: bool) -> tuple[tuple[str, ...], list]:
    """Grid axes and, per layer, the list of cells as (grid index, position(s), head or None)."""
    all_pos = torch.tensor(s.positions)
    if component != "head":
        return ("layer", "pos"), [[((j,), torch.tensor(p), None) for j, p in enumerate(s.positions)]
                                  for _ in s.layers]
    if per_position:
        return ("layer", "head", "pos"), [[((i, j), torch.tensor(p), h) for i, h in enumerate(s.heads)
                                           for j, p in enumerate(s.positions)] for _ in s.layers]
    return ("layer", "head"), [[((i,), all_pos, h) for i, h in enumerate(s.heads)] for _ in s.layers]


def _changes(clean: Tensor, corrupted: Tensor, pos: Tensor, head: int | None, n_heads: int) -> bool:
    a, b = clean[0, pos], corrupted[0, pos]
    if head is not None:
        a = a.view(*a.shape[:-1], n_heads, -1)[..., head, :]
        b = b.view(*b.shape[:-1], n_heads, -1)[..., head, :]
    return not torch.equal(a, b)


def _groups(model: Model, s: Setup, component: str, clean: Recording, corr: Recording, cells: list,
            max_tokens: int) -> tuple[list[Group], list[list]]:
    """One group of rows per (layer, chunk of cells that can change the output)."""
    ad = model.adapter
    cap = rows_per_pass(s.clean_ids.shape[1], max_tokens)
    differ = (s.clean_ids[0] != s.corrupted_ids[0]).nonzero()
    first = int(differ[0]) if len(differ) else s.clean_ids.shape[1]  # nothing before it can differ
    groups, owners = [], []
    mods = site_modules(model, component)[0] if not component.startswith("resid") else {}
    for li, layer in enumerate(s.layers):
        src, base = site_activation(clean, component, layer), site_activation(corr, component, layer)
        live = [c for c in cells[li]
                if int(c[1].max()) >= first and _changes(src, base, c[1], c[2], ad.n_heads)]
        for k in range(0, len(live), cap):
            part = live[k : k + cap]
            pos = torch.stack([c[1] for c in part]).to(src.device)  # (rows,) or (rows, n)
            heads = torch.tensor([c[2] for c in part], device=src.device) if component == "head" else None
            fn = replace_at(src[0], pos, heads, ad.n_heads)
            if component.startswith("resid"):
                start = layer + (component == "resid_post")
                groups.append(Group(start, fn(base.expand(len(part), -1, -1))))
            else:
                x = corr.resid[layer].expand(len(part), -1, -1)  # (rows, pos, d_model)
                groups.append(Group(layer, x, (mods[str(layer)], fn), component == "head"))
            owners.append([(li, *c[0]) for c in part])
    return groups, owners


def _activation(model: Model, s: Setup, component: str, per_position: bool, max_tokens: int,
                progress: Progress | None) -> tuple[tuple[str, ...], Tensor, float, float]:
    clean, corr = _record(model, s.clean_ids, component), _record(model, s.corrupted_ids, component)
    m_clean, m_corr = s.score(model, clean.logits, corr.logits)
    recovered_share(torch.zeros(()), m_clean, m_corr)  # fail before the sweep if nothing can be recovered
    axes, cells = _cells(model, s, component, per_position)
    sizes = {"layer": len(s.layers), "pos": len(s.positions), "head": len(s.heads)}
    values = torch.full(tuple(sizes[a] for a in axes), m_corr)
    groups, owners = _groups(model, s, component, clean, corr, cells, max_tokens)
    scores = run_rows(model, corr, groups, s.metric, max_tokens=max_tokens, progress=progress)
    for idx, v in zip(owners, scores, strict=True):
        for cell, x in zip(idx, v.tolist(), strict=True):
            values[cell] = x
    return axes, values, m_clean, m_corr


def _grad_modules(model: Model, component: str) -> tuple[dict[str, nn.Module], bool]:
    if component == "resid_pre":
        return {str(i): b for i, b in enumerate(model.adapter.blocks)}, True
    if component == "resid_post":
        return {str(i): b for i, b in enumerate(model.adapter.blocks)}, False
    return site_modules(model, component)


def _attribution(model: Model, s: Setup, component: str, per_position: bool
                 ) -> tuple[tuple[str, ...], Tensor, float, float]:
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
        m_clean, m_corr = s.score(model, clean_logits.detach(), logits.detach())
        recovered_share(torch.zeros(()), m_clean, m_corr)
        value = s.metric.from_logits(logits)[0]
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
    axes = _cells(model, s, component, per_position)[0]
    return axes, torch.stack(rows).detach().cpu(), m_clean, m_corr


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
    s = setup(model, clean, corrupted, target=target, foil=foil, component=component, method=method,
              positions=positions, layers=layers, heads=heads)
    values = reference = rho = None
    if method == "activation":
        axes, values, m_clean, m_corr = _activation(model, s, component, per_position, max_tokens, progress)
        grid = recovered_share(values, m_clean, m_corr)
    else:
        axes, est, m_clean, m_corr = _attribution(model, s, component, per_position)
        grid = est / (m_clean - m_corr)
        if compare:
            ref_values = _activation(model, s, component, per_position, max_tokens, progress)[1]
            reference = recovered_share(ref_values, m_clean, m_corr)
            rho = spearman(grid, reference)
    m = s.metric
    return PatchResult(
        clean_prompt=clean, corrupted_prompt=corrupted, tokens=tuple(model.token_texts(s.clean_ids[0])),
        corrupted_tokens=tuple(model.token_texts(s.corrupted_ids[0])), component=component, method=method,
        metric=m.kind, target_id=m.target_id, target_token=model.token_texts([m.target_id])[0], axes=axes,
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

"""Causal tracing (ROME style): noise the subject's embeddings, then restore clean states one at a time.

Meng et al. 2022 ("Locating and Editing Factual Associations in GPT"): the corrupted run adds
Gaussian noise (3 times the embeddings' standard deviation by default) to the embeddings of the
subject's tokens, several times with different noise; restoring the clean run's state at one layer and
position shows where the model keeps what it needs to recall the fact. The metric is the target's
probability averaged over the noise samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

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
from whyllm.methods.patching import site_modules
from whyllm.model.base import Model
from whyllm.results.base import meta
from whyllm.results.internals import PatchResult

__all__ = ["TRACE_COMPONENTS", "causal_trace", "embedding_std", "subject_positions"]

TRACE_COMPONENTS = ("resid_pre", "resid_post", "attn_out", "mlp_out")


def subject_positions(model: Model, prompt: str, subject: str | None) -> tuple[int, ...]:
    """Token positions of the first occurrence of ``subject`` in ``prompt`` (via tokenizer offsets)."""
    if not subject:
        raise InputError(
            "causal tracing needs the subject whose embeddings get noised, e.g. subject='France' for "
            "'The capital of France is'; give it with subject= (CLI: --trace-subject)"
        )
    start = prompt.find(subject)
    if start < 0:
        raise InputError(
            f"the subject {subject!r} does not occur in the prompt {prompt!r}; copy it from the prompt"
        )
    end = start + len(subject)
    ids = model.encode(prompt)[0].tolist()
    enc = model.tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
    if enc["input_ids"] != ids or "offset_mapping" not in enc:
        raise InputError(
            f"{model.name}'s tokenizer gives no usable character offsets; cannot locate {subject!r}"
        )
    pos = tuple(i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start)
    if not pos:
        raise InputError(f"the subject {subject!r} covers no token of the prompt")
    return pos


def embedding_std(model: Model, samples: int = 8192) -> float:
    """Standard deviation of the (scaled) token embeddings over an even spread of the vocabulary."""
    vocab = model.adapter.embed.weight.shape[0]
    ids = torch.arange(0, vocab, max(1, vocab // samples), device=model.device)
    with torch.no_grad():
        return float(model.adapter.embed(ids[None]).float().std())


def _groups(
    model: Model, component: str, layers: tuple[int, ...], positions: tuple[int, ...], clean: Recording,
    corr: Recording, samples: int, first: int,
) -> tuple[list[Group], list[list[tuple[int, int]]]]:
    cap = max(1, rows_per_pass(clean.resid[0].shape[1]) // samples)
    mods = {} if component.startswith("resid") else site_modules(model, component)[0]
    live = [(j, p) for j, p in enumerate(positions) if p >= first]  # the noise cannot reach earlier ones
    groups, owners = [], []
    for li, layer in enumerate(layers):
        src = site_activation(clean, component, layer)  # (1 | S, pos, width)
        base = site_activation(corr, component, layer)
        for k in range(0, len(live), cap):
            part = live[k : k + cap]
            pos = torch.tensor([p for _, p in part], device=src.device).repeat_interleave(samples)  # (rows,)
            fn = replace_at(src[0], pos, None, model.adapter.n_heads)
            if component.startswith("resid"):
                start = layer + (component == "resid_post")
                groups.append(Group(start, fn(base.repeat(len(part), 1, 1))))
            else:
                groups.append(Group(layer, corr.resid[layer].repeat(len(part), 1, 1), (mods[str(layer)], fn)))
            owners.append([(li, j) for j, _ in part])
    return groups, owners


def causal_trace(
    model: Model,
    prompt: str,
    *,
    target: str | None = None,
    subject: str | None = None,
    noise: float | None = None,
    samples: int = 10,
    seed: int = 0,
    component: str = "resid_pre",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> PatchResult:
    """Where does the model recall a fact? Restore clean states into a run with a noised subject.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: a factual prompt, e.g. ``"The capital of France is"``.
        target: the answer token (first token of the text); default the model's top prediction.
        subject: the part of ``prompt`` whose token embeddings are noised (required), e.g. ``"France"``.
        noise: standard deviation of the noise; default 3 times :func:`embedding_std`.
        samples: noise draws averaged (rows of one batch).
        seed: random seed of the noise.
        component: state restored: ``resid_pre`` (layer 0 = embeddings), ``resid_post``, ``attn_out``
            or ``mlp_out``.
        layers: layers to restore at; ``None`` = all.
        positions: positions to restore at; ``None`` = all.
        progress: called as ``progress(rows_done, rows_total)``.

    Returns:
        A :class:`PatchResult` (``method="causal_trace"``, ``metric="prob"``) whose grid is the share
        of the clean - corrupted target probability recovered by each restored state.
    """
    if component not in TRACE_COMPONENTS:
        raise UnknownMethodError("causal tracing component", component, list(TRACE_COMPONENTS))
    if not isinstance(samples, int) or samples < 1:
        raise InputError(f"samples must be a positive integer, got {samples!r}")
    ad = model.adapter
    subj = subject_positions(model, prompt, subject)
    lays = tuple(dict.fromkeys(check_index(x, ad.n_layers, "layer", "layers")
                               for x in (range(ad.n_layers) if layers is None else layers)))
    ids = model.encode(prompt)  # (1, pos)
    pos = resolve_positions(positions, ids.shape[1])
    scale = 3 * embedding_std(model) if noise is None else float(noise)
    mods, inputs = site_modules(model, component) if not component.startswith("resid") else ({}, False)
    kw = {"site_inputs" if inputs else "sites": mods}
    clean = record(model, ids, **kw)
    tid = token_id(model, target) if target is not None else default_token(model, clean.logits[0])[1]
    with torch.no_grad():
        x = ad.embed(ids).repeat(samples, 1, 1)  # (S, pos, d_model)
    gen = torch.Generator().manual_seed(seed)
    x[:, list(subj)] += scale * torch.randn(samples, len(subj), x.shape[-1], generator=gen).to(x)
    corr = record(model, embeds=x, **kw)
    corr = Recording(clean.calls, corr.resid, corr.sites, corr.logits)  # calls recorded at batch 1
    metric = Metric("prob", tid)
    m_clean = float(metric.from_logits(clean.logits)[0])
    m_corr = float(metric.from_logits(corr.logits).mean())
    values = torch.full((len(lays), len(pos)), m_corr)
    groups, owners = _groups(model, component, lays, pos, clean, corr, samples, min(subj))
    for cells, v in zip(owners, run_rows(model, corr, groups, metric, progress=progress), strict=True):
        for cell, x_ in zip(cells, v.reshape(-1, samples).mean(1).tolist(), strict=True):
            values[cell] = x_
    tokens = tuple(model.token_texts(ids[0]))
    return PatchResult(
        clean_prompt=prompt, corrupted_prompt=None, tokens=tokens, corrupted_tokens=tokens,
        component=component,
        method="causal_trace", metric="prob", target_id=tid, target_token=model.token_texts([tid])[0],
        axes=("layer", "pos"), layers=lays, positions=pos,
        grid=recovered_share(values, m_clean, m_corr).float(),
        clean=m_clean, corrupted=m_corr, values=values,
        meta=meta(model, "causal_trace", target=target, subject=subject, subject_positions=list(subj),
                  noise=scale, samples=samples, seed=seed, component=component),
    )

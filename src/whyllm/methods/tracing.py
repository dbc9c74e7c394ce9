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
from whyllm.methods.engine.args import check_int, resolve_positions, select, target_and_foil
from whyllm.methods.engine.limits import MAX_SAMPLES, check_finite, check_seed, require_memory
from whyllm.methods.engine.progress import Progress
from whyllm.methods.engine.sweep import Cell, Metric, Recording, record_sites, recovered_share, sweep
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
    check_int(samples, "samples", maximum=MAX_SAMPLES)
    check_seed(seed)
    if noise is not None:
        check_finite(noise, "noise", low=0, low_open=True)
    ad = model.adapter
    subj = subject_positions(model, prompt, subject)
    lays = select(layers, ad.n_layers, "layer", "layers")
    ids = model.encode(prompt)  # (1, pos)
    pos = resolve_positions(positions, ids.shape[1])
    # the noised run is recorded at every block: samples x pos x d_model floats per layer
    need = samples * ids.shape[1] * ad.d_model * 4 * (ad.n_layers + 3)
    require_memory(need, f"causal tracing with {samples} noise samples", "use fewer samples", model.device)
    scale = 3 * embedding_std(model) if noise is None else float(noise)
    clean = record_sites(model, component, ids)
    tid, _ = target_and_foil(model, target, None, clean.logits[0])
    with torch.no_grad():
        x = ad.embed(ids).repeat(samples, 1, 1)  # (S, pos, d_model)
    gen = torch.Generator().manual_seed(seed)
    x[:, list(subj)] += scale * torch.randn(samples, len(subj), x.shape[-1], generator=gen).to(x)
    corr = record_sites(model, component, embeds=x)
    corr = Recording(clean.calls, corr.resid, corr.sites, corr.logits)  # calls recorded at batch 1
    metric = Metric("prob", tid)
    m_clean = float(metric.from_logits(clean.logits)[0])
    m_corr = float(metric.from_logits(corr.logits).mean())
    # the noise cannot reach positions before the subject: restoring them changes nothing
    cells = [Cell((li, j), layer, torch.tensor(p)) for li, layer in enumerate(lays)
             for j, p in enumerate(pos) if p >= min(subj)]
    grid = torch.full((len(lays), len(pos)), m_corr)
    values = sweep(model, component, cells, clean, corr, metric, grid, copies=samples, progress=progress)
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

"""Circuits: which paths through the model carry the answer, scored by edge attribution, checked by ablation.

:func:`circuit` scores every edge of the model's graph (:mod:`~whyllm.methods.circuits.graph`) with
edge attribution patching: the score of edge (writer -> reader input) is
``(what the writer wrote in the clean run - in the corrupted run) . d metric / d reader input``, an
estimate of how much the metric falls when that one edge carries the corrupted value instead. Plain EAP
takes the gradient at the clean run (one backward pass); EAP-IG (Hanna et al. 2024) averages it over
``steps`` inputs interpolated between the corrupted and the clean embeddings, which follows the metric
through saturation (``steps`` backward passes, batched). Without a corrupted prompt, a node's corrupted
value is its mean over the clean prompt's positions (the first, attention-sink position left out).

The scores are then checked by ablation (:func:`~whyllm.methods.circuits.passes.ablation_pass`): the
top-N edges are kept and every other edge is ablated, for a curve of N, against random circuits of the
same size. Normalised faithfulness = (m(circuit) - m(corrupted)) / (m(clean) - m(corrupted)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from whyllm.errors import InputError, UnknownMethodError
from whyllm.methods.circuits.graph import Graph, build_graph
from whyllm.methods.circuits.passes import ablation_pass, gradient_pass, writer_outputs
from whyllm.methods.engine.args import check_int, default_token, same_length, target_and_foil
from whyllm.methods.engine.direct import DirectActivations, capture_direct, decompose
from whyllm.methods.engine.progress import Progress, report
from whyllm.methods.engine.sweep import Metric
from whyllm.model.base import Model, check_prompt
from whyllm.model.hooks import capture
from whyllm.model.patches import attention_weights, eager_attention
from whyllm.results.base import meta
from whyllm.results.circuits import CircuitAttention, CircuitLens, CircuitNeuron, CircuitNode, CircuitResult

__all__ = ["METHODS", "circuit"]

METHODS = ("eap-ig", "eap")
_MEMORY = 256 * 2**20  # bytes of writer outputs per ablation pass


def _check(method: str, steps: int, edges: int | None, share: float | None, random_samples: int) -> None:
    if method not in METHODS:
        raise UnknownMethodError("circuit method", method, list(METHODS))
    check_int(steps, "steps", maximum=256)
    check_int(random_samples, "random_samples", minimum=0, maximum=16)
    if edges is not None and share is not None:
        raise InputError("give the circuit size as edges=N or as share=S, not both")
    if share is not None and not (isinstance(share, int | float) and 0 < share <= 1):
        raise InputError(f"share must be a number in (0, 1], got {share!r}")
    if edges is not None:
        check_int(edges, "edges (the circuit size)")


def _baseline(model: Model, ids: Tensor, corrupted_ids: Tensor | None) -> Tensor:
    """Input embeddings of the corrupted prompt, or the clean ones' mean over positions after the first."""
    ad = model.adapter
    with torch.no_grad():
        if corrupted_ids is not None:
            return ad.embed(corrupted_ids)
        clean = ad.embed(ids)
    return _position_mean(clean[None], _starts_with_bos(model, ids))[0]


def _position_mean(x: Tensor, keep_first: bool) -> Tensor:
    """``x`` ``(..., batch, pos, d)`` with every position replaced by the mean over positions 1..

    With ``keep_first`` the first position (a beginning-of-text token every prompt shares, the attention
    sink) keeps its own value, as it would in any corrupted prompt; else it is averaged and ablated too.
    A one-token prompt is its own mean.
    """
    if x.shape[-2] == 1:
        return x
    mean = x[..., 1:, :].mean(-2, keepdim=True).expand_as(x).clone()
    if keep_first:
        mean[..., 0, :] = x[..., 0, :]
    return mean


def _edge_count(graph: Graph, n_pos: int, per_position: bool) -> int:
    """Edges of ``graph`` on an ``n_pos``-token prompt: every edge per position, or the embeddings' alone."""
    valid = graph.valid.sum().item()
    return int(valid * n_pos if per_position else valid + graph.valid[:, 0].sum().item() * (n_pos - 1))


def _components(graph: Graph, kept: Tensor) -> list[CircuitNode]:
    """Component nodes (positions merged) that the kept ``(end, writer, pos)`` edges touch, in graph order."""
    used = {graph.ends[int(e)].node for e in kept[:, 0]} | {graph.writers[int(w)] for w in kept[:, 1]}
    return [n for i, n in enumerate(graph.nodes) if i in used]


def _starts_with_bos(model: Model, ids: Tensor) -> bool:
    """Whether the prompt's first token is the tokenizer's beginning-of-text token."""
    bos = getattr(model.tokenizer, "bos_token_id", None)
    return bos is not None and int(ids[0, 0]) == bos


def _edges(graph: Graph, scores: Tensor, per_position: bool) -> tuple[Tensor, Tensor]:
    """Valid edges as ``(n, 3)`` (end, writer, position) indices and their scores, by |score| descending.

    ``scores`` is ``(end, writer, pos)``. With positions merged an edge from a head or MLP sums its positions
    (position ``-1``: all of them), while the embeddings stay one writer per token.
    """
    valid = graph.valid[:, :, None].expand_as(scores)
    if per_position:
        idx = valid.nonzero()
        values = scores[idx[:, 0], idx[:, 1], idx[:, 2]]
    else:
        tokens = valid[:, :1].nonzero()  # the embeddings of each position (writer 0)
        merged = graph.valid[:, 1:].nonzero()  # every other writer, positions summed
        merged = torch.cat([merged[:, :1], merged[:, 1:] + 1, torch.full_like(merged[:, :1], -1)], 1)
        idx = torch.cat([tokens, merged])
        summed = scores.sum(-1)[merged[:, 0], merged[:, 1]]
        values = torch.cat([scores[tokens[:, 0], 0, tokens[:, 2]], summed])
    order = values.abs().argsort(descending=True, stable=True)
    return idx[order], values[order]


def _sizes(n: int, sizes: Sequence[int] | None) -> list[int]:
    if sizes is None:
        return sorted({max(1, round(math.exp(math.log(n) * k / 9))) for k in range(10)})
    out = sorted({check_int(s, "circuit size") for s in sizes})
    if not out:
        raise InputError("sizes is empty; give at least one circuit size or None for the default curve")
    if out[-1] > n:
        raise InputError(f"circuit size {out[-1]} is larger than the graph ({n} edges)")
    return out


def _masks(graph: Graph, idx: Tensor, keep: list[Tensor], n_pos: int) -> Tensor:
    """``(end, rows, writer, pos)`` ablation masks: every valid edge not in ``keep[row]`` is ablated."""
    ablate = graph.valid[:, None, :, None].expand(-1, len(keep), -1, n_pos).clone()
    for row, chosen in enumerate(keep):
        e, w, p = idx[chosen].unbind(-1)
        every = p < 0  # an edge over every position
        ablate[e[every], torch.full_like(e[every], row), w[every]] = False
        ablate[e[~every], torch.full_like(e[~every], row), w[~every], p[~every]] = False
    return ablate


def _ablate(
    model: Model,
    graph: Graph,
    ids: Tensor,
    corrupted: Tensor,
    masks: Tensor,
    metric: Metric,
    progress: Progress | None,
) -> Tensor:
    """The metric for every row of ``masks``, in passes small enough for memory."""
    per_row = corrupted.numel() * 4 * 3
    chunk = max(1, _MEMORY // per_row)
    out = []
    for start in range(0, masks.shape[1], chunk):
        out.append(ablation_pass(model, graph, ids, corrupted, masks[:, start : start + chunk], metric))
        report(progress, min(start + chunk, masks.shape[1]), masks.shape[1])
    return torch.cat(out)


@torch.no_grad()
def _neurons(model: Model, acts: DirectActivations, grads: list[Tensor], tid: int, fid: int | None,
             mlps: list[int], top_k: int, keep_first: bool | None) -> tuple[CircuitNeuron, ...]:
    """Top neurons of the circuit's MLPs: (clean - corrupted activation) . gradient, with direct effects.

    ``keep_first`` is ``None`` with a corrupted prompt (batch row 1), else the mean ablation's choice.
    """
    ad = model.adapter
    last = acts.outputs["final"].shape[1] - 1
    direct = decompose(model, acts.at(last), tid, fid).neuron_values
    frozen_final = ad.frozen_norm(ad.ln_final, acts.outputs["final"][0, last])
    found, vectors = [], []
    for layer in mlps:
        a = acts.inputs[f"neurons{layer}"].float()  # (batch, pos, d_mlp)
        base = _position_mean(a[:1], keep_first)[0] if keep_first is not None else a[1]
        score = ((a[0] - base) * grads[layer].float()).sum(0)  # (d_mlp,)
        top = score.abs().topk(min(top_k, score.numel())).indices
        w = ad.mlp_down_weight(layer)[top].float()  # (top, d_model): what each neuron writes per unit
        if ad.spec.mlp_post_norm:
            w = ad.frozen_norm(ad.part(layer, "mlp_out"), acts.inputs[f"mlp_post{layer}"][0, last])(w)
        vectors.append(frozen_final(w))
        found += [(layer, n, float(score[n]), float(direct[layer][n]), float(a[0, last, n]))
                  for n in top.tolist()]
    if not found:
        return ()
    raised = (torch.cat(vectors) @ ad.unembed.weight.float().T).topk(5).indices  # one read of the unembedding
    return tuple(CircuitNeuron(f"L{layer}.mlp", layer, n, sc, d, act, tuple(model.token_texts(ids.tolist())))
                 for (layer, n, sc, d, act), ids in zip(found, raised, strict=True))


def _attention(model: Model, heads: list[CircuitNode], weights: dict[int, Tensor], tokens: tuple[str, ...],
               top: int = 3) -> tuple[CircuitAttention, ...]:
    """Each head's strongest keys from the last position of the clean prompt (row 0 of the batch)."""
    out = []
    for n in heads:
        row = weights[n.layer][0, n.head, -1].float()  # (key,)
        best = row.topk(min(top, row.numel()))
        out.append(CircuitAttention(n.id, n.layer, n.head, tuple(
            (int(k), tokens[int(k)], float(w)) for w, k in zip(best.values, best.indices, strict=True))))
    return tuple(out)


@torch.no_grad()
def _lens(model: Model, resid: dict[str, Tensor], top: int = 3) -> tuple[CircuitLens, ...]:
    """The logit lens at the last position of the clean prompt after every layer (one unembedding pass)."""
    layers = range(model.adapter.n_layers)
    probs = model.adapter.logits_for(torch.stack([resid[str(layer)][0, -1] for layer in layers])).float()
    best = probs.softmax(-1).topk(top)  # (layer, top)
    rows = zip(layers, best.indices.tolist(), best.values.tolist(), strict=True)
    return tuple(CircuitLens(layer, tuple(zip(model.token_texts(ids), values, strict=True)))
                 for layer, ids, values in rows)


def circuit(
    model: Model,
    prompt: str,
    *,
    target: str | None = None,
    foil: str | None = None,
    corrupted: str | None = None,
    method: str = "eap-ig",
    steps: int = 8,
    per_position: bool = False,
    edges: int | None = None,
    share: float | None = None,
    sizes: Sequence[int] | None = None,
    random_samples: int = 2,
    neurons: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
) -> CircuitResult:
    """Score every edge of the model's graph, prune to a circuit and check it by ablation.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the clean prompt.
        target: the answer explained; default: the clean run's top token.
        foil: the metric is the target - foil logit difference; default: the corrupted run's top token
            when it differs from the target, else the target logit alone.
        corrupted: a prompt of the same token length whose activations are the ablated values; default:
            each node's mean over the clean prompt's positions (mean ablation).
        method: eap-ig (integrated gradients between corrupted and clean inputs) or eap (one gradient).
        steps: interpolation steps of eap-ig.
        per_position: keep every token position a separate node (edges connect the same position).
        edges: keep the top-N edges by absolute score as the circuit.
        share: keep the fewest top edges whose absolute scores add up to this share of the total.
        sizes: circuit sizes (edges) of the faithfulness curve; default: 10 sizes from 1 to every edge.
        random_samples: random circuits of each curve size, the baseline the curve is compared with.
        neurons: top neurons listed for each MLP in the circuit.
        seed: seed of the random circuits.
        progress: called as ``progress(rows_done, rows_total)`` during the ablation runs.

    Returns:
        A :class:`~whyllm.results.circuits.CircuitResult`. Without ``edges`` or ``share`` the circuit is
        the smallest curve size whose faithfulness reaches 0.8 (the largest if none does).

    Raises:
        InputError: prompts of different token lengths, sizes of 0 or beyond the graph, a target the
            prompts do not tell apart. UnknownMethodError: unknown method.
        UnsupportedModelError: the attention's query/key/value projections cannot be found.
    """
    check_prompt(prompt)
    _check(method, steps, edges, share, random_samples)
    check_int(neurons, "neurons", minimum=0, maximum=100)
    graph = build_graph(model)
    ad = model.adapter
    ids = model.encode(prompt)
    corrupted_ids = None
    if corrupted is not None:
        corrupted_ids = model.encode(check_prompt(corrupted, "corrupted prompt"))
        same_length(model, ids, corrupted_ids)
    n_pos = ids.shape[1]
    n_edges = _edge_count(graph, n_pos, per_position)  # sizes are checked before any pass
    curve_sizes = _sizes(n_edges, sizes)
    if edges is not None and edges > n_edges:
        raise InputError(f"circuit size {edges} is larger than the graph ({n_edges} edges)")
    batch = ids if corrupted_ids is None else torch.cat([ids, corrupted_ids])
    layers = list(range(ad.n_layers))
    blocks = {str(layer): block for layer, block in enumerate(ad.blocks)}
    with (
        torch.no_grad(),
        eager_attention(model),
        attention_weights(model, layers) as weights,
        capture(blocks) as resid,
        capture_direct(model) as acts,
    ):
        logits = model.hf(input_ids=batch, use_cache=False, logits_to_keep=1).logits[:, -1].float()
    tid, fid = target_and_foil(model, target, foil, logits[0])
    if foil is None and corrupted_ids is not None:
        fid = default_token(model, logits[1])[1]
        fid = None if fid == tid else fid
    metric = Metric.for_tokens(tid, fid)
    with torch.no_grad():
        writers = writer_outputs(model, acts)  # (writer, batch, pos, d_model)
    keep_first = None if corrupted_ids is not None else _starts_with_bos(model, ids)
    base_writers = writers[:, 1] if keep_first is None else _position_mean(writers[:, :1], keep_first)[:, 0]
    delta = writers[:, 0] - base_writers  # (writer, pos, d_model)

    n = steps if method == "eap-ig" else 1
    clean_e, base_e = ad.embed(ids).detach(), _baseline(model, ids, corrupted_ids)
    alphas = torch.arange(1, n + 1, dtype=clean_e.dtype)[:, None, None] / n
    grads = gradient_pass(model, graph, base_e + alphas * (clean_e - base_e), metric, slice(None))
    scores = torch.einsum("wpm,epm->ewp", delta, grads.ends).detach()  # (end, writer, pos)
    scores = scores * graph.valid[:, :, None]
    idx, values = _edges(graph, scores, per_position)
    if share is not None:
        cum = values.abs().cumsum(0) / values.abs().sum().clamp_min(1e-30)
        edges = min(n_edges, int((cum < share - 1e-9).sum()) + 1)

    m_clean = float(metric.from_logits(logits[:1])[0])
    if corrupted_ids is not None:  # every edge ablated is exactly the corrupted run
        m_corr = float(metric.from_logits(logits[1:2])[0])
    else:
        everything = _masks(graph, idx, [idx[:0, 0]], n_pos)
        m_corr = float(_ablate(model, graph, ids, base_writers, everything, metric, None)[0])
    if not abs(m_clean - m_corr) > 1e-6 * max(1.0, abs(m_clean)):
        raise InputError(
            f"the clean and ablated runs give the same metric ({m_clean:.4g}); the corrupted "
            "input must change the answer for a circuit to carry it: choose another "
            "corrupted prompt, target or foil"
        )
    gen = torch.Generator().manual_seed(seed)
    keep = [torch.arange(k) for k in curve_sizes]
    keep += [torch.randperm(n_edges, generator=gen)[:k] for k in curve_sizes for _ in range(random_samples)]
    if edges is not None and edges not in curve_sizes:
        keep.append(torch.arange(edges))
    m = torch.full((len(keep),), m_clean, dtype=torch.float64)  # keeping every edge is the clean run
    run = [i for i, k in enumerate(keep) if len(k) < n_edges]
    if run:
        m[run] = _ablate(model, graph, ids, base_writers, _masks(graph, idx, [keep[i] for i in run], n_pos),
                         metric, progress).double()
    faith = (m - m_corr) / (m_clean - m_corr)
    k = len(curve_sizes)
    curve = faith[:k]
    rand = faith[k : k + k * random_samples].view(k, random_samples) if random_samples else None
    chosen_by = "share" if share is not None else "edges" if edges is not None else "faithfulness"
    if edges is None:  # the smallest measured size recovering 80% (the largest if none does)
        reached = [size for size, f in zip(curve_sizes, curve.tolist(), strict=True) if f >= 0.8]
        edges = reached[0] if reached else curve_sizes[-1]
    faithfulness = float(curve[curve_sizes.index(edges)] if edges in curve_sizes else faith[-1])

    mlp_layers = sorted({n.layer for n in _components(graph, idx[:edges]) if n.kind == "mlp"})
    top = _neurons(model, acts, grads.neuron_grads, tid, fid, mlp_layers, neurons, keep_first)
    heads = [n for n in graph.nodes if n.kind == "head"]
    nodes, source, target_idx = _graph_nodes(graph, idx, per_position, n_pos)
    tokens = tuple(model.token_texts(ids[0]))
    return CircuitResult(
        prompt=prompt,
        tokens=tokens,
        corrupted_prompt=corrupted,
        method=method,
        steps=n,
        ablation="corrupted" if corrupted is not None else "mean",
        per_position=per_position,
        metric=metric.kind,
        target_id=tid,
        target_token=model.token_texts([tid])[0],
        foil_id=fid,
        foil_token=model.token_texts([fid])[0] if fid is not None else None,
        clean=m_clean,
        corrupted=m_corr,
        nodes=nodes,
        edge_source=source,
        edge_target=target_idx,
        edge_port=tuple(graph.ends[int(e)].port for e in idx[:, 0]),
        scores=values.float(),
        circuit_edges=edges,
        chosen_by=chosen_by,
        faithfulness=faithfulness,
        curve_sizes=tuple(curve_sizes),
        curve=curve.float(),
        random_curve=rand.mean(1).float() if rand is not None else None,
        random_std=rand.std(1, correction=0).float() if rand is not None else None,
        neurons=top,
        attention=_attention(model, heads, weights, tokens),
        lens=_lens(model, resid),
        meta=meta(
            model,
            "circuit",
            target=target,
            foil=foil,
            corrupted=corrupted,
            circuit_method=method,
            steps=n,
            per_position=per_position,
            edges=edges,
            share=share,
            sizes=list(curve_sizes),
            random_samples=random_samples,
            seed=seed,
        ),
    )


def _graph_nodes(
    graph: Graph, idx: Tensor, per_position: bool, n_pos: int
) -> tuple[tuple[CircuitNode, ...], Tensor, Tensor]:
    """Result nodes (per position when asked) and each edge's source/target index into them."""
    ends_node = torch.tensor([e.node for e in graph.ends])
    writers_node = torch.tensor(graph.writers)
    src, dst = writers_node[idx[:, 1]], ends_node[idx[:, 0]]
    if per_position:
        nodes = tuple(CircuitNode(f"{n.id}@{p}", n.kind, n.layer, n.head, p)
                      for n in graph.nodes for p in range(n_pos))
        return nodes, src * n_pos + idx[:, 2], dst * n_pos + idx[:, 2]
    # the embeddings of each token are nodes of their own (graph node 0); the other nodes follow them
    tokens = tuple(CircuitNode(f"embed@{p}", "embed", None, None, p) for p in range(n_pos))
    src = torch.where(src == 0, idx[:, 2], src + n_pos - 1)
    return tokens + graph.nodes[1:], src, dst + n_pos - 1

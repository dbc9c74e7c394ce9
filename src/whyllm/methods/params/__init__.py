"""Parameter attribution: which weights drive one prediction, with a built-in check.

One forward and one backward pass give the gradient of the metric (target log-probability, or the
target - foil logit difference) with respect to every parameter. ``grad * weight`` summed over a
group is the first-order change of the metric if the group were zeroed; summed over one row, one
MLP neuron's down-projection column or one head's output-projection columns, the same for that unit.

Scale invariance: when a norm follows a projection (Gemma's q/k norms and post-sublayer norms), the
metric does not change when the projection is rescaled, so ``sum(grad * weight)`` over the whole
matrix is ~0 *by construction* while its rows still matter. Such groups are detected (relative score
``|sum g.W| / sum |g.W|`` tiny and, with the check, an exact ``1 - epsilon`` rescale changes nothing)
and flagged; their rows, neurons and heads carry the attribution, checked by exactly zeroing the top
ones. The group check's correlation uses only groups whose measured change is not negligible.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from whyllm.errors import InputError
from whyllm.methods.engine.args import token_id
from whyllm.methods.params.check import (
    Variant,
    from_logits,
    last_logits,
    measure,
    pearson,
    ranks,
    scaled,
    zeroed,
)
from whyllm.model.base import Model
from whyllm.model.hooks import raw_hooks
from whyllm.model.patches import requires_grad
from whyllm.results.base import meta
from whyllm.results.params import ParamGroup, ParamsResult, ParamUnit

__all__ = ["parameter_groups", "params"]

INVARIANT_RELATIVE = 1e-3  # |sum g.W| / sum |g.W| below this: the overall scale does not matter (1st order)
NEGLIGIBLE_SHARE = 1e-3  # measured changes below this share of the largest one count as no change
ABS_FLOOR = 1e-6  # ... or below this absolute value (float32 rounding of the rescaled weights)
_SHORT = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
          "down_proj": "down", "qkv_proj": "qkv", "gate_up_proj": "gate_up"}


@dataclass
class Group:
    """A named set of parameters (one module's weight and bias, or a tied pair)."""

    name: str
    kind: str
    layer: int | None
    params: list[tuple[str, nn.Parameter, nn.Module]] = field(default_factory=list)


def _canonical(rel: str, spec) -> str:
    """Block-relative module path -> canonical name (``self_attn.q_proj`` -> ``attn.q``)."""
    for role in ("ln1", "ln2", "attn_post_norm", "mlp_post_norm"):
        if getattr(spec, role) and rel == getattr(spec, role):
            return role
    for part in ("attn", "mlp"):
        base = getattr(spec, part)
        if rel.startswith(base + "."):
            rest = rel[len(base) + 1:]
            return f"{part}.{_SHORT.get(rest, rest)}"
    return rel


def _kind(name: str) -> str:
    if name in ("embed", "embed+unembed", "pos_embed"):
        return "embed"
    if name == "unembed":
        return "unembed"
    leaf = name.rsplit(".", 1)[-1]
    if "norm" in leaf or leaf.startswith("ln"):
        return "norm"
    return next((k for k in ("attn", "mlp") if f".{k}." in f".{name}"), "other")


def parameter_groups(model: Model) -> list[Group]:
    """Group every trainable parameter of ``model`` by the module that owns it, with canonical names.

    Blocks come from the adapter (``L{l}.attn.q``, ``L{l}.mlp.down``, ``L{l}.ln1``...); outside them
    ``embed`` (``embed+unembed`` when tied), ``pos_embed``, ``ln_final``, ``unembed``; any other
    module keeps its own dotted path (the fallback for parts the adapter does not name).
    """
    ad, hf = model.adapter, model.hf
    block_of = {id(b): i for i, b in enumerate(ad.blocks)}
    prefixes = {n: block_of[id(m)] for n, m in hf.named_modules() if id(m) in block_of}
    tied = ad.unembed.weight is ad.embed.weight
    special = {id(ad.embed): "embed+unembed" if tied else "embed", id(ad.unembed): "unembed",
               id(ad.ln_final): "ln_final"}
    if ad.pos_embed is not None:
        special[id(ad.pos_embed)] = "pos_embed"
    groups: dict[str, Group] = {}
    seen: set[int] = set()
    for mname, mod in hf.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            if id(p) in seen:  # tied weights: counted once, under their first owner
                continue
            seen.add(id(p))
            layer, name = None, special.get(id(mod))
            if name is None:
                block = next((b for b in prefixes if mname.startswith(b + ".")), None)
                if block is not None:
                    layer = prefixes[block]
                    name = f"L{layer}." + _canonical(mname[len(block) + 1:], ad.spec)
                else:
                    name = mname or pname
            groups.setdefault(name, Group(name, _kind(name), layer)).params.append((pname, p, mod))
    return list(groups.values())


# ---- one backward: per-parameter statistics ---------------------------------------------------------


def _in_dim(mod: nn.Module) -> int:
    """Axis of ``mod.weight`` that runs over the module's inputs (``(out, in)``; Conv1D ``(in, out)``)."""
    return 0 if type(mod).__name__ == "Conv1D" else 1


def _linear_like(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Linear | nn.Embedding) or type(mod).__name__ == "Conv1D"


@dataclass
class _Stats:
    """Scores of one parameter: per output row (matrices) or per element (vectors), per input channel."""

    per_row: Tensor  # (rows,) for matrices, the element products for vectors
    per_in: Tensor | None = None  # (in,) for the projections whose inputs are neurons / heads

    @property
    def total(self) -> float:
        return float(self.per_row.sum())

    @property
    def abs_total(self) -> float:
        return float(self.per_row.abs().sum())


@contextmanager
def _recording(mods: Sequence[nn.Module], inputs: Sequence[nn.Module]) -> Iterator[dict]:
    """Keep each module's input (detached) and output (in the graph; made a leaf if it has no history).

    For the modules in ``inputs`` the input is replaced by a view of itself, kept under
    ``("in", module)``: its gradient is then exactly the part flowing through that module.
    """
    store: dict = {}

    def make(i: int):
        def hook(mod: nn.Module, args: tuple, out: Tensor) -> Tensor:
            if not out.requires_grad:  # the embeddings: their weights do not require grad
                out = out.detach().requires_grad_(True)
            store[mod] = (args[0].detach(), out)
            return out

        return hook

    def make_pre(i: int):
        def pre(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if not args or not args[0].requires_grad:
                return None
            x = args[0].view_as(args[0])
            store[("in", mod)] = x
            return (x, *args[1:]), kwargs

        return pre

    with raw_hooks(inputs, make_pre, pre=True), raw_hooks(mods, make, pre=False):
        yield store


def _module_rows(mod: nn.Module, x: Tensor, y: Tensor, gy: Tensor, gx: Tensor | None) -> _Stats:
    """Row scores of a linear-like module's weight from activations (FINDINGS: sum g.W = sum gy . y).

    Row ``i`` of a linear weight: ``sum_t gy[t, i] * (y[t, i] - b[i])``; input channel ``j`` (when
    the input's gradient ``gx`` through this module is given): ``sum_t x[t, j] * gx[t, j]``;
    embedding row ``v``: ``sum_{t: id_t = v} gy[t] . y[t]``. No weight gradient is ever formed.
    """
    gy, y = gy.float(), y.detach().float()
    if isinstance(mod, nn.Embedding):
        rows = torch.zeros(mod.weight.shape[0])
        return _Stats(rows.index_add_(0, x.flatten().cpu(), (gy * y).sum(-1).flatten().cpu()))
    bias = getattr(mod, "bias", None)
    if bias is not None:
        y = y - bias.detach().float()
    rows = (gy * y).flatten(0, -2).sum(0)  # (out,)
    cols = None if gx is None else (x.float() * gx.float()).flatten(0, -2).sum(0)  # (in,)
    return _Stats(rows.cpu(), None if cols is None else cols.cpu())


def _attribute(model: Model, ids: Tensor, tid: int | None, fid: int | None,
               groups: list[Group]) -> tuple[float, dict[int, _Stats], int]:
    """One forward and one backward (to activations and small parameters only): per-parameter scores.

    ``tid=None`` explains the top prediction of that same forward pass. Returns the metric's value,
    the scores and the target id.
    """
    ad = model.adapter
    need_in = [ad.part(i, p) for i in range(ad.n_layers) for p in ("attn_o", "mlp_down")]
    entries = [(n, p, m) for g in groups for n, p, m in g.params]
    users: dict[nn.Module, None] = {}
    for mod in model.hf.modules():
        if _linear_like(mod) and isinstance(getattr(mod, "weight", None), nn.Parameter):
            users[mod] = None
    small = [p for n, p, m in entries if not (n == "weight" and _linear_like(m))]
    with requires_grad(small), torch.enable_grad(), _recording(list(users), need_in) as rec:
        logits = last_logits(model, ids)  # (1, vocab)
        tid = int(logits[0].detach().argmax()) if tid is None else tid
        value = from_logits(logits, tid, fid)[0]
        mods = [m for m in users if m in rec and rec[m][1].requires_grad]
        ins = [m for m in need_in if ("in", m) in rec]
        grads = torch.autograd.grad(value, [rec[m][1] for m in mods] + small + [rec["in", m] for m in ins],
                                    allow_unused=True)
    n, k = len(mods), len(small)
    gxs = dict(zip(ins, grads[n + k:], strict=True))
    stats: dict[int, _Stats] = {}
    for mod, gy in zip(mods, grads[:n], strict=True):
        if gy is None:
            continue
        s = _module_rows(mod, *rec[mod], gy, gxs.get(mod))
        old = stats.get(id(mod.weight))  # tied weights: the embedding's and the unembedding's rows add up
        stats[id(mod.weight)] = s if old is None else _Stats(old.per_row + s.per_row, old.per_in)
    for p, g in zip(small, grads[n:n + k], strict=True):
        prod = (g.float() * p.detach().float()) if g is not None else torch.zeros(p.shape)
        stats[id(p)] = _Stats(prod.flatten(1).sum(1) if prod.dim() > 1 else prod)
    for _, p, _ in entries:
        stats.setdefault(id(p), _Stats(torch.zeros(p.shape[0] if p.dim() else 1)))
    return float(value.detach()), stats, tid


def _rows(model: Model, groups: list[Group], stats: dict[int, _Stats], k: int) -> list[ParamUnit]:
    """The ``k`` output rows (token rows for embeddings) with the largest ``|sum g.W|``."""
    cands: list[ParamUnit] = []
    for g in groups:
        for _, p, _ in g.params:
            per_row = stats[id(p)].per_row
            if p.dim() != 2:
                continue
            tokens = g.kind in ("embed", "unembed") and p.shape[0] == model.adapter.d_vocab
            for i in per_row.abs().topk(min(k, per_row.numel())).indices.tolist():
                label = f"{g.name}[{model.token_texts([i])[0]!r}]" if tokens else f"{g.name}.row{i}"
                cands.append(ParamUnit("row", g.name, g.layer, i, float(per_row[i]), label))
    return sorted(cands, key=lambda u: -abs(u.score))[:k]


def _units(model: Model, stats: dict[int, _Stats], kind: str, k: int) -> list[ParamUnit]:
    """Top MLP neurons (down-projection inputs) or heads (output-projection inputs) by ``|sum g.W|``."""
    ad = model.adapter
    part, tag = ("mlp_down", "N") if kind == "neuron" else ("attn_o", "H")
    cands: list[ParamUnit] = []
    for layer in range(ad.n_layers):
        per_in = stats[id(ad.part(layer, part).weight)].per_in  # (in,)
        if per_in is None:
            continue
        if kind == "head":
            per_in = per_in.reshape(ad.n_heads, -1).sum(-1)  # (head,)
        group = f"L{layer}.{_canonical(getattr(ad.spec, part), ad.spec)}"
        for i in per_in.abs().topk(min(k, per_in.numel())).indices.tolist():
            cands.append(ParamUnit(kind, group, layer, i, float(per_in[i]), f"L{layer}.{tag}{i}"))
    return sorted(cands, key=lambda u: -abs(u.score))[:k]


# ---- the check ----------------------------------------------------------------------------------
def _unit_variant(model: Model, groups: list[Group], u: ParamUnit) -> Variant:
    """The edit zeroing unit ``u``: a row of its group's weight, a neuron's or a head's input columns."""
    ad = model.adapter
    if u.kind == "row":
        mod, p = next((m, p) for g in groups if g.name == u.group for n, p, m in g.params if n == "weight")
        out_dim = 0 if isinstance(mod, nn.Embedding) else 1 - _in_dim(mod)
        return Variant([(p, zeroed((u.index,) if out_dim == 0 else (slice(None), u.index)))])
    mod = ad.part(u.layer, "mlp_down" if u.kind == "neuron" else "attn_o")
    cols = u.index
    if u.kind == "head":
        width = ad.head_out_weight(u.layer).shape[1]
        cols = slice(u.index * width, (u.index + 1) * width)
    return Variant([(mod.weight, zeroed((slice(None), cols) if _in_dim(mod) == 1 else (cols,)))])


def _group_check(model: Model, ids: Tensor, tid: int, fid: int | None, groups: list[Group],
                 scores: list[tuple[float, float]], eps: float) -> tuple[list[ParamGroup], dict]:
    """Rescale each group by ``1 - eps``: measured vs predicted change, invariance flags, statistics."""
    measured = measure(model, ids, tid, fid, [Variant([(p, scaled(1.0 - eps)) for _, p, _ in g.params])
                                               for g in groups])
    largest = max(abs(m) for m in measured)
    floor = max(ABS_FLOOR, NEGLIGIBLE_SHARE * largest)
    out = []
    for g, (s, a), m in zip(groups, scores, measured, strict=True):
        invariant = a > 0 and abs(s) / a < INVARIANT_RELATIVE and abs(m) <= floor
        out.append(ParamGroup(g.name, g.kind, g.layer, sum(p.numel() for _, p, _ in g.params), s, a,
                              -eps * s, m, invariant))
    keep = [g for g in out if abs(g.measured_change) > floor]
    pred, meas = [g.predicted_change for g in keep], [g.measured_change for g in keep]
    worst = max(out, key=lambda g: abs(g.predicted_change - g.measured_change))
    miss = abs(worst.predicted_change - worst.measured_change)
    return out, {
        "correlation": pearson(pred, meas), "rank_correlation": pearson(ranks(pred), ranks(meas)),
        "n_correlated": len(keep),
        "largest_miss": {"name": worst.name, "predicted": worst.predicted_change,
                         "measured": worst.measured_change, "share": miss / largest if largest else 0.0},
    }


def _check_units(model: Model, ids: Tensor, tid: int, fid: int | None, groups: list[Group],
                 units: list[ParamUnit]) -> list[ParamUnit]:
    measured = measure(model, ids, tid, fid, [_unit_variant(model, groups, u) for u in units])
    return [ParamUnit(u.kind, u.group, u.layer, u.index, u.score, u.label, -u.score, m)
            for u, m in zip(units, measured, strict=True)]


def _notes(groups: list[ParamGroup], stats: dict, checked: bool) -> list[str]:
    notes = []
    inv = [g.name for g in groups if g.scale_invariant]
    if inv:
        shown = ", ".join(inv[:6]) + (f" and {len(inv) - 6} more" if len(inv) > 6 else "")
        notes.append(
            f"{len(inv)} groups are scale-invariant ({shown}): a norm after them cancels any rescaling, so "
            "their total grad x weight is ~0 by construction, not because they do not matter; their rows, "
            "neurons and heads carry the attribution")
    if checked and stats["correlation"] is None:
        notes.append(
            f"the check's correlation is undefined: only {stats['n_correlated']} groups changed the metric "
            "measurably when rescaled (3 needed)")
    return notes


def _same_token(tid: int | None, fid: int | None, target: str | None, foil: str | None) -> None:
    if fid is not None and fid == tid:
        raise InputError(f"the foil {foil!r} is the same token as the target {target!r}; choose another")


def params(
    model: Model,
    prompt: str,
    *,
    target: str | None = None,
    foil: str | None = None,
    top_k: int = 10,
    check: bool = True,
    epsilon: float = 0.01,
    check_units: int = 5,
) -> ParamsResult:
    """Attribute one prediction to the model's parameters (gradient x weight), with its own check.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text; the prediction is the next token after it.
        target: the token explained (first token of the text); default the model's top prediction.
        foil: explain the target - foil logit difference instead of the target's log-probability.
        top_k: rows, neurons and heads listed.
        check: rescale every group by ``1 - epsilon`` and zero the top ``check_units`` rows, neurons
            and heads, comparing real and predicted changes (batched forwards, timed apart).
        epsilon: relative rescaling of the check.
        check_units: units of each kind zeroed by the check.

    Returns:
        A :class:`ParamsResult`; when the check's correlation is undefined a warning says so.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be a positive integer, got {top_k!r}")
    if not isinstance(epsilon, float | int) or not 0 < epsilon < 1:
        raise InputError(f"epsilon must be between 0 and 1 (exclusive), got {epsilon!r}")
    ids = model.encode(prompt)  # (1, pos)
    tid = token_id(model, target) if target is not None else None
    fid = token_id(model, foil, "foil") if foil is not None else None
    _same_token(tid, fid, target, foil)
    groups = parameter_groups(model)
    t0 = time.perf_counter()
    value, stats, tid = _attribute(model, ids, tid, fid, groups)
    if target is None:  # the model's top prediction, from the same forward pass
        target = model.token_texts([tid])[0]
        _same_token(tid, fid, target, foil)
    scores = [(sum(stats[id(p)].total for _, p, _ in g.params),
               sum(stats[id(p)].abs_total for _, p, _ in g.params)) for g in groups]
    rows, neurons = _rows(model, groups, stats, top_k), _units(model, stats, "neuron", top_k)
    heads = _units(model, stats, "head", top_k)
    seconds = {"attribution": time.perf_counter() - t0}
    summary: dict = {"correlation": None, "rank_correlation": None, "n_correlated": 0, "largest_miss": None,
                     "unit_correlation": None}
    if check:
        t1 = time.perf_counter()
        out, more = _group_check(model, ids, tid, fid, groups, scores, epsilon)
        summary.update(more)
        n = min(check_units, top_k)
        rows[:n], neurons[:n], heads[:n] = (_check_units(model, ids, tid, fid, groups, u[:n])
                                            for u in (rows, neurons, heads))
        done = [u for u in (*rows, *neurons, *heads) if u.measured_change is not None]
        summary["unit_correlation"] = pearson([u.predicted_change for u in done],
                                              [u.measured_change for u in done])
        seconds["check"] = time.perf_counter() - t1
    else:
        out = [ParamGroup(g.name, g.kind, g.layer, sum(p.numel() for _, p, _ in g.params), s, a,
                          scale_invariant=a > 0 and abs(s) / a < INVARIANT_RELATIVE)
               for g, (s, a) in zip(groups, scores, strict=True)]
    notes = _notes(out, summary, check)
    if check and summary["correlation"] is None:
        warnings.warn(notes[-1], UserWarning, stacklevel=2)
    return ParamsResult(
        prompt=prompt, input_ids=tuple(ids[0].tolist()), input_tokens=tuple(model.token_texts(ids[0])),
        target=target, target_id=tid, target_token=model.token_texts([tid])[0],
        metric="log_prob" if fid is None else "logit_diff", value=value, groups=tuple(out),
        rows=tuple(rows), neurons=tuple(neurons), heads=tuple(heads), foil=foil, foil_id=fid,
        foil_token=model.token_texts([fid])[0] if fid is not None else None, epsilon=float(epsilon),
        checked=check, **summary, notes=tuple(notes), seconds=seconds,
        meta=meta(model, "params", target=target, foil=foil, top_k=top_k, check=check, epsilon=epsilon,
                  check_units=check_units),
    )

"""The check behind parameter attribution: measure the metric under many weight edits at once.

Each edit (a :class:`Variant`: some parameters replaced by a function of themselves, e.g. scaled by
``1 - epsilon`` or with one row zeroed) gets its own row of a batch of copies of the prompt. Modules
using an edited parameter recompute their output for that row with the edited weights
(:func:`torch.func.functional_call`), so the model's weights never change and one batched forward
measures a chunk of edits exactly. Row 0 of each batch runs unedited: changes are measured against
it, in the same batched arithmetic.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from whyllm.model.base import Model

__all__ = [
    "Variant", "from_logits", "last_logits", "measure", "metric", "pearson", "ranks", "scaled", "zeroed",
]


def last_logits(model: Model, ids: Tensor) -> Tensor:
    """Logits at the last position of each row, ``(batch, vocab)`` float32 (only that row is unembedded)."""
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.hf.forward).parameters else {}
    return model.hf(input_ids=ids, use_cache=False, **keep).logits[:, -1].float()


def from_logits(logits: Tensor, tid: int, fid: int | None) -> Tensor:
    """Target log-prob (or target - foil logit) of each row of ``(batch, vocab)`` logits: ``(batch,)``."""
    if fid is None:
        return logits.log_softmax(-1)[:, tid]
    return logits[:, tid] - logits[:, fid]


def metric(model: Model, ids: Tensor, tid: int, fid: int | None) -> Tensor:
    """Target log-prob (or target - foil logit) at the last position of each row: ``(batch,)``."""
    return from_logits(last_logits(model, ids), tid, fid)


@dataclass
class Variant:
    """One edit of the weights measured by the check: each listed parameter replaced by ``fn(param)``."""

    edits: list[tuple[nn.Parameter, Callable[[Tensor], Tensor]]]


@dataclass(frozen=True)
class scaled:  # noqa: N801  (used like a function: scaled(0.99))
    """Edit multiplying a parameter by ``factor``."""

    factor: float

    def __call__(self, p: Tensor) -> Tensor:
        """The parameter scaled."""
        return p * self.factor


@dataclass(frozen=True)
class zeroed:  # noqa: N801
    """Edit setting ``param[index]`` to zero (``index``: ``(rows,)`` or ``(slice(None), columns)``)."""

    index: tuple

    def __call__(self, p: Tensor) -> Tensor:
        """The parameter with the unit zeroed."""
        out = p.clone()
        out[self.index] = 0
        return out


def _as_slice(i: int | slice) -> slice:
    return slice(i, i + 1) if isinstance(i, int) else i


def _fast_output(mod: nn.Module, fns: dict[str, Callable], x: Tensor, y: Tensor) -> Tensor | None:
    """Edited output of a linear layer or embedding straight from its input and output, or ``None``.

    Saves copying big matrices (a 262k-token embedding) for each edit: a uniform rescale of all the
    module's parameters scales its output; zeroing output rows sets those outputs to their bias;
    zeroing input columns subtracts their share ``x[:, cols] @ W[:, cols]``; zeroing an embedding row
    zeroes the positions holding that token.
    """
    kind = "embedding" if isinstance(mod, nn.Embedding) else type(mod).__name__
    if kind not in ("embedding", "Linear", "Conv1D"):
        return None
    own = {n for n, _ in mod.named_parameters(recurse=False)}
    if all(isinstance(f, scaled) for f in fns.values()) and set(fns) == own \
            and len({f.factor for f in fns.values()}) == 1:
        return y * next(iter(fns.values())).factor
    fn = fns.get("weight")
    if len(fns) != 1 or not isinstance(fn, zeroed):
        return None
    axis, idx = (0, fn.index[0]) if len(fn.index) == 1 else (1, fn.index[1])
    idx, w, bias = _as_slice(idx), mod.weight, getattr(mod, "bias", None)
    y = y.clone()
    if kind == "embedding":
        if axis == 0:
            return y.masked_fill(((x >= (idx.start or 0)) & (x < idx.stop))[..., None], 0.0)
        y[..., idx] = 0
        return y
    out_axis = 0 if kind == "Linear" else 1  # Linear stores (out, in), Conv1D (in, out)
    if axis == out_axis:
        y[..., idx] = 0 if bias is None else bias[idx]
        return y
    part = w[:, idx].T if kind == "Linear" else w[idx, :]  # (cols, out)
    return y - x[..., idx] @ part


def _row(x: object, row: int, batch: int) -> object:
    return x[row:row + 1] if isinstance(x, Tensor) and x.shape[:1] == (batch,) else x


@contextmanager
def _variant_hooks(model: Model, variants: Sequence[Variant], batch: int) -> Iterator[None]:
    """Row ``i + 1`` of a batch of ``batch`` copies runs with ``variants[i]``'s weights; row 0 is unchanged.

    Each module using an edited parameter gets a forward hook that recomputes its output for the
    rows of the variants editing it, with :func:`torch.func.functional_call` on the edited weights.
    So one batched forward measures many edits exactly, the weights themselves never change.
    """
    users: dict[int, list[tuple[str, nn.Module]]] = {}
    for mod in model.hf.modules():
        for pname, p in mod.named_parameters(recurse=False):
            users.setdefault(id(p), []).append((pname, mod))
    per_module: dict[nn.Module, list[tuple[int, dict[str, Callable]]]] = {}
    for row, v in enumerate(variants, start=1):
        for p, fn in v.edits:
            for pname, mod in users[id(p)]:
                entries = per_module.setdefault(mod, [])
                if not entries or entries[-1][0] != row:
                    entries.append((row, {}))
                entries[-1][1][pname] = fn

    def make(entries: list[tuple[int, dict[str, Callable]]]) -> Callable:
        busy = [False]  # functional_call runs the module again: that inner call passes through

        def hook(mod: nn.Module, args: tuple, kwargs: dict, out: Tensor) -> Tensor | None:
            if busy[0]:
                return None
            # outputs shared by the batch (position embeddings of (1, pos) ids) get one copy per row
            out = (out if out.shape[:1] == (batch,) else out.expand(batch, *out.shape[1:])).clone()
            busy[0] = True
            try:
                for row, fns in entries:
                    a = tuple(_row(x, row, batch) for x in args)
                    k = {n: _row(x, row, batch) for n, x in kwargs.items()}
                    fast = _fast_output(mod, fns, a[0], out[row:row + 1]) if a else None
                    if fast is None:
                        weights = {n: fn(getattr(mod, n)) for n, fn in fns.items()}
                        fast = torch.func.functional_call(mod, weights, a, k)
                    out[row:row + 1] = fast
            finally:
                busy[0] = False
            return out

        return hook

    handles = []
    try:
        for mod, entries in per_module.items():
            handles.append(mod.register_forward_hook(make(entries), with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


def measure(model: Model, ids: Tensor, tid: int, fid: int | None, variants: Sequence[Variant],
            chunk: int | None = None) -> list[float]:
    """Real change of the metric under each variant (batched forwards of ``chunk`` variants each).

    The default chunk holds about 4096 tokens (at most 128 variants): on CPU a forward pass of a
    few rows costs about as much as one row (reading the weights dominates), so big chunks pay.
    """
    chunk = chunk or max(8, min(128, 4096 // ids.shape[1]))
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(variants), chunk):
            part = variants[i:i + chunk]
            batch = len(part) + 1
            with _variant_hooks(model, part, batch):
                values = metric(model, ids.expand(batch, -1), tid, fid)  # (batch,)
            out += (values[1:] - values[0]).tolist()
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation, or ``None`` with fewer than 3 points or no variation."""
    if len(x) < 3:
        return None
    a, b = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a @ b) / den) if den > 0 else None


def ranks(x: Sequence[float]) -> list[float]:
    """Rank of each value (0 = smallest), for Spearman's correlation as Pearson's on ranks."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    out = [0.0] * len(x)
    for r, i in enumerate(order):
        out[i] = float(r)
    return out

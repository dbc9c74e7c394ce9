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

__all__ = ["Variant", "measure", "metric", "pearson", "ranks", "scaled", "zeroed"]


def metric(model: Model, ids: Tensor, tid: int, fid: int | None) -> Tensor:
    """Target log-prob (or target - foil logit) at the last position of each row: ``(batch,)``."""
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.hf.forward).parameters else {}
    logits = model.hf(input_ids=ids, use_cache=False, **keep).logits[:, -1].float()  # (batch, vocab)
    if fid is None:
        return logits.log_softmax(-1)[:, tid]
    return logits[:, tid] - logits[:, fid]


@dataclass
class Variant:
    """One edit of the weights measured by the check: each listed parameter replaced by ``fn(param)``."""

    edits: list[tuple[nn.Parameter, Callable[[Tensor], Tensor]]]


def scaled(factor: float) -> Callable[[Tensor], Tensor]:
    """Edit multiplying a parameter by ``factor``."""
    return lambda p: p * factor


def zeroed(index: tuple) -> Callable[[Tensor], Tensor]:
    """Edit setting ``param[index]`` to zero."""
    def fn(p: Tensor) -> Tensor:
        out = p.clone()
        out[index] = 0
        return out

    return fn


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
                    weights = {n: fn(getattr(mod, n)) for n, fn in fns.items()}
                    out[row:row + 1] = torch.func.functional_call(mod, weights, a, k)
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
            chunk: int = 16) -> list[float]:
    """Real change of the metric under each variant (batched forwards of ``chunk`` variants each)."""
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

"""``evaluate``: rank attribution methods by faithfulness over a set of prompts."""

from __future__ import annotations

import time
from typing import Any

from whyllm.errors import InputError
from whyllm.methods.attribution.faithfulness import DEFAULT_FRACTIONS
from whyllm.methods.attribution.registry import METHODS
from whyllm.methods.attribution.request import build
from whyllm.methods.attribution.run import run
from whyllm.methods.engine.progress import Progress, report
from whyllm.model.base import Model
from whyllm.results.attribution import EvaluationResult
from whyllm.results.base import meta

__all__ = ["evaluate"]

_KEYS = {"prompt", "target", "foil"}
# metric -> True when higher is better
_METRICS = {"comprehensiveness": True, "sufficiency": False, "deletion_auc": False}


def _items(prompts: list[str | dict[str, Any]]) -> list[dict[str, Any]]:
    if not prompts:
        raise InputError("no prompts to evaluate; give at least one")
    items = []
    for p in prompts:
        item = {"prompt": p} if isinstance(p, str) else dict(p) if isinstance(p, dict) else None
        if item is None or not isinstance(item.get("prompt"), str) or set(item) - _KEYS:
            raise InputError(f"prompt {p!r} must be text or a dict with 'prompt' (and 'target', 'foil')")
        items.append(item)
    return items


def _baseline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The random-order deletion AUC (mean) and the share of prompts where the method deletes faster."""
    pairs = [(r["deletion_auc"], r["random_deletion_auc"]) for r in rows]
    if any(b is None for _, b in pairs):
        return {"random_deletion_auc": None, "beats_random": None}
    return {"random_deletion_auc": sum(b for _, b in pairs) / len(pairs),
            "beats_random": sum(a < b for a, b in pairs) / len(pairs)}


def _ranking(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    means = {m: {**{k: sum(r[k] for r in rows if r["method"] == m) / sum(r["method"] == m for r in rows)
                    for k in (*_METRICS, "seconds")}, **_baseline([r for r in rows if r["method"] == m])}
             for m in names}
    ranks = {m: 0.0 for m in names}
    for metric, higher in _METRICS.items():
        order = sorted(names, key=lambda m: -means[m][metric] if higher else means[m][metric])
        for i, m in enumerate(order):
            ranks[m] += (i + 1) / len(_METRICS)
    best = sorted(names, key=lambda m: (ranks[m], -means[m]["comprehensiveness"]))
    return [{"rank": i + 1, "method": m, **means[m], "mean_rank": ranks[m]} for i, m in enumerate(best)]


def evaluate(
    model: Model, prompts: list[str | dict[str, Any]], *, methods: list[str] | None = None,
    granularity: str = "token", steps: int | str = 32, baseline: str = "default",
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS, progress: Progress | None = None,
) -> EvaluationResult:
    """Run each method on each prompt and rank the methods by their faithfulness metrics.

    Args:
        model: the model.
        prompts: texts, or dicts ``{"prompt", "target"?, "foil"?}`` (no target: the predicted token).
        methods: method names (default: all of them).
        granularity: unit size, as for :func:`whyllm.explain`.
        steps: integrated gradients' steps (or ``"auto"``).
        baseline: the "absent" input, as for :func:`whyllm.explain`.
        fractions: top-k fractions of the faithfulness metrics.
        progress: called with ``(runs done, runs)``.

    The ranking orders methods by the mean of their ranks on mean comprehensiveness (higher is
    better), sufficiency (lower) and deletion AUC (lower). Each row also holds the deletion AUC of random
    deletion orders (the AUC to beat), and each ranked method the share of prompts where it beats it.
    """
    if methods is not None and not list(methods):
        raise InputError("methods is empty; name at least one attribution method, or None for all")
    names = list(methods) if methods is not None else METHODS.names()
    for name in names:
        METHODS[name]  # unknown names fail before any run
    items = _items(prompts)
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        for name in names:
            start = time.perf_counter()
            request = build(model, item["prompt"], target=item.get("target"), foil=item.get("foil"),
                            method=name, granularity=granularity, steps=steps, baseline=baseline,
                            fractions=fractions)
            r = run(model, request)
            f = r.faithfulness
            rows.append({"prompt": i, "method": name, "comprehensiveness": f.comprehensiveness,
                         "sufficiency": f.sufficiency, "deletion_auc": f.deletion_auc,
                         "random_deletion_auc": f.random_deletion_auc,
                         "seconds": time.perf_counter() - start})
            report(progress, len(rows), len(items) * len(names))
    settings = {"granularity": granularity, "steps": steps, "baseline": baseline,
                "fractions": list(fractions)}
    return EvaluationResult(
        prompts=tuple(it["prompt"] for it in items), methods=tuple(names), rows=tuple(rows),
        ranking=tuple(_ranking(rows, names)), settings=settings, meta=meta(model, "evaluate", **settings),
    )

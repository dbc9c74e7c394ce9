"""``whyllm report DIR``: what a batch folder says, as numbers and as one self-contained HTML page.

The summary holds: row counts by method and status; accuracy against targets (``predict`` rows with a
target: the target is the top token) with a bootstrap 95% interval; attribution methods ranked by mean
comprehensiveness over the set (bootstrap 95% intervals, sufficiency and deletion AUC alongside); the
input units that most often carry the largest attribution; the rows where attribution methods disagree
most (lowest mean Spearman correlation of their token scores); and the error rows.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

from whyllm.batch.io import read_manifest, read_table

__all__ = ["bootstrap_ci", "summarise", "text_summary", "write_report"]

_SAMPLES = 1000


def bootstrap_ci(
    values: list[float], *, samples: int = _SAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` and its bootstrap 95% interval (percentile method, seeded)."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(samples, len(x)))].mean(axis=1)
    return (float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def _spearman(a: list[float], b: list[float]) -> float | None:
    import numpy as np
    import pandas as pd

    if len(a) != len(b) or len(a) < 3:
        return None
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _col(frame, name: str):
    return frame[name] if name in frame.columns else None


def _accuracy(ok) -> dict[str, Any] | None:
    col = _col(ok, "predict.target_correct")
    if col is None or col.dropna().empty:
        return None
    vals = col.dropna().tolist()
    mean, lo, hi = bootstrap_ci(vals)
    return {
        "rows": len(vals),
        "accuracy": mean,
        "low": lo,
        "high": hi,
        "mean_target_rank": float(ok["predict.target_rank"].dropna().mean()),
    }


def _faithfulness(ok) -> list[dict[str, Any]]:
    exp = ok[ok["method"].str.startswith("explain")]
    if exp.empty or "explain.comprehensiveness" not in exp.columns:
        return []
    out = []
    for method, group in exp.groupby("method"):
        comp = group["explain.comprehensiveness"].dropna().tolist()
        if not comp:
            continue
        mean, lo, hi = bootstrap_ci(comp)
        out.append(
            {
                "method": method,
                "rows": len(comp),
                "comprehensiveness": mean,
                "low": lo,
                "high": hi,
                "sufficiency": float(group["explain.sufficiency"].dropna().mean()),
                "deletion_auc": float(group["explain.deletion_auc"].dropna().mean()),
            }
        )
    return sorted(out, key=lambda r: -r["comprehensiveness"])


def _drivers(ok, top: int = 20) -> list[dict[str, Any]]:
    col = _col(ok, "explain.top_unit")
    if col is None:
        return []
    counts = Counter(t.strip() or repr(t) for t in col.dropna())
    total = sum(counts.values())
    return [{"unit": u, "count": c, "share": c / total} for u, c in counts.most_common(top)]


def _disagreements(ok, top: int = 10) -> list[dict[str, Any]]:
    exp = ok[ok["method"].str.startswith("explain")]
    out = []
    for rid, group in exp.groupby("id"):
        if group["method"].nunique() < 2:
            continue
        docs = {m: json.loads(r) for m, r in zip(group["method"], group["result"], strict=True)}
        rhos = {
            f"{a} vs {b}": _spearman(docs[a]["token_scores"], docs[b]["token_scores"])
            for a, b in combinations(sorted(docs), 2)
        }
        vals = [v for v in rhos.values() if v is not None]
        if vals:
            first = next(iter(docs.values()))
            out.append(
                {
                    "id": rid,
                    "prompt": first.get("prompt"),
                    "mean_spearman": sum(vals) / len(vals),
                    "pairs": rhos,
                    "top_units": {
                        m: max(d["units"], key=lambda u: u["score"])["text"] if d["units"] else None
                        for m, d in docs.items()
                    },
                }
            )
    return sorted(out, key=lambda r: r["mean_spearman"])[:top]


def summarise(out: str | Path) -> dict[str, Any]:
    """The numbers of the report (JSON-ready)."""
    frame = read_table(out)
    ok = frame[frame["status"] == "ok"]
    errors = frame[frame["status"] == "error"]
    counts = {
        m: {"ok": int((g["status"] == "ok").sum()), "error": int((g["status"] == "error").sum())}
        for m, g in frame.groupby("method")
    }
    return {
        "kind": "batch_report",
        "out": str(out),
        "manifest": read_manifest(out),
        "rows": int(frame["id"].nunique()),
        "results": len(frame),
        "counts": counts,
        "accuracy": _accuracy(ok),
        "faithfulness": _faithfulness(ok),
        "drivers": _drivers(ok),
        "disagreements": _disagreements(ok),
        "error_messages": Counter(errors["error"]).most_common(20),
        "errors": [
            {"id": i, "method": m, "error": e}
            for i, m, e in zip(errors["id"], errors["method"], errors["error"], strict=True)
        ][:200],
    }


def text_summary(s: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"{s['rows']} rows, {s['results']} results in {s['out']}"]
    for m, c in s["counts"].items():
        lines.append(f"  {m}: {c['ok']} ok, {c['error']} errors")
    if s["accuracy"]:
        a = s["accuracy"]
        lines.append(
            f"accuracy against targets: {a['accuracy']:.3f} [{a['low']:.3f}, {a['high']:.3f}] "
            f"over {a['rows']} rows"
        )
    for i, f in enumerate(s["faithfulness"], 1):
        lines.append(
            f"  {i}. {f['method']}: comprehensiveness {f['comprehensiveness']:.4f} "
            f"[{f['low']:.4f}, {f['high']:.4f}]"
        )
    if s["drivers"]:
        lines.append(
            "most frequent top units: " + ", ".join(f"{d['unit']!r} ({d['count']})" for d in s["drivers"][:8])
        )
    return "\n".join(lines)


def _bar(value: float, lo: float, hi: float, scale: float) -> str:
    """An inline horizontal bar with an interval whisker (values in [0, scale])."""

    def pct(v: float) -> float:
        return max(0.0, min(100.0, 100 * v / scale)) if scale > 0 else 0.0

    return (
        f'<div class="bar"><div class="fill" style="width:{pct(value):.1f}%"></div>'
        f'<div class="ci" style="left:{pct(lo):.1f}%;width:{max(pct(hi) - pct(lo), 0.3):.1f}%"></div></div>'
    )


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _sections(s: dict[str, Any]) -> list[str]:
    e = html.escape
    parts = [
        f"<h2>Rows</h2><p>{s['rows']} input rows, {s['results']} results.</p>",
        _table(
            ["method", "ok", "errors"],
            [[e(m), str(c["ok"]), str(c["error"])] for m, c in s["counts"].items()],
        ),
    ]
    a = s["accuracy"]
    parts.append(
        "<h2>Accuracy against targets</h2>"
        + (
            f"<p>The target is the top token in <b>{a['accuracy']:.1%}</b> of {a['rows']} rows "
            f"(95% bootstrap interval {a['low']:.1%} to {a['high']:.1%}); "
            f"mean target rank {a['mean_target_rank']:.1f}.</p>"
            + _bar(a["accuracy"], a["low"], a["high"], 1.0)
            if a
            else "<p>No predict rows with a target.</p>"
        )
    )
    f = s["faithfulness"]
    scale = max([abs(r["high"]) for r in f] + [1e-9])
    parts.append(
        "<h2>Attribution methods ranked by faithfulness</h2><p>Mean comprehensiveness (higher: removing "
        "the top-ranked units hurts the prediction more), 95% bootstrap intervals.</p>"
        + (
            _table(
                ["rank", "method", "rows", "comprehensiveness", "", "sufficiency", "deletion AUC"],
                [
                    [
                        str(i),
                        e(r["method"]),
                        str(r["rows"]),
                        f"{r['comprehensiveness']:.4f} [{r['low']:.4f}, {r['high']:.4f}]",
                        _bar(r["comprehensiveness"], r["low"], r["high"], scale),
                        f"{r['sufficiency']:.4f}",
                        f"{r['deletion_auc']:.4f}",
                    ]
                    for i, r in enumerate(f, 1)
                ],
            )
            if f
            else "<p>No explain rows with faithfulness.</p>"
        )
    )
    d = s["drivers"]
    top = max([r["count"] for r in d] + [1])
    parts.append(
        "<h2>Tokens and words that most often drive the prediction</h2>"
        + (
            _table(
                ["unit", "rows where it scores highest", ""],
                [
                    [
                        f"<code>{e(r['unit'])}</code>",
                        f"{r['count']} ({r['share']:.1%})",
                        _bar(r["count"], r["count"], r["count"], top),
                    ]
                    for r in d
                ],
            )
            if d
            else "<p>No explain rows.</p>"
        )
    )
    g = s["disagreements"]
    parts.append(
        "<h2>Rows where attribution methods disagree most</h2>"
        + (
            _table(
                ["id", "prompt", "mean Spearman", "top unit per method"],
                [
                    [
                        e(r["id"]),
                        e(str(r["prompt"]))[:200],
                        f"{r['mean_spearman']:.3f}",
                        "<br>".join(f"{e(m)}: <code>{e(str(u))}</code>" for m, u in r["top_units"].items()),
                    ]
                    for r in g
                ],
            )
            if g
            else "<p>Needs two or more explain methods on the same rows.</p>"
        )
    )
    parts.append(
        "<h2>Error rows</h2>"
        + (
            _table(
                ["id", "method", "error"], [[e(r["id"]), e(r["method"]), e(r["error"])] for r in s["errors"]]
            )
            if s["errors"]
            else "<p>None.</p>"
        )
    )
    return parts


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top}.bar{position:relative;width:220px;height:12px;background:#eee}.fill{position:absolute;
height:12px;background:#4a7fd0}.ci{position:absolute;top:5px;height:2px;background:#111}code{background:#f4f4f4}"""


def write_report(out: str | Path, path: str | Path, summary: dict[str, Any] | None = None) -> Path:
    """Write the self-contained HTML summary of batch folder ``out`` to ``path``."""
    s = summary if summary is not None else summarise(out)
    m = s.get("manifest") or {}
    head = (
        f"<h1>whyllm batch report</h1><p>Model <code>{html.escape(str(m.get('model')))}</code>, runs "
        f"{html.escape(', '.join(m.get('runs', [])))}, "
        f"whyllm {html.escape(str(m.get('whyllm_version')))}.</p>"
    )
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>whyllm batch report</title>"
        f"<style>{_CSS}</style></head><body>{head}{''.join(_sections(s))}</body></html>"
    )
    Path(path).write_text(doc, encoding="utf-8")
    return Path(path)

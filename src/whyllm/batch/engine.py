"""What a batch runs: ``--run`` specs, one row through one analysis, the work units, the key figures.

Both engines (:mod:`~whyllm.batch.embedded`, :mod:`~whyllm.batch.ray_engine`) cut the work the same way:
for each run spec, every input row (sorted by prompt length, then position) is cut into units of
``chunk`` rows. A unit is the grain of work and of output: its rows go into one part, written
atomically. Units depend only on the input and the settings, never on what is already done, so a
resumed run redoes exactly the unfinished units with exactly the same packing, and its figures are
identical to those of an uninterrupted run.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from whyllm.errors import InputError, WhyllmError

__all__ = ["RunSpec", "Unit", "figures", "parse_run", "plan", "run_unit"]

_ROW_FIELDS = ("target", "foil", "corrupted")
_NOT_OPTIONS = {"model", "prompt", "clean", "corrupted", "progress", "prompts"}
# analyses with a cross-prompt packed implementation: whyllm.batch.pack.<analysis>_many
_PACKED = ("predict", "explain", "components", "lens")


def _value(text: str) -> Any:
    """``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``[1,2]`` -> [1, 2], anything else stays text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split(text: str) -> list[str]:
    """Split ``a=1,b=[1,2]`` on the commas outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{" and 1 or ch in "]}" and -1 or 0
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur] if cur or out else []


@dataclass(frozen=True)
class RunSpec:
    """One ``--run``: a registered analysis and its options.

    Attributes:
        analysis: the registry name (``predict``, ``explain``, ``lens``...).
        options: keyword options passed to the analysis (JSON values).
    """

    analysis: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """The ``method`` column: the analysis, with the attribution method for ``explain``."""
        sub = self.options.get("method") if self.analysis == "explain" else None
        return f"{self.analysis}:{sub}" if sub else self.analysis

    @property
    def parameters(self) -> str:
        """The ``parameters`` column: the options as canonical JSON (sorted keys, no spaces)."""
        return json.dumps(self.options, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def fn(self):
        """The analysis function."""
        from whyllm.methods.registry import ANALYSES

        return ANALYSES[self.analysis].fn

    def to_text(self) -> str:
        """The spec back in ``--run`` form."""
        opts = ",".join(
            f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in sorted(self.options.items())
        )
        return f"{self.analysis}:{opts}" if opts else self.analysis


def _accepted(fn) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(fn).parameters.items() if n not in ("model",)}


def _coerce(param: inspect.Parameter, value: Any) -> Any:
    """A scalar given for a sequence parameter (``positions=-1``) becomes a one-item list."""
    note = str(param.annotation)
    if not isinstance(value, list) and any(s in note for s in ("Sequence[", "list[", "tuple[")):
        return [value]
    return value


def check_options(spec_name: str, fn, options: dict[str, Any], where: str) -> dict[str, Any]:
    """Options checked against ``fn``'s signature: unknown names raise, list values get coerced."""
    params = _accepted(fn)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = sorted(n for n, p in params.items() if n not in _NOT_OPTIONS and p.kind is not p.VAR_KEYWORD)
    out = {}
    for k, v in options.items():
        if k in _NOT_OPTIONS or (k not in params and not takes_any):
            raise InputError(f"{where}: {spec_name} has no option {k!r}; valid options: {', '.join(valid)}")
        out[k] = _coerce(params[k], v) if k in params else v
    return out


def parse_run(text: str) -> RunSpec:
    """Parse ``METHOD[:OPTIONS]``: ``predict``, ``lens:top_k=3,positions=-1``, ``explain:occlusion``.

    A bare word among the options (``explain:occlusion``) is the analysis' ``method`` option. Option
    names are checked against the analysis' signature; values are JSON (``3``, ``0.5``, ``true``,
    ``[1,2]``) or text.

    Raises:
        InputError: unknown analysis or option.
    """
    from whyllm.methods.registry import ANALYSES

    name, _, rest = text.strip().partition(":")
    if name not in ANALYSES.names():
        raise InputError(
            f"--run {text!r}: unknown analysis {name!r}; choose one of {', '.join(ANALYSES.names())}"
        )
    if name == "evaluate":
        raise InputError(
            "--run evaluate: evaluate runs over many prompts itself; run explain:METHOD per row "
            "and read the ranking from `whyllm report`"
        )
    options: dict[str, Any] = {}
    for item in _split(rest):
        key, eq, value = item.partition("=")
        if not eq:
            key, value = "method", key
        options[key.strip()] = _value(value.strip())
    return RunSpec(name, check_options(name, ANALYSES[name].fn, options, f"--run {text!r}"))


@dataclass(frozen=True)
class Unit:
    """A grain of work: one spec over up to ``chunk`` rows, written as one part."""

    spec: RunSpec
    rows: tuple[dict[str, Any], ...]

    def keys(self) -> list[tuple[str, str, str]]:
        """The output keys of the unit's rows."""
        return [(r["id"], self.spec.method, self.spec.parameters) for r in self.rows]


def _length(row: dict[str, Any]) -> int:
    p = row.get("prompt")
    return len(p) if isinstance(p, str) else len(json.dumps(p)) if p is not None else 0


def plan(
    rows: list[dict[str, Any]],
    specs: list[RunSpec],
    chunk: int,
    done: set[tuple[str, str, str]] = frozenset(),
) -> list[Unit]:
    """The units still to run: every spec over the rows sorted by prompt length, in ``chunk``-row units.

    A unit whose keys are all in ``done`` is finished and left out; the cut never depends on ``done``.
    """
    if chunk < 1:
        raise InputError(f"chunk must be a positive number of rows, got {chunk!r}")
    ordered = sorted(rows, key=lambda r: (_length(r), r["row"]))
    units = []
    for spec in specs:
        for i in range(0, len(ordered), chunk):
            unit = Unit(spec, tuple(ordered[i : i + chunk]))
            if not all(k in done for k in unit.keys()):
                units.append(unit)
    return units


def _prompt_text(model, prompt: Any) -> str:
    if isinstance(prompt, list):
        from whyllm.model.chat import chat_prompt

        return chat_prompt(model, prompt)
    return prompt


def call_args(model, spec: RunSpec, row: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``spec``'s analysis for ``row`` (prompt, target/foil/corrupted, overrides)."""
    params = _accepted(spec.fn)
    kwargs = dict(spec.options)
    if row.get("options"):
        if not isinstance(row["options"], dict) or "__invalid__" in row["options"]:
            raise InputError(f"the row's options {row['options']!r} are not a JSON object")
        kwargs.update(check_options(spec.analysis, spec.fn, row["options"], f"row {row['id']!r} options"))
    prompt = row.get("prompt")
    if "prompt" in params:
        takes_chat = "list" in str(params["prompt"].annotation)
        kwargs["prompt"] = prompt if takes_chat else _prompt_text(model, prompt)
    else:
        kwargs["clean"] = _prompt_text(model, prompt)
    for name in _ROW_FIELDS:
        if name in params and row.get(name) is not None:
            kwargs[name] = row[name]
    if "corrupted" in params and "corrupted" not in kwargs:
        raise InputError(
            f"{spec.analysis} needs a corrupted prompt; add a 'corrupted' column to row {row['id']!r}"
        )
    return kwargs


def _message(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if isinstance(e, WhyllmError) else f"{type(e).__name__}: {text}"


def output_row(spec: RunSpec, row: dict[str, Any], result: Any, seconds: float) -> dict[str, Any]:
    """The flat output row of ``row`` under ``spec``: a result, or an exception as an error row."""
    base = {
        "id": row["id"],
        "row": row["row"],
        "method": spec.method,
        "parameters": spec.parameters,
        "seconds": seconds,
    }
    if isinstance(result, BaseException):
        return {**base, "status": "error", "error": _message(result), "result": None}
    doc = result.to_dict()
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, sort_keys=True)
    return {**base, "status": "ok", "error": None, "result": text, **figures(spec.analysis, doc)}


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def figures(analysis: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Key figures of a result document, as ``<analysis>.<name>`` columns (floats and strings)."""
    out: dict[str, Any] = {}
    for k, v in doc.items():  # every top-level number
        if _num(v) is not None and k != "schema_version" and not k.endswith("_id") and not k.startswith("n_"):
            out[k] = _num(v)
    if analysis == "predict":
        top = doc["top"][0] if doc.get("top") else {}
        out.update(top_token=top.get("token"), top_prob=_num(top.get("prob")))
        t = doc.get("target")
        if t:
            out.update(
                target_logprob=_num(sum(t["logprobs"])),
                target_rank=_num(t["ranks"][0]),
                target_correct=float(t["ranks"][0] == 1),
            )
    elif analysis == "explain":
        f = doc.get("faithfulness") or {}
        for k in ("comprehensiveness", "sufficiency", "deletion_auc"):
            out[k] = _num(f.get(k))
        units = doc.get("units") or []
        if units:
            best = max(units, key=lambda u: u["score"])
            out.update(top_unit=best["text"], top_unit_score=_num(best["score"]))
    elif analysis == "lens":
        layers = doc.get("layers") or []
        if layers and isinstance(layers[-1].get("top"), list) and layers[-1]["top"]:
            first = layers[-1]["top"][0]
            out["top_token"] = first.get("token") if isinstance(first, dict) else str(first)
    elif analysis == "components":
        out["top_head"] = (doc.get("top_heads") or [None])[0]
        out["top_mlp"] = (doc.get("top_mlps") or [None])[0]
    return {f"{analysis}.{k}": v for k, v in out.items()}


def _run_rows(model, unit: Unit) -> Iterator[tuple[dict[str, Any], Any, float]]:
    if unit.spec.analysis in _PACKED:
        from whyllm.batch import pack

        t0 = time.perf_counter()
        results = getattr(pack, f"{unit.spec.analysis}_many")(model, list(unit.rows), unit.spec.options)
        each = (time.perf_counter() - t0) / max(len(unit.rows), 1)
        yield from ((r, res, each) for r, res in zip(unit.rows, results, strict=True))
        return
    for row in unit.rows:
        t0 = time.perf_counter()
        try:
            res = unit.spec.fn(model, **call_args(model, unit.spec, row))
        except Exception as e:  # a bad row becomes an error row, never stops the run
            res = e
        yield row, res, time.perf_counter() - t0


def run_unit(model, unit: Unit) -> list[dict[str, Any]]:
    """Run one unit; every row comes back as an output row (``status`` ok or error)."""
    return [output_row(unit.spec, row, res, secs) for row, res, secs in _run_rows(model, unit)]

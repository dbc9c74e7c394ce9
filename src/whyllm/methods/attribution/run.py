"""The one runner of attribution: a request in, an :class:`~whyllm.AttributionResult` out.

Steps: embed the input; resolve the baseline and the faithfulness replacement; score the input and
the baseline (predicting the target when none was given); run the method; zero what a per-token row
cannot depend on; aggregate tokens into units; score faithfulness.
"""

from __future__ import annotations

from collections.abc import Generator

import torch
from torch import Tensor

from whyllm.methods.attribution.aggregate import UnitSpan, make_units, spread, unit_scores, unit_text
from whyllm.methods.attribution.baselines import resolve
from whyllm.methods.attribution.engine import Job, MethodOutput, Scoring, memory_cap, score
from whyllm.methods.attribution.faithfulness import plan as faithfulness_plan
from whyllm.methods.attribution.request import AttributionRequest
from whyllm.methods.attribution.targets import Target
from whyllm.methods.engine.progress import Progress
from whyllm.model.base import Model
from whyllm.results.attribution import AttributionResult, Faithfulness, Unit
from whyllm.results.base import meta

__all__ = ["run", "steps"]


def _score(model: Model, request: AttributionRequest, x: Tensor, base: Tensor
           ) -> tuple[Target, Tensor, Tensor]:
    """The target (the model's prediction if the request has none) on the input and on the baseline."""
    pair = torch.cat([x, base])  # (2, pos, d_model)
    target = request.target
    with torch.no_grad():
        if target is None:
            logits = model.hf(inputs_embeds=pair, logits_to_keep=1).logits.float()  # (2, 1, vocab)
            target = request.predicted(model, int(logits[0, -1].argmax()))
            if target.rows == 1:  # every read is at the last position: reuse these logits
                values = target.pick(logits.log_softmax(-1), x.shape[1])  # (2, 1)
            else:  # a multi-token foil needs its own rows
                values = target.scores(model, pair)
        else:
            values = target.scores(model, pair)  # (2, n_groups)
    return target, values[0].cpu(), values[1].cpu()


def _causal(out: MethodOutput, target: Target, units: list[UnitSpan], n: int) -> MethodOutput:
    """Zero what a group cannot depend on: tokens after its last read position (per-token matrix)."""
    if target.n_groups == 1:
        return out
    groups = range(target.n_groups)
    last = torch.stack([(target.read_off[target.read_group == g] + n - 1).max() for g in groups])
    if out.token_scores is not None:
        out.token_scores = out.token_scores * (torch.arange(n)[None, :] <= last[:, None])
    if out.unit_scores is not None:
        starts = torch.tensor([u.start for u in units])
        out.unit_scores = out.unit_scores * (starts[None, :] <= last[:, None])
    return out


def steps(model: Model, request: AttributionRequest, progress: Progress | None = None
          ) -> Generator[Scoring, Tensor, AttributionResult]:
    """:func:`run` as a generator that hands out its forward passes.

    It yields each batch of edited inputs to score (a :class:`Scoring`: the input and baseline pair, a
    masking method's inputs, the faithfulness inputs) and takes their scores ``(rows, n_groups)`` back,
    so that a caller may score the batches of several runs together (:mod:`whyllm.batch.pack`).
    Everything else (a method that is not a pure masking method, the prediction when no target is
    given) runs inside.
    """
    entry, prep = request.entry, request.prep
    max_memory = memory_cap(model, request.max_memory)
    units = make_units(prep, request.granularity)
    with torch.no_grad():
        x = model.adapter.embed(prep.ids)  # (1, pos, d_model)
    base, label, erase, erase_label = resolve(model, prep, x, request.baseline, erasure=entry.erasure)
    if request.target is None:
        target, full, empty = _score(model, request, x, base)
    else:
        target = request.target
        values = (yield Scoring(target, x, base, max_memory=max_memory)).cpu()  # (2, n_groups)
        full, empty = values[0], values[1]
    job = Job(model, prep, target, x, base, units, full, empty, max_memory, progress)
    if entry.scoring is not None:
        out = entry.output(job, (yield entry.scoring(job, **request.options)))
    else:
        out = entry.fn(job, **request.options)
    out = _causal(out, target, units, prep.n)
    if out.token_scores is not None:
        tokens, per_unit = out.token_scores, unit_scores(out.token_scores, units)
    else:
        tokens, per_unit = spread(out.unit_scores, units, prep.n), out.unit_scores
    total = per_unit.sum(0)  # (n_units,)
    faith = None
    if request.faithfulness:
        keep = [k for k, u in enumerate(units) if u.role != "output"]
        # one replacement for every method, so that their metrics compare (``whyllm evaluate``)
        p = faithfulness_plan([units[k] for k in keep], total[keep], prep.n, fractions=request.fractions)
        values = yield Scoring(target.summed(), x, erase, p.rows, max_memory=max_memory)  # (distinct, 1)
        rand = None
        if p.rand_rows is not None:  # the random orders: a batch of their own
            rand = (yield Scoring(target.summed(), x, erase, p.rand_rows, max_memory=max_memory))[:, 0]
        faith = p.result(values[:, 0], rand, float(full.sum()), erase_label)
    return _result(model, request, target, units, tokens, total, faith, label, out, float(full.sum()))


def run(model: Model, request: AttributionRequest, progress: Progress | None = None) -> AttributionResult:
    """Run one attribution request (see the module docstring): :func:`steps`, each batch scored here."""
    gen = steps(model, request, progress)
    try:
        scoring = next(gen)
        while True:
            scoring = gen.send(score(model, scoring))
    except StopIteration as stop:
        return stop.value


def _result(model: Model, request: AttributionRequest, target: Target, units: list[UnitSpan], tokens: Tensor,
            total: Tensor, faith: Faithfulness | None, label: str, out: MethodOutput,
            score: float) -> AttributionResult:
    prep = request.prep
    per_token = target.n_groups > 1
    return AttributionResult(
        prompt=request.text, method=request.method, granularity=request.granularity, target=target.text,
        target_ids=target.ids, foil=target.foil, foil_ids=target.foil_ids, target_kind=target.kind,
        score=score,
        input_ids=tuple(prep.ids[0].tolist()), input_tokens=prep.tokens,
        token_scores=tokens.sum(0).float().contiguous(),
        units=tuple(Unit(unit_text(prep, u), float(total[k]), u.start, u.end, u.role)
                    for k, u in enumerate(units)),
        faithfulness=faith, baseline=label, steps=out.steps, completeness_error=out.completeness_error,
        matrix=tokens.float().contiguous() if per_token else None,
        matrix_tokens=tuple(model.token_texts(list(target.ids))) if per_token else None,
        step=request.step.to_dict() if request.step is not None else None, extras=out.extras,
        meta=meta(model, "explain", attribution=request.method, granularity=request.granularity,
                  baseline=label, **request.params()),
    )

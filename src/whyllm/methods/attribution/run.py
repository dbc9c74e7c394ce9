"""The one runner of attribution: a request in, an :class:`~whyllm.AttributionResult` out.

Steps: embed the input; resolve the baseline and the faithfulness replacement; score the input and
the baseline (predicting the target when none was given); run the method; zero what a per-token row
cannot depend on; aggregate tokens into units; score faithfulness.
"""

from __future__ import annotations

import torch
from torch import Tensor

from whyllm.methods.attribution.aggregate import UnitSpan, make_units, spread, unit_scores, unit_text
from whyllm.methods.attribution.baselines import resolve
from whyllm.methods.attribution.engine import Job, MethodOutput, memory_cap
from whyllm.methods.attribution.faithfulness import faithfulness as score_faithfulness
from whyllm.methods.attribution.request import AttributionRequest
from whyllm.methods.attribution.targets import Target
from whyllm.methods.engine.progress import Progress
from whyllm.model.base import Model
from whyllm.results.attribution import AttributionResult, Faithfulness, Unit
from whyllm.results.base import meta

__all__ = ["run"]


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


def run(model: Model, request: AttributionRequest, progress: Progress | None = None) -> AttributionResult:
    """Run one attribution request (see the module docstring)."""
    entry, prep = request.entry, request.prep
    max_memory = memory_cap(model, request.max_memory)
    units = make_units(prep, request.granularity)
    with torch.no_grad():
        x = model.adapter.embed(prep.ids)  # (1, pos, d_model)
    base, label, erase, erase_label = resolve(model, prep, x, request.baseline, erasure=entry.erasure)
    target, full, empty = _score(model, request, x, base)
    job = Job(model, prep, target, x, base, units, full, empty, max_memory, progress)
    out = _causal(entry.fn(job, **request.options), target, units, prep.n)
    if out.token_scores is not None:
        tokens, per_unit = out.token_scores, unit_scores(out.token_scores, units)
    else:
        tokens, per_unit = spread(out.unit_scores, units, prep.n), out.unit_scores
    total = per_unit.sum(0)  # (n_units,)
    faith = None
    if request.faithfulness:
        keep = [k for k, u in enumerate(units) if u.role != "output"]
        # one replacement for every method, so that their metrics compare (``whyllm evaluate``)
        job_total = Job(model, prep, target.summed(), x, erase, units, full.sum(0, keepdim=True), None,
                        max_memory)
        faith = score_faithfulness(job_total, [units[k] for k in keep], total[keep],
                                   fractions=request.fractions, replacement=erase_label)
    return _result(model, request, target, units, tokens, total, faith, label, out, float(full.sum()))


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

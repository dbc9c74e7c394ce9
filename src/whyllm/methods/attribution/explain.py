"""``explain``: run one attribution method and score its faithfulness (shared by ``explain_step``)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.aggregate import make_units, spread, unit_scores, unit_text
from whyllm.methods.attribution.engine import Job, MethodOutput, Progress, memory_cap
from whyllm.methods.attribution.faithfulness import DEFAULT_FRACTIONS
from whyllm.methods.attribution.faithfulness import faithfulness as score_faithfulness
from whyllm.methods.attribution.inputs import Prepared, baseline_embeddings, extend, prepare
from whyllm.methods.attribution.registry import ERASURE_BASELINE, default_baseline, get_method
from whyllm.methods.attribution.targets import Target, continuation_target, per_token_target
from whyllm.model.base import Model
from whyllm.results.attribution import AttributionResult, Unit
from whyllm.results.base import meta
from whyllm.results.generate import GenerationResult

__all__ = ["explain"]


def _check(method: str, steps: object, options: dict[str, Any]) -> Any:
    fn = get_method(method)
    if steps != "auto" and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InputError(f"steps must be an integer >= 1 or 'auto', got {steps!r}")
    valid = [p for p in inspect.signature(fn).parameters if p != "job"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InputError(f"method {method!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(valid) or 'none'}")
    return fn


def _clean(model: Model, target: Target | None, x: Tensor, base: Tensor, foil_ids: list[int] | None,
           make) -> tuple[Target, Tensor, Tensor]:
    """Build the target (predicting the next token if needed) and score the input and the baseline."""
    pair = torch.cat([x, base])  # (2, pos, d_model)
    with torch.no_grad():
        if target is None:
            logits = model.hf(inputs_embeds=pair, logits_to_keep=1).logits.float()  # (2, 1, vocab)
            predicted = int(logits[0, -1].argmax())
            if foil_ids is not None and foil_ids == [predicted]:
                raise InputError("the foil is the model's own prediction; give a target (or another foil)")
            target = make(predicted)
            if target.rows == 1:  # every read is at the last position: reuse these logits
                values = target.pick(logits.log_softmax(-1), x.shape[1])  # (2, 1)
            else:  # a multi-token foil needs its own rows
                values = target.scores(model, pair)
        else:
            values = target.scores(model, pair)  # (2, n_groups)
    return target, values[0].cpu(), values[1].cpu()


def _causal(out: MethodOutput, target: Target, units, n: int) -> MethodOutput:
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


def _run(
    model: Model, prep: Prepared, target: Target | None, *, prompt_text: str, method: str, granularity: str,
    steps: int | str, baseline: str | Tensor, faithful: bool, fractions: tuple[float, ...],
    max_memory: int | None, progress: Progress, options: dict[str, Any], foil_ids: list[int] | None = None,
    make=None, step: dict | None = None,
) -> AttributionResult:
    """Prepare the embeddings, baseline and target, run the method, aggregate, score faithfulness."""
    fn = _check(method, steps, options)
    max_memory = memory_cap(model, max_memory)
    units = make_units(prep, granularity)
    with torch.no_grad():
        x = model.adapter.embed(prep.ids)  # (1, pos, d_model)
    given = not (isinstance(baseline, str) and baseline == "default")
    base, label = baseline_embeddings(model, prep, x, baseline if given else default_baseline(method))
    target, full, empty = _clean(model, target, x, base, foil_ids, make)
    job = Job(model, prep, target, x, base, units, full, empty, max_memory, progress)
    if method == "integrated_gradients":
        options = {"steps": steps, **options}
    out = _causal(fn(job, **options), target, units, prep.n)
    if out.token_scores is not None:
        tokens, per_unit = out.token_scores, unit_scores(out.token_scores, units)
    else:
        tokens, per_unit = spread(out.unit_scores, units, prep.n), out.unit_scores
    total = per_unit.sum(0)  # (n_units,)
    faith = None
    if faithful:
        keep = [k for k, u in enumerate(units) if u.role != "output"]
        # one replacement for every method, so that their metrics compare (``whyllm evaluate``)
        erase, erase_label = (base, label) if given else baseline_embeddings(model, prep, x, ERASURE_BASELINE)
        job_total = Job(model, prep, target.summed(), x, erase, units, full.sum(0, keepdim=True), None,
                        max_memory)
        faith = score_faithfulness(job_total, [units[k] for k in keep], total[keep], fractions=fractions,
                                   replacement=erase_label)
    return _result(model, prep, target, method, granularity, units, tokens, total, faith, label, out,
                   float(full.sum()), step, options, prompt_text)


def _result(model, prep, target, method, granularity, units, tokens, total, faith, label, out, score, step,
            options, prompt_text) -> AttributionResult:
    per_token = target.n_groups > 1
    params = {k: v for k, v in options.items() if isinstance(v, int | float | str | bool)}
    return AttributionResult(
        prompt=prompt_text,
        method=method, granularity=granularity, target=target.text, target_ids=target.ids, foil=target.foil,
        foil_ids=target.foil_ids, target_kind=target.kind, score=score, input_ids=tuple(prep.ids[0].tolist()),
        input_tokens=prep.tokens, token_scores=tokens.sum(0).float().contiguous(),
        units=tuple(Unit(unit_text(prep, u), float(total[k]), u.start, u.end, u.role)
                    for k, u in enumerate(units)),
        faithfulness=faith, baseline=label, steps=out.steps, completeness_error=out.completeness_error,
        matrix=tokens.float().contiguous() if per_token else None,
        matrix_tokens=tuple(model.token_texts(list(target.ids))) if per_token else None,
        step=step, extras=out.extras,
        meta=meta(model, "explain", attribution=method, granularity=granularity, baseline=label, **params),
    )


def _encode(model: Model, text: str | None, what: str) -> list[int] | None:
    return None if text is None else model.encode_continuation(text, what=what)


def explain(
    model: Model, prompt: str | list[dict[str, str]], *, target: str | None = None, foil: str | None = None,
    method: str = "integrated_gradients", granularity: str = "token", steps: int | str = 32,
    baseline: str | Tensor = "default", faithfulness: bool = True,
    continuation: str | GenerationResult | None = None, per_token: bool = False,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS, max_memory: int | None = None,
    progress: Progress = None, **method_options: Any,
) -> AttributionResult:
    """Which parts of ``prompt`` made the model produce ``target``?

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: text, or chat messages (``{"role", "content"}``; grouped by turn with ``granularity="turn"``,
            template tokens masked).
        target: the continuation to explain (one or several tokens: their total log-probability);
            ``None`` explains the model's predicted next token.
        foil: explain ``log p(target) - log p(foil)`` ("why target rather than foil").
        method: ``saliency``, ``input_x_gradient``, ``integrated_gradients``, ``occlusion``,
            ``attention``, ``attention_rollout`` or ``context_ablation``.
        granularity: ``token``, ``word``, ``sentence`` or ``turn`` (chat prompts).
        steps: integrated gradients' quadrature points, or ``"auto"`` (grow until the completeness
            error is under 1%).
        baseline: the "absent" input: ``"default"`` (the mean token embedding for occlusion, context
            ablation and the faithfulness metrics; the pad token's embedding for integrated gradients),
            ``"mean"``, ``"zero"``, a token, or a tensor (then used by the method and the metrics alike).
        faithfulness: also compute comprehensiveness, sufficiency and the deletion curve.
        continuation: a generated continuation to explain (text or a :class:`GenerationResult`, whose
            exact token ids are used) instead of ``target``.
        per_token: with a multi-token target, the matrix of each output token's attributions to the
            prompt and the earlier output tokens.
        fractions: top-k fractions for the faithfulness metrics.
        max_memory: activation memory per batch chunk, in bytes (larger batches are split); default
            1 GiB on CPU, a quarter of the free memory on a GPU.
        progress: called with ``(done, total)`` as the work advances.
        **method_options: method-specific options (e.g. ``samples``/``seed`` for context_ablation).
    """
    _check(method, steps, method_options)
    if continuation is not None:
        if target is not None:
            raise InputError("give either target or continuation, not both")
        if isinstance(continuation, GenerationResult):
            target, target_ids = continuation.text, list(continuation.ids)
        else:
            target, target_ids = continuation, model.encode_continuation(continuation, what="continuation")
    else:
        target_ids = _encode(model, target, "target")
    foil_ids = _encode(model, foil, "foil")
    if per_token and (target_ids is None or foil_ids is not None):
        raise InputError("per_token=True needs a target (or continuation) and no foil")
    prep = prepare(model, prompt, room=max(len(target_ids or [1]), len(foil_ids or [])) - 1)
    common = dict(prompt_text=prep.text, method=method, granularity=granularity, steps=steps,
                  baseline=baseline, faithful=faithfulness, fractions=fractions, max_memory=max_memory,
                  progress=progress, options=method_options)
    if per_token:
        prep = extend(model, prep, target_ids[:-1])
        return _run(model, prep, per_token_target(target_ids, target), **common)
    if target_ids is None:
        def make(pred: int) -> Target:
            kind = "next_token" if foil_ids is None else "contrast"
            text = model.tokenizer.decode([pred])
            return continuation_target(model, prep.n, [pred], text, foil_ids=foil_ids, foil=foil, kind=kind)
        return _run(model, prep, None, foil_ids=foil_ids, make=make, **common)
    tgt = continuation_target(model, prep.n, target_ids, target, foil_ids=foil_ids, foil=foil)
    return _run(model, prep, tgt, **common)

"""``explain_step``: why a generation sampled the token it did, under its own decoding settings."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.faithfulness import DEFAULT_FRACTIONS
from whyllm.methods.attribution.inputs import prepare_ids
from whyllm.methods.attribution.request import AttributionRequest, SampledStep, check_options
from whyllm.methods.attribution.run import run
from whyllm.methods.attribution.targets import continuation_target
from whyllm.methods.engine.progress import Progress
from whyllm.methods.engine.sampling import DecodingSettings, sampling_distribution
from whyllm.model.base import Model
from whyllm.results.attribution import AttributionResult
from whyllm.results.generate import GenerationResult

__all__ = ["explain_step", "step_distribution"]


def _settings(generation: GenerationResult) -> DecodingSettings:
    names = DecodingSettings.__dataclass_fields__
    return DecodingSettings(**{k: v for k, v in generation.settings.items() if k in names})


def _cand(model: Model, tid: int, lp: Tensor, dist: Tensor) -> dict[str, Any]:
    return {"token": model.tokenizer.decode([tid]), "id": tid, "prob": float(lp[tid].exp()),
            "sample_prob": float(dist[tid]), "cut": bool(dist[tid] == 0)}


def step_distribution(
    model: Model, ids: list[int], chosen: int, s: DecodingSettings, step: int, k: int = 5,
) -> SampledStep:
    """How token ``chosen`` was drawn after ``ids``: kept/cut candidates and the runner-up."""
    with torch.no_grad():
        inp = torch.tensor([ids], device=model.device)  # (1, pos)
        logits = model.hf(input_ids=inp, logits_to_keep=1).logits[0, -1].float()
    lp = logits.log_softmax(-1)  # (vocab,)
    dist = sampling_distribution(logits, s)  # (vocab,), zero where the settings cut
    others = dist.clone()
    others[chosen] = -1.0
    runner = int(others.argmax()) if float(others.max()) > 0 else None
    if runner is None:  # nothing else could be drawn: contrast with the model's next best token
        masked = lp.clone()
        masked[chosen] = float("-inf")
        runner = int(masked.argmax())
    kept_ids = dist.topk(min(k, int((dist > 0).sum()))).indices.tolist()
    cut_ids = lp.masked_fill(dist > 0, float("-inf")).topk(k).indices.tolist() if bool((dist == 0).any()) \
        else []
    return SampledStep(
        step=step, **_cand(model, chosen, lp, dist), temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
        greedy=s.is_greedy, kept=int((dist > 0).sum()), runner_up=_cand(model, runner, lp, dist),
        candidates=tuple(_cand(model, i, lp, dist) for i in kept_ids),
        cut_candidates=tuple(_cand(model, i, lp, dist) for i in cut_ids if float(lp[i]) > float("-inf")),
        keep=dist > 0,
    )


def explain_step(
    model: Model, generation: GenerationResult, step: int, *, method: str = "integrated_gradients",
    contrast: bool = True, granularity: str = "token", steps: int | str = 32,
    baseline: str | Tensor = "default",
    faithfulness: bool = True, fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    max_memory: int | None = None, progress: Progress | None = None, **method_options: Any,
) -> AttributionResult:
    """Explain the token a generation chose at ``step``, under the decoding settings it used.

    The input is the prompt plus the tokens generated before ``step``. The result's ``step`` field
    records the distribution actually sampled from (after temperature, top-k, top-p): the chosen
    token's model and sampling probabilities, how many tokens were kept, the best cut candidates
    and the runner-up (the likeliest other token that could have been drawn).

    Args:
        model: the model that generated (same tokenizer).
        generation: from :func:`whyllm.generate`.
        step: 0-based index of the generated token to explain.
        method: attribution method, as for :func:`whyllm.explain`.
        granularity: unit size (token, word, sentence).
        steps: integrated gradients' steps (or ``"auto"``).
        baseline: the "absent" input, as for :func:`whyllm.explain`.
        faithfulness: also compute the faithfulness metrics.
        fractions: top-k fractions of those metrics.
        max_memory: activation memory per batch chunk, in bytes.
        progress: called with ``(done, total)``.
        contrast: explain ``log p(chosen) - log p(runner-up)`` at the sampling temperature (default);
            ``False`` explains the chosen token's log-probability under the sampling distribution.
        **method_options: as for :func:`whyllm.explain`.
    """
    options = check_options(method, steps, method_options)
    if not isinstance(step, int) or not 0 <= step < len(generation.steps):
        last = len(generation.steps) - 1
        raise InputError(f"step {step!r} is out of range; this generation has steps 0..{last}")
    ids = list(generation.prompt_ids) + [s.id for s in generation.steps[:step]]
    if max(ids) >= model.adapter.d_vocab:
        raise InputError(f"the generation has token ids outside {model.name}'s vocabulary; "
                         "explain it with the model that generated it")
    s = _settings(generation)
    chosen = generation.steps[step].id
    info = step_distribution(model, ids, chosen, s, step)
    temperature = s.temperature if not s.is_greedy else 1.0
    prep = prepare_ids(model, ids, room=1)
    runner = info.runner_up
    if contrast:
        target = continuation_target(model, prep.n, [chosen], info.token, foil_ids=[runner["id"]],
                                     foil=runner["token"], kind="contrast", temperature=temperature)
    else:
        target = continuation_target(model, prep.n, [chosen], info.token, kind="sampled",
                                     temperature=temperature, keep=None if s.is_greedy else info.keep)
    request = AttributionRequest(
        text=prep.text, prep=prep, method=method, target=target, granularity=granularity, baseline=baseline,
        faithfulness=faithfulness, fractions=tuple(fractions), max_memory=max_memory,
        options=MappingProxyType(options), step=info,
    )
    return run(model, request, progress)

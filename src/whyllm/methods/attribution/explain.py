"""``explain``: run one attribution method and score its faithfulness."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from whyllm.methods.attribution.faithfulness import DEFAULT_FRACTIONS
from whyllm.methods.attribution.request import build
from whyllm.methods.attribution.run import run
from whyllm.methods.engine.progress import Progress
from whyllm.model.base import Model
from whyllm.results.attribution import AttributionResult
from whyllm.results.generate import GenerationResult

__all__ = ["explain"]


def explain(
    model: Model, prompt: str | list[dict[str, str]], *, target: str | None = None, foil: str | None = None,
    method: str = "integrated_gradients", granularity: str = "token", steps: int | str = 32,
    baseline: str | Tensor = "default", faithfulness: bool = True,
    continuation: str | GenerationResult | None = None, per_token: bool = False,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS, max_memory: int | None = None,
    progress: Progress | None = None, **method_options: Any,
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
    request = build(model, prompt, target=target, foil=foil, method=method, granularity=granularity,
                    steps=steps, baseline=baseline, faithfulness=faithfulness, continuation=continuation,
                    per_token=per_token, fractions=fractions, max_memory=max_memory, options=method_options)
    return run(model, request, progress)

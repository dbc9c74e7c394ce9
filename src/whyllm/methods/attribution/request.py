"""What one attribution run is asked to do: a frozen :class:`AttributionRequest`, built by :func:`build`.

``explain``, ``explain_step`` and ``evaluate`` all build requests and hand them to
:func:`whyllm.methods.attribution.run.run`, the one runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.faithfulness import DEFAULT_FRACTIONS
from whyllm.methods.attribution.inputs import Prepared, extend, prepare
from whyllm.methods.attribution.registry import METHODS, AttributionMethod
from whyllm.methods.attribution.targets import Target, continuation_target, per_token_target
from whyllm.methods.engine.limits import MAX_STEPS
from whyllm.model.base import Model
from whyllm.results.generate import GenerationResult

__all__ = ["AttributionRequest", "SampledStep", "build", "check_options"]


@dataclass(frozen=True)
class SampledStep:
    """How the token explained by ``explain_step`` was drawn: the distribution actually sampled from.

    Attributes:
        step: index of the generated token.
        token / id / prob / sample_prob / cut: the chosen token, its model probability, its probability
            under the decoding settings, and whether the settings cut it.
        temperature / top_k / top_p / greedy: the decoding settings.
        kept: how many tokens the settings kept.
        runner_up: the likeliest other token that could have been drawn (same fields as the chosen one).
        candidates / cut_candidates: the most likely kept and cut tokens.
        keep: ``(vocab,)`` bool, the tokens the settings kept (not part of the JSON document).
    """

    step: int
    token: str
    id: int
    prob: float
    sample_prob: float
    cut: bool
    temperature: float
    top_k: int | None
    top_p: float | None
    greedy: bool
    kept: int
    runner_up: dict[str, Any]
    candidates: tuple[dict[str, Any], ...]
    cut_candidates: tuple[dict[str, Any], ...]
    keep: Tensor = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record stored as the result's ``step``."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "keep"}
        return {**doc, "candidates": list(self.candidates), "cut_candidates": list(self.cut_candidates)}


@dataclass(frozen=True)
class AttributionRequest:
    """One attribution run.

    Attributes:
        text: the prompt as shown in the result (without appended outputs of a per-token matrix).
        prep: the tokenised input.
        method: the attribution method's name.
        target: what to explain; ``None``: the model's predicted next token (see :meth:`predicted`).
        foil_ids / foil: the contrast of a predicted target ("why the prediction rather than foil").
        granularity: ``token``, ``word``, ``sentence`` or ``turn``.
        baseline: the "absent" input (see :mod:`whyllm.methods.attribution.baselines`).
        faithfulness: also score the faithfulness metrics.
        fractions: their top-k fractions.
        max_memory: activation memory per chunk, in bytes (``None``: the default).
        options: the method's own options (e.g. ``steps`` for integrated gradients).
        step: for ``explain_step``, how the explained token was drawn.
    """

    text: str
    prep: Prepared
    method: str
    target: Target | None
    foil_ids: tuple[int, ...] | None = None
    foil: str | None = None
    granularity: str = "token"
    baseline: str | Tensor = "default"
    faithfulness: bool = True
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    max_memory: int | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    step: SampledStep | None = None

    @property
    def entry(self) -> AttributionMethod:
        """The registered method."""
        return METHODS[self.method]

    def predicted(self, model: Model, token_id: int) -> Target:
        """The target when the model's own prediction ``token_id`` is explained."""
        if self.foil_ids is not None and list(self.foil_ids) == [token_id]:
            raise InputError("the foil is the model's own prediction; give a target (or another foil)")
        kind = "next_token" if self.foil_ids is None else "contrast"
        text = model.tokenizer.decode([token_id])
        foil_ids = list(self.foil_ids) if self.foil_ids is not None else None
        return continuation_target(model, self.prep.n, [token_id], text, foil_ids=foil_ids, foil=self.foil,
                                   kind=kind)

    def params(self) -> dict[str, Any]:
        """The request's settings as stored in the result's provenance."""
        return {k: v for k, v in self.options.items() if isinstance(v, int | float | str | bool)}


def check_options(method: str, steps: object, options: Mapping[str, Any]) -> dict[str, Any]:
    """The method's options, with ``steps`` added when the method takes it; unknown options refused."""
    entry = METHODS[method]
    bad = isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS
    if steps != "auto" and bad:
        raise InputError(f"steps must be an integer from 1 to {MAX_STEPS} or 'auto', got {steps!r}")
    valid = entry.options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InputError(f"method {method!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(valid) or 'none'}")
    return {"steps": steps, **options} if "steps" in valid else dict(options)


def _encode(model: Model, text: str | None, what: str) -> list[int] | None:
    return None if text is None else model.encode_continuation(text, what=what)


def build(
    model: Model, prompt: str | list[dict[str, str]], *, target: str | None = None, foil: str | None = None,
    method: str = "integrated_gradients", granularity: str = "token", steps: int | str = 32,
    baseline: str | Tensor = "default", faithfulness: bool = True,
    continuation: str | GenerationResult | None = None, per_token: bool = False,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS, max_memory: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> AttributionRequest:
    """Check the arguments of :func:`whyllm.explain` (cheap checks first), tokenise, build the target."""
    opts = check_options(method, steps, options or {})
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
    text = prep.text
    if per_token:
        prep = extend(model, prep, target_ids[:-1])
        tgt = per_token_target(target_ids, target)
    elif target_ids is None:
        tgt = None
    else:
        tgt = continuation_target(model, prep.n, target_ids, target, foil_ids=foil_ids, foil=foil)
    return AttributionRequest(
        text=text, prep=prep, method=method, target=tgt,
        foil_ids=tuple(foil_ids) if foil_ids is not None else None, foil=foil, granularity=granularity,
        baseline=baseline, faithfulness=faithfulness,
        fractions=tuple(fractions), max_memory=max_memory, options=MappingProxyType(opts),
    )



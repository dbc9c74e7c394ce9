"""The attribution methods: name -> function ``fn(job, **options) -> MethodOutput``.

A new method is one module with its function and one line here; ``whyllm explain --method``, the API's
``method`` field and the docs table list it from this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from whyllm.methods.attribution.attention import attention, attention_rollout
from whyllm.methods.attribution.context_ablation import context_ablation
from whyllm.methods.attribution.gradients import input_x_gradient, saliency
from whyllm.methods.attribution.integrated import integrated_gradients
from whyllm.methods.attribution.occlusion import occlusion, occlusion_output, occlusion_scoring
from whyllm.methods.engine.registry import Entry, Registry

__all__ = ["METHODS", "AttributionMethod", "methods"]


@dataclass(frozen=True)
class AttributionMethod(Entry):
    """An attribution method.

    Attributes:
        erasure: it replaces tokens inside an otherwise real input (its default baseline is then the
            mean embedding, see :mod:`whyllm.methods.attribution.baselines`).
        uses_target: its scores depend on the target and foil (attention-based scores do not).
        scoring / output: for a method that only scores edited inputs, ``fn`` in two halves:
            ``scoring(job, **options) -> Scoring`` the inputs, ``output(job, scores) -> MethodOutput``;
            a runner may then score them itself (the batch engine packs several prompts' together).
    """

    erasure: bool = False
    uses_target: bool = True
    scoring: Callable[..., Any] | None = None
    output: Callable[..., Any] | None = None


METHODS: Registry[AttributionMethod] = Registry("attribution method", [
    AttributionMethod("saliency", saliency,
                      "Gradient of the target w.r.t. each token's embedding (L2 norm)."),
    AttributionMethod("input_x_gradient", input_x_gradient, "Embedding times gradient, summed (signed)."),
    AttributionMethod("integrated_gradients", integrated_gradients,
                      "Gradients integrated from the baseline to the input; they sum to the change."),
    AttributionMethod("occlusion", occlusion, "Replace each unit by the baseline and measure the change.",
                      erasure=True, scoring=occlusion_scoring, output=occlusion_output),
    AttributionMethod("attention", attention, "Last layer's attention from the predicting position.",
                      uses_target=False),
    AttributionMethod("attention_rollout", attention_rollout, "Attention multiplied through all layers.",
                      uses_target=False),
    AttributionMethod("context_ablation", context_ablation,
                      "Random ablations of many units at once, fitted by a sparse linear model.",
                      erasure=True),
])


def methods() -> list[str]:
    """Names of every attribution method."""
    return METHODS.names()

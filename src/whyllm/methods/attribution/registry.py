"""Attribution method names -> functions (``fn(job, **options) -> MethodOutput``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import MappingProxyType

from whyllm.errors import UnknownMethodError

__all__ = ["ERASURE_BASELINE", "default_baseline", "get_method", "methods"]

_METHODS = MappingProxyType({
    "saliency": "whyllm.methods.attribution.gradients:saliency",
    "input_x_gradient": "whyllm.methods.attribution.gradients:input_x_gradient",
    "integrated_gradients": "whyllm.methods.attribution.integrated:integrated_gradients",
    "occlusion": "whyllm.methods.attribution.occlusion:occlusion",
    "attention": "whyllm.methods.attribution.attention:attention",
    "attention_rollout": "whyllm.methods.attribution.attention:attention_rollout",
    "context_ablation": "whyllm.methods.attribution.context_ablation:context_ablation",
})

# What "absent" means when the user does not say (baseline="default"); see docs/attribution.md.
# Methods that replace tokens inside an otherwise real input (and the faithfulness metrics, which
# do the same) use the mean token embedding: an "average token" with no identity of its own. A
# specific token (pad) placed in a sentence is itself evidence, and what the model reads from it
# depends on which token it is. Path methods (integrated gradients) start from a content-free input
# made of one real token (the default token, pad on most models), whose path converges best.
ERASURE_BASELINE = "mean"
_ERASURE = frozenset({"occlusion", "context_ablation"})


def default_baseline(name: str) -> str:
    """``"mean"`` for methods that erase tokens in context, ``"default"`` (the default token) otherwise."""
    return ERASURE_BASELINE if name in _ERASURE else "default"


def methods() -> list[str]:
    """Names of every attribution method."""
    return sorted(_METHODS)


def get_method(name: str) -> Callable:
    """The method registered as ``name``; unknown names list the valid ones."""
    if name not in _METHODS:
        raise UnknownMethodError("attribution method", name, list(_METHODS))
    module, func = _METHODS[name].split(":")
    return getattr(importlib.import_module(module), func)

"""Attribution method names -> functions (``fn(job, **options) -> MethodOutput``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import MappingProxyType

from whyllm.errors import UnknownMethodError

__all__ = ["get_method", "methods"]

_METHODS = MappingProxyType({
    "saliency": "whyllm.methods.attribution.gradients:saliency",
    "input_x_gradient": "whyllm.methods.attribution.gradients:input_x_gradient",
    "integrated_gradients": "whyllm.methods.attribution.integrated:integrated_gradients",
    "occlusion": "whyllm.methods.attribution.occlusion:occlusion",
    "attention": "whyllm.methods.attribution.attention:attention",
    "attention_rollout": "whyllm.methods.attribution.attention:attention_rollout",
    "context_ablation": "whyllm.methods.attribution.context_ablation:context_ablation",
})


def methods() -> list[str]:
    """Names of every attribution method."""
    return sorted(_METHODS)


def get_method(name: str) -> Callable:
    """The method registered as ``name``; unknown names list the valid ones."""
    if name not in _METHODS:
        raise UnknownMethodError("attribution method", name, list(_METHODS))
    module, func = _METHODS[name].split(":")
    return getattr(importlib.import_module(module), func)

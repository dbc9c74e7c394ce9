"""Name -> function tables, so interfaces (CLI, server, batch) look methods up in one place."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import MappingProxyType

from whyllm.errors import UnknownMethodError

__all__ = ["analyses", "get_analysis"]

# Each entry: public name -> "module:function". Every function takes (model, ...) and returns a Result.
_ANALYSES = MappingProxyType({
    "predict": "whyllm.methods.predict:predict",
    "generate": "whyllm.methods.generate:generate",
    "sample": "whyllm.methods.generate:sample",
    "explain": "whyllm.methods.attribution:explain",
    "lens": "whyllm.methods.lens:logit_lens",
    "components": "whyllm.methods.components:components",
    "attention": "whyllm.methods.attention:attention",
    "patch": "whyllm.methods.patching:patch",
    "trace": "whyllm.methods.tracing:causal_trace",
})


def analyses() -> list[str]:
    """Names of every analysis."""
    return sorted(_ANALYSES)


def get_analysis(name: str) -> Callable:
    """The function registered as ``name``; unknown names list the valid ones."""
    if name not in _ANALYSES:
        raise UnknownMethodError("analysis", name, list(_ANALYSES))
    module, func = _ANALYSES[name].split(":")
    return getattr(importlib.import_module(module), func)

"""Model layer: loading, the architecture adapter and hooks."""

from whyllm.model.adapter import ModelAdapter
from whyllm.model.architectures import ArchitectureSpec, register_architecture
from whyllm.model.base import Model
from whyllm.model.load import DEFAULT_MODEL, cache_dir, load_model

__all__ = [
    "DEFAULT_MODEL",
    "ArchitectureSpec",
    "Model",
    "ModelAdapter",
    "cache_dir",
    "load_model",
    "register_architecture",
]

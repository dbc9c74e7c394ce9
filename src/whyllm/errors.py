"""Exceptions raised by whyllm.

Every error a user can cause derives from :class:`WhyllmError`; the CLI turns these into one line on
stderr and exit code 2, the server into a 4xx JSON body. Anything else is a bug and keeps its traceback.

Hierarchy::

    WhyllmError
    ├── InputError (ValueError)            bad prompt, target, parameter or option
    │   └── PromptTooLongError             prompt longer than the model's context window
    ├── UnknownMethodError (ValueError)    a method/command name not in the registry
    ├── ModelLoadError (OSError)           missing, corrupt, unsafe or unreadable model files
    │   └── UnsupportedModelError          not a causal LM, or the adapter cannot find a part it needs
    └── ParityError (RuntimeError)         the adapter's view does not reproduce the model's logits
"""

from __future__ import annotations

__all__ = [
    "InputError",
    "ModelLoadError",
    "ParityError",
    "PromptTooLongError",
    "UnknownMethodError",
    "UnsupportedModelError",
    "WhyllmError",
]


class WhyllmError(Exception):
    """Base class of every error whyllm raises on purpose."""


class InputError(WhyllmError, ValueError):
    """A prompt, target, option or parameter the user gave is not valid."""


class PromptTooLongError(InputError):
    """The prompt has more tokens than the model's context window allows."""


class UnknownMethodError(WhyllmError, ValueError):
    """A name looked up in a registry does not exist; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.valid)}")


class ModelLoadError(WhyllmError, OSError):
    """The model could not be loaded: the message names the file and the reason."""


class UnsupportedModelError(ModelLoadError):
    """The model is not a causal LM, or its architecture lacks a part whyllm needs."""


class ParityError(WhyllmError, RuntimeError):
    """The adapter's decomposition does not reproduce the model's own logits."""

"""Hooks that exist only inside a ``with`` block.

Every context manager here registers PyTorch forward hooks on entry and removes all of them in
``finally``, so an exception inside the block (or inside a hook) never leaves a hook behind.

* :func:`capture` records module outputs (or inputs) by name.
* :func:`intervene` replaces module outputs (or inputs) through a user function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["capture", "intervene", "main_tensor", "n_hooks", "raw_hooks"]


def main_tensor(value: Any) -> Tensor:
    """Return the hidden-state tensor of a module output/input (first element of tuples)."""
    return value[0] if isinstance(value, tuple | list) else value


def _replace_main(value: Any, new: Tensor) -> Any:
    if isinstance(value, tuple):
        return (new, *value[1:])
    if isinstance(value, list):
        return [new, *value[1:]]
    return new


def _first_input(args: tuple, kwargs: dict) -> Tensor:
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def _registered(handles: list[RemovableHandle]) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture(
    modules: Mapping[str, nn.Module], *, inputs: bool = False, detach: bool = True
) -> Iterator[dict[str, Tensor]]:
    """Record each module's main output (or first input) under its name.

    Args:
        modules: name -> module to watch.
        inputs: record the module's first input (``hidden_states``) instead of its output.
        detach: detach the recorded tensors (set ``False`` to keep them in the autograd graph).

    Yields:
        A dict filled as the forward pass runs; a module called twice keeps its last value.

    """
    store: dict[str, Tensor] = {}
    handles: list[RemovableHandle] = []

    def keep(name: str, t: Tensor) -> None:
        store[name] = t.detach() if detach else t

    try:
        for name, mod in modules.items():
            if inputs:
                handles.append(
                    mod.register_forward_pre_hook(
                        lambda m, a, k, n=name: keep(n, _first_input(a, k)), with_kwargs=True
                    )
                )
            else:
                handles.append(mod.register_forward_hook(lambda m, a, o, n=name: keep(n, main_tensor(o))))
    except BaseException:
        for h in handles:
            h.remove()
        raise
    with _registered(handles):
        yield store


@contextmanager
def intervene(
    modules: Mapping[nn.Module, Callable[[Tensor], Tensor]], *, inputs: bool = False
) -> Iterator[None]:
    """Replace each module's main output (or first input) by ``fn(tensor)`` while the block runs."""
    handles: list[RemovableHandle] = []

    def pre(fn: Callable[[Tensor], Tensor]) -> Callable:
        def hook(m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

        return hook

    try:
        for mod, fn in modules.items():
            if inputs:
                handles.append(mod.register_forward_pre_hook(pre(fn), with_kwargs=True))
            else:
                handles.append(
                    mod.register_forward_hook(lambda m, a, o, f=fn: _replace_main(o, f(main_tensor(o))))
                )
    except BaseException:
        for h in handles:
            h.remove()
        raise
    with _registered(handles):
        yield


@contextmanager
def raw_hooks(modules: Sequence[nn.Module], make: Callable[[int], Callable], *, pre: bool) -> Iterator[None]:
    """Register ``make(i)`` on ``modules[i]`` (pre-hook with kwargs, or forward hook); remove in ``finally``.

    For hooks that need more than the main hidden states :func:`capture` and :func:`intervene` hand
    over: restarting a pass at a block needs the masks and position embeddings the model passes as
    keyword arguments, and attention weights are an attention module's second output.
    """
    handles = []
    try:
        for i, mod in enumerate(modules):
            if pre:
                handles.append(mod.register_forward_pre_hook(make(i), with_kwargs=True))
            else:
                handles.append(mod.register_forward_hook(make(i)))
        yield
    finally:
        for h in handles:
            h.remove()


def n_hooks(model: nn.Module) -> int:
    """Count the forward (pre-)hooks on ``model`` and its submodules (for hook-leak tests)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

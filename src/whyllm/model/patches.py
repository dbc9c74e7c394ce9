"""Every temporary change whyllm makes to a loaded model, each undone when its ``with`` block ends.

All of them have one shape: remember the state, change it, ``yield``, restore in ``finally`` (so an
exception inside the block never leaves the model changed). Methods never change a model any other
way; the hook-leak tests check that after every method, on success and on error.

* :func:`eager_attention`: attention that materialises (and returns) its weights.
* :func:`attention_weights`: record those weights per layer.
* :func:`frozen`: parameters without gradients (input gradients only) and, on CPU, the math SDPA kernel.
* :func:`requires_grad`: some parameters with gradients (parameter attribution).
* :func:`block_calls`: record every block's input and the other arguments the model calls it with.
* :func:`on_every_block`: call a function before every block runs (progress, cancellation).
* :func:`checkpointing`: activation (gradient) checkpointing, trading compute for memory in training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

from torch import Tensor, nn

from whyllm.errors import UnsupportedModelError
from whyllm.model.base import Model
from whyllm.model.hooks import intervene, raw_hooks

__all__ = [
    "attention_weights", "block_calls", "checkpointing", "eager_attention", "frozen", "on_every_block",
    "requires_grad",
]


@contextmanager
def eager_attention(model: Model) -> Iterator[None]:
    """Switch the model to eager attention for the block; restore its implementation after.

    Fused kernels (SDPA, flash) never materialise the attention weights.
    """
    hf = model.hf
    original = hf.config._attn_implementation
    changed = original != "eager"
    if changed:
        hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        if changed:
            hf.set_attn_implementation(original)


@contextmanager
def attention_weights(model: Model, layers: Sequence[int]) -> Iterator[dict[int, Tensor]]:
    """Record the attention weights ``(batch, head, query, key)`` of ``layers`` (needs eager attention).

    Filled as the forward pass runs. (``output_attentions=True`` would make transformers install
    permanent hooks on the model.)
    """
    store: dict[int, Tensor] = {}
    mods = [model.adapter.part(layer, "attn") for layer in layers]

    def make(i: int) -> Callable:
        def hook(mod: nn.Module, args: tuple, output: object) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if isinstance(weights, Tensor):
                store[layers[i]] = weights.detach()

        return hook

    with raw_hooks(mods, make, pre=False):
        yield store


def check_weights(model: Model, weights: dict[int, Tensor], layers: Sequence[int]) -> None:
    """Raise :class:`UnsupportedModelError` if some of ``layers`` returned no attention weights."""
    if len(weights) != len(layers):
        raise UnsupportedModelError(
            f"{model.name}: the attention modules return no weights even with eager attention; "
            "whyllm cannot show their patterns"
        )


@contextmanager
def frozen(model: Model) -> Iterator[None]:
    """Gradient-friendly settings inside the block (restored after, even on error).

    * Parameters get ``requires_grad=False``: gradients are then taken with respect to the input
      embeddings only, no weight gradient is computed, and autograd does not keep the activations
      that only weight gradients need.
    * On CPU, scaled-dot-product attention uses its math backend: the fused CPU flash-attention
      backward meets denormal floats and runs ~50 times slower (measured on Gemma 3 270M, 128 tokens).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = list(model.hf.parameters())
    flags = [p.requires_grad for p in params]
    kernels = sdpa_kernel([SDPBackend.MATH]) if model.device.type == "cpu" else nullcontext()
    try:
        for p in params:
            p.requires_grad_(False)
        with kernels:
            yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@contextmanager
def requires_grad(params: Sequence[nn.Parameter], flag: bool = True) -> Iterator[None]:
    """Set ``requires_grad`` of ``params`` to ``flag`` for the block; restore each one's own after."""
    old = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(flag)
        yield
    finally:
        for p, r in zip(params, old, strict=True):
            p.requires_grad_(r)


@contextmanager
def block_calls(model: Model) -> Iterator[list]:
    """Record each block's hidden states and the other arguments it is called with.

    Yields a list with, per block, ``(hidden_states, other positional args, keyword args)`` (masks,
    position embeddings...), filled as the forward pass runs: what restarting a pass at a block needs.
    """
    blocks = model.adapter.blocks
    store: list = [None] * len(blocks)

    def make(i: int) -> Callable:
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            if args:
                store[i] = (args[0].detach(), tuple(args[1:]), dict(kwargs))
            else:
                rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                store[i] = (kwargs["hidden_states"].detach(), (), rest)

        return hook

    with raw_hooks(blocks, make, pre=True):
        yield store


def on_every_block(model: Model, fn: Callable[[int], None]) -> Iterator[None]:
    """Call ``fn(layer)`` before every block runs (e.g. to count passes or stop a cancelled job)."""

    def make(layer: int) -> Callable[[Tensor], Tensor]:
        def call(hidden: Tensor) -> Tensor:
            fn(layer)
            return hidden

        return call

    return intervene({b: make(i) for i, b in enumerate(model.adapter.blocks)}, inputs=True)


@contextmanager
def checkpointing(model: Model) -> Iterator[None]:
    """Activation checkpointing for the block (recompute activations in the backward pass)."""
    hf = model.hf
    was = bool(getattr(hf, "is_gradient_checkpointing", False))
    if not was:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        if not was:
            hf.gradient_checkpointing_disable()

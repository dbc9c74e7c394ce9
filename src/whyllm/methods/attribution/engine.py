"""Shared machinery of the attribution methods: memory-capped chunking and batched runs on edited inputs.

:func:`masked_scores` is what occlusion, context ablation and the faithfulness metrics all run: the
target on many copies of the input, each with some tokens replaced by the baseline. Rows are sorted
by their first replaced token and batched; the tokens before a chunk's first replaced token are the
same in every row, so they run once (batch 1) and their key/value cache is expanded to the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.aggregate import UnitSpan
from whyllm.methods.attribution.inputs import Prepared
from whyllm.methods.attribution.targets import Target
from whyllm.methods.engine.progress import Progress, report
from whyllm.model.base import Model

__all__ = [
    "DEFAULT_MAX_MEMORY", "Job", "MethodOutput", "Scoring", "masked_scores", "memory_cap",
    "rows_per_chunk", "score",
]

# on CPU: bytes of activations one chunk may hold (gradients included). Bigger chunks run a little
# faster: integrated gradients on Gemma 3 270M, 128 tokens, took 0.39 / 0.32 / 0.29 / 0.30 s a step
# with 1 / 4 / 8 / 16 rows per chunk (1 GiB holds 5). 1 GiB keeps the peak at 2.5 GB, a fifth of
# Captum's 12-13 GB; 8 rows would add 0.5 GB for ~6% less time.
DEFAULT_MAX_MEMORY = 2**30
_GPU_SHARE = 0.25  # on a GPU: that share of its free memory
# forward-only chunks, in tokens: on CPU bigger batches run slower per token (cache misses); a GPU
# wants large batches
_TOKENS_PER_CHUNK = {"cpu": 1024}
_TOKENS_PER_CHUNK_OTHER = 16384
_MIN_PREFIX = 4  # shorter shared prefixes are not worth a separate forward


def memory_cap(model: Model, max_memory: int | None) -> int:
    """``max_memory``, or the default: 1 GiB on CPU, a quarter of a GPU's free memory (at least 1 GiB)."""
    if max_memory is not None:
        if isinstance(max_memory, bool) or not isinstance(max_memory, int) or max_memory < 1:
            raise InputError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
        return max_memory
    dev = model.device
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return max(DEFAULT_MAX_MEMORY, int(_GPU_SHARE * free))
    return DEFAULT_MAX_MEMORY


def rows_per_chunk(model: Model, seq_len: int, n_read: int, *, grad: bool, max_memory: int) -> int:
    """How many input rows of ``seq_len`` tokens fit in ``max_memory`` bytes (at least 1).

    An estimate of what autograd keeps per token and layer (hidden states, the MLP's activations,
    attention weights) plus the read positions' vocabulary-sized log-probabilities, about 1.2 times
    what Gemma 3 270M was measured to hold (150 MB per 128-token row with gradients).
    """
    a = model.adapter
    if grad:
        per_token = a.n_layers * (16 * a.d_model + 4 * a.d_mlp + 3 * a.n_heads * seq_len)
        vocab = n_read * a.d_vocab * 4
    else:  # only one layer's activations live at a time
        per_token = 8 * a.d_model + 3 * a.d_mlp + 2 * a.n_heads * seq_len
        vocab = n_read * a.d_vocab * 2
    row = 4 * (seq_len * per_token + vocab)  # float32 bytes
    return max(1, int(max_memory // row))


def _chunks(first: Tensor, length: int, rows: int, max_rows: int, budget: int) -> list[Tensor]:
    """Row indices in chunks, sorted by first replaced token, each chunk within the token budget."""
    order = torch.argsort(first, stable=True)
    chunks, current = [], []
    for idx in order.tolist():
        s = int(first[current[0]]) if current else int(first[idx])
        grown = len(current) + 1
        if current and (grown > max_rows or grown * rows * (length - s) > budget):
            chunks.append(torch.tensor(current))
            current = []
        current.append(idx)
    if current:
        chunks.append(torch.tensor(current))
    return chunks


@torch.no_grad()
def masked_scores(
    model: Model, target: Target, x: Tensor, base: Tensor, masks: Tensor, *,
    max_memory: int = DEFAULT_MAX_MEMORY, reuse_prefix: bool = True, progress: Progress | None = None,
) -> Tensor:
    """The target on copies of the input with the ``masks``' tokens replaced by the baseline.

    Args:
        model: the model.
        target: what to score.
        x: ``(1, pos, d_model)`` input embeddings.
        base: ``(1, pos, d_model)`` baseline embeddings.
        masks: ``(rows, pos)`` bool, True where a row replaces the token.
        max_memory: activation memory cap per chunk, in bytes.
        reuse_prefix: run each chunk's unchanged prefix once and share its key/value cache.
        progress: called with ``(rows done, rows)``.

    Returns:
        ``(rows, n_groups)`` scores.
    """
    n_rows, length = masks.shape
    dev = x.device
    masks = masks.to(dev)
    # the shared prefix must end before the earliest position the target reads
    cap = length - 1 + target.min_offset
    first = torch.where(masks.any(1), masks.int().argmax(1), torch.full((n_rows,), length, device=dev))
    first = first.clamp(max=cap).cpu() if reuse_prefix else torch.zeros(n_rows, dtype=torch.long)
    max_rows = rows_per_chunk(model, length, target.read_off.numel(), grad=False, max_memory=max_memory)
    out = torch.empty(n_rows, target.n_groups)
    done = 0
    budget = _TOKENS_PER_CHUNK.get(dev.type, _TOKENS_PER_CHUNK_OTHER)
    for idx in _chunks(first, length, target.rows, max_rows, budget):
        s = int(first[idx[0]])
        rows = torch.where(masks[idx.to(dev), :, None], base, x)  # (chunk, pos, d_model)
        cache = None
        if s >= _MIN_PREFIX:
            cache = model.hf(inputs_embeds=x[:, :s], use_cache=True, logits_to_keep=1).cache
            cache.batch_repeat_interleave(len(idx) * target.rows)
            rows = rows[:, s:]
        out[idx] = target.scores(model, rows, cache=cache).float().cpu()
        done += len(idx)
        report(progress, done, n_rows)
    return out


@dataclass(frozen=True, eq=False)
class Scoring:
    """One batch of edited inputs to score, as an attribution run asks for it (``run.steps``).

    Attributes:
        target: what to score.
        x / base: ``(1, pos, d_model)`` input and baseline embeddings.
        masks: ``(rows, pos)`` bool, True where a row takes the baseline; ``None``: the input and the
            baseline themselves (two rows).
        max_memory / reuse_prefix / progress: as :func:`masked_scores` takes them.
    """

    target: Target
    x: Tensor
    base: Tensor
    masks: Tensor | None = None
    max_memory: int = DEFAULT_MAX_MEMORY
    reuse_prefix: bool = True
    progress: Progress | None = None

    @property
    def length(self) -> int:
        """Input tokens."""
        return int(self.x.shape[1])

    def inputs(self) -> Tensor:
        """The edited inputs, ``(rows, pos, d_model)``."""
        if self.masks is None:
            return torch.cat([self.x, self.base])
        return torch.where(self.masks.to(self.x.device)[:, :, None], self.base, self.x)


def score(model: Model, s: Scoring) -> Tensor:
    """Run one :class:`Scoring` on its own: ``(rows, n_groups)`` scores on the model's device or CPU."""
    if s.masks is None:
        with torch.no_grad():
            return s.target.scores(model, s.inputs())
    return masked_scores(model, s.target, s.x, s.base, s.masks, max_memory=s.max_memory,
                         reuse_prefix=s.reuse_prefix, progress=s.progress)


@dataclass(eq=False)
class Job:
    """Everything a method needs about one attribution run.

    Attributes:
        model / prep / target: the model, the tokenised input and the target function.
        x / base: ``(1, pos, d_model)`` input and baseline embeddings (masked tokens equal in both).
        units: the units a unit-level method scores.
        full / empty: ``(n_groups,)`` target on the input and on the baseline (``empty`` is ``None``
            for the faithfulness metrics, which score the fully erased input themselves).
        max_memory: activation memory cap per chunk, in bytes.
        progress: called with ``(done, total)`` as work advances.
    """

    model: Model
    prep: Prepared
    target: Target
    x: Tensor
    base: Tensor
    units: list[UnitSpan]
    full: Tensor
    empty: Tensor | None
    max_memory: int = DEFAULT_MAX_MEMORY
    progress: Progress | None = None

    @property
    def free(self) -> Tensor:
        """``(pos,)`` bool on the model's device: tokens that may be attributed."""
        return ~self.prep.masked.to(self.x.device)


@dataclass
class MethodOutput:
    """What a method returns: token scores ``(n_groups, pos)`` or unit scores ``(n_groups, n_units)``."""

    token_scores: Tensor | None = None
    unit_scores: Tensor | None = None
    steps: int | None = None
    completeness_error: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)

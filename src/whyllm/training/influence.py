"""Training-data attribution: which training examples raised (or lowered) one prediction.

TracIn over the run's saved checkpoints (Pruthi et al. 2020, "TracInCP"): an example's score is

    sum_c  lr * (step[c+1] - step[c]) * grad log p(target | prompt; θ_c) . -grad loss(example; θ_c)

i.e. how much the gradient steps taken between checkpoints on that example moved the target's
log-probability, to first order (plain SGD assumed; the run's AdamW rescales directions, a known
approximation of TracIn). The last checkpoint closes the last interval and is not used itself.

The dot products are exact and never form a per-example gradient: for a linear layer the example's
weight gradient is ``sum_t gy_t ⊗ x_t`` (output gradient times input at each position), so its dot
product with the test gradient ``G`` is ``sum_t gy_t · (G x_t)``, read off one batched forward and
backward over many examples; embeddings likewise (``sum_t G[id_t] · gy_t``). All matrices and biases
of linear layers and embeddings count; norm gains (well under 1% of the parameters) are left out.
A naive loop (one backward and one full flattened gradient per example), :func:`tracin_reference`,
computes the same numbers for checks and benchmarks.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whyllm.errors import InputError
from whyllm.model.base import Model
from whyllm.model.hooks import raw_hooks
from whyllm.results.base import meta
from whyllm.results.params import InfluenceExample, InfluenceResult

__all__ = ["influence", "target_log_prob", "tracin_reference", "tracin_scores"]

PAD = 0
Progress = Callable[[int, int], None]


def _tracked(model: nn.Module) -> list[nn.Module]:
    """Linear layers and embeddings whose weights train (all-zero frozen weights are skipped)."""
    out = []
    for mod in model.modules():
        w = getattr(mod, "weight", None)
        linear = isinstance(mod, nn.Linear | nn.Embedding) or type(mod).__name__ == "Conv1D"
        if linear and isinstance(w, nn.Parameter) and w.requires_grad and bool(w.detach().ne(0).any()):
            out.append(mod)
    return out


def _params(mods: Sequence[nn.Module]) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for m in mods:
        for p in (m.weight, getattr(m, "bias", None)):
            if isinstance(p, nn.Parameter):
                seen.setdefault(id(p), p)
    return list(seen.values())


def _test_loss(model: nn.Module, prompt_ids: Tensor, target_ids: Sequence[int]) -> Tensor:
    """``-log p(target | prompt)`` summed over the target's tokens (teacher-forced)."""
    ids = torch.cat([prompt_ids, torch.tensor([list(target_ids)], dtype=prompt_ids.dtype)], 1)  # (1, pos)
    logits = model(input_ids=ids, use_cache=False).logits[0, prompt_ids.shape[1] - 1:-1].float()
    return -logits.log_softmax(-1)[torch.arange(len(target_ids)), torch.tensor(list(target_ids))].sum()


def _example_losses(model: nn.Module, batch: Tensor) -> Tensor:
    """Each example's training loss (mean next-token cross-entropy over its non-padding targets)."""
    logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()  # (batch, pos-1, vocab)
    gold = batch[:, 1:]
    loss = F.cross_entropy(logits.transpose(1, 2), gold, reduction="none")  # (batch, pos-1)
    mask = (gold != PAD).float()
    return (loss * mask).sum(1) / mask.sum(1).clamp(min=1)


def _test_grads(model: nn.Module, mods: list[nn.Module], prompt_ids: Tensor,
                target_ids: Sequence[int]) -> dict[int, Tensor]:
    params = _params(mods)
    with torch.enable_grad():
        loss = _test_loss(model, prompt_ids, target_ids)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {id(p): (g if g is not None else torch.zeros_like(p)).detach()
            for p, g in zip(params, grads, strict=True)}


def _embed_scale(mod: nn.Module) -> float:
    """Constant factor a scaled embedding (Gemma's) applies after the lookup."""
    return float(getattr(mod, "embed_scale", 1.0))


def _batch_dots(model: nn.Module, mods: list[nn.Module], test: dict[int, Tensor], batch: Tensor) -> Tensor:
    """``grad loss(example) . test_grad`` for every example of ``batch``: ``(batch,)``."""
    store: dict[nn.Module, tuple[Tensor, Tensor]] = {}

    def make(i: int):
        def hook(mod: nn.Module, args: tuple, out: Tensor) -> Tensor:
            if not out.requires_grad:
                out = out.detach().requires_grad_(True)
            store[mod] = (args[0].detach(), out)
            return out

        return hook

    with torch.enable_grad(), raw_hooks(mods, make, pre=False):
        losses = _example_losses(model, batch)
        used = [m for m in mods if m in store]
        gys = torch.autograd.grad(losses.sum(), [store[m][1] for m in used], allow_unused=True)
    dots = torch.zeros(batch.shape[0])
    for mod, gy in zip(used, gys, strict=True):
        if gy is None:
            continue
        x, gy = store[mod][0], gy.float()
        g_w = test[id(mod.weight)].float()
        if isinstance(mod, nn.Embedding):  # sum_t G[id_t] . gy_t (times the lookup's scale)
            dots += _embed_scale(mod) * (g_w[x] * gy).sum(-1).flatten(1).sum(1)
            continue
        gx = x.float() @ (g_w.T if type(mod).__name__ != "Conv1D" else g_w)  # (batch, pos, out) = G x_t
        dots += (gy * gx).flatten(1).sum(1)
        bias = getattr(mod, "bias", None)
        if isinstance(bias, nn.Parameter) and id(bias) in test:
            dots += (gy * test[id(bias)].float()).flatten(1).sum(1)
    return dots


def _load(path: Path, examples: list[dict[str, Any]] | None = None) -> Model:
    """Load a checkpoint as a whyllm model, checking its tokenizer against ``examples`` first."""
    from whyllm.model.load import load_model

    if examples is not None:
        _check_tokenizer(path, examples)
    return load_model(str(path))


def _check_tokenizer(path: Path, examples: list[dict[str, Any]]) -> None:
    """The checkpoint's tokenizer must be the run's: ids inside the model's vocabulary, same encoding.

    Checked on the tokenizer files alone, before the model loads (a tokenizer larger than the
    embedding would otherwise fail inside the model).
    """
    import json

    from transformers import AutoTokenizer

    from whyllm.model.gguf_cache import transformers_quiet

    with transformers_quiet():
        tok = AutoTokenizer.from_pretrained(path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    vocab = int(config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size") or len(tok))
    top = max(max(e["input_ids"]) for e in examples)
    first = examples[0]
    ids = [i for i in first["input_ids"] if i != PAD]
    again = list(tok(first["text"], add_special_tokens=True)["input_ids"])
    if top >= vocab or len(tok) > vocab or again != ids[:len(again)] or len(again) < len(ids) - 1:
        raise InputError(
            f"the tokenizer of {str(path)!r} does not match the run's examples ({len(tok)} tokens for a "
            f"model vocabulary of {vocab}; example 0 {first['text']!r} encodes to {again[:12]}, stored as "
            f"{ids[:12]}); use the checkpoints of the run that wrote examples.jsonl")


def target_log_prob(model: Model, prompt: str, target: str) -> float:
    """``log p(target | prompt)`` over all the target's tokens, under ``model``."""
    ids = model.encode(prompt)
    tids = model.encode_continuation(target)
    with torch.no_grad():
        return -float(_test_loss(model.hf, ids, tids))


def tracin_scores(checkpoint_paths: Sequence[Path], weights: Sequence[float], examples: list[dict[str, Any]],
                  prompt: str, target: str, *, batch_size: int = 64,
                  progress: Progress | None = None) -> Tensor:
    """TracIn scores ``(n_examples,)``: ``sum_c weights[c] * grad log p(target) . -grad loss(example)``."""
    data = torch.tensor([e["input_ids"] for e in examples])  # (examples, pos)
    scores = torch.zeros(len(examples), dtype=torch.float64)
    for c, (path, w) in enumerate(zip(checkpoint_paths, weights, strict=True)):
        model = _load(path, examples)
        mods = _tracked(model.hf)
        test = _test_grads(model.hf, mods, model.encode(prompt), model.encode_continuation(target))
        for start in range(0, len(examples), batch_size):
            # grad log p = -grad test loss, -grad loss(example): the two minus signs cancel
            scores[start:start + batch_size] += w * _batch_dots(model.hf, mods, test,
                                                                data[start:start + batch_size]).double()
        if progress is not None:
            progress(c + 1, len(checkpoint_paths))
    return scores


def tracin_reference(checkpoint_paths: Sequence[Path], weights: Sequence[float],
                     examples: list[dict[str, Any]], prompt: str, target: str) -> Tensor:
    """The naive TracIn loop: one backward and one flattened full gradient per example per checkpoint.

    Same parameters and numbers as :func:`tracin_scores`; for checks and benchmarks.
    """
    scores = torch.zeros(len(examples), dtype=torch.float64)
    for path, w in zip(checkpoint_paths, weights, strict=True):
        model = _load(path)
        params = _params(_tracked(model.hf))
        with torch.enable_grad():
            loss = _test_loss(model.hf, model.encode(prompt), model.encode_continuation(target))
            test = torch.autograd.grad(loss, params, allow_unused=True)
            flat_test = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                   for p, g in zip(params, test, strict=True)])
            for i, e in enumerate(examples):
                loss = _example_losses(model.hf, torch.tensor([e["input_ids"]]))[0]
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                flat = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                  for p, g in zip(params, grads, strict=True)])
                scores[i] += w * float(flat @ flat_test)
    return scores


def _intervals(steps: list[int], lr: float) -> list[float]:
    """Weight of each checkpoint but the last: learning rate times the steps until the next one."""
    return [lr * (b - a) for a, b in zip(steps, steps[1:], strict=False)]


def _verify(run_dir: Path, prompt: str, target: str, top: list[int], n: int, k: int, seeds: Sequence[int],
            baseline: float, progress: Progress | None) -> dict[str, Any]:
    """Retrain without the top-k examples and without k random ones (one retrain per seed)."""
    from whyllm.training import latest_checkpoint, retrain

    def drop(exclude: list[int], where: Path) -> float:
        retrain(run_dir, out=where, exclude=exclude)
        return baseline - target_log_prob(_load(latest_checkpoint(where)[1]), prompt, target)

    with tempfile.TemporaryDirectory(prefix="whyllm-verify-") as tmp:
        top_drop = drop(top[:k], Path(tmp) / "top")
        if progress is not None:
            progress(1, 1 + len(seeds))
        randoms = []
        for j, s in enumerate(seeds):
            randoms.append(drop(random.Random(s).sample(range(n), k), Path(tmp) / f"random-{s}"))
            if progress is not None:
                progress(2 + j, 1 + len(seeds))
    return {"k": k, "seeds": list(seeds), "top_k_drop": top_drop, "random_drop": sum(randoms) / len(randoms),
            "random_drops": randoms, "baseline": baseline, "separated": all(top_drop > r for r in randoms)}


def influence(
    run_dir: str | Path,
    prompt: str,
    target: str,
    *,
    top_k: int = 10,
    verify: bool = False,
    k: int | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 64,
    threads: int | None = 1,
    progress: Progress | None = None,
) -> InfluenceResult:
    """Rank a training run's examples by how much they raised ``target`` after ``prompt`` (TracIn).

    Args:
        run_dir: a folder written by :func:`whyllm.training.train` (checkpoints and ``examples.jsonl``).
        prompt: the text.
        target: its continuation (every token of it is scored).
        top_k: proponents and opponents listed.
        verify: retrain without the top ``k`` proponents and without ``k`` random examples (one
            retrain per seed) and report how much the target's log-probability falls in each case.
        k: examples removed by ``verify`` (default ``top_k``).
        seeds: seeds of the random removals.
        batch_size: training examples per forward/backward pass.
        threads: ``torch.set_num_threads`` while scoring (1 suits the tiny models ``whyllm train``
            makes; ``None`` leaves it).
        progress: called with ``(done, total)`` checkpoints (then retrains).

    Returns:
        An :class:`InfluenceResult`.

    Raises:
        InputError: no run there, fewer than two checkpoints, a tokenizer that does not match the
            run's examples, or bad arguments.
    """
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _influence(Path(run_dir), prompt, target, top_k, verify, k, seeds, batch_size, progress)
    finally:
        torch.set_num_threads(old)


def _influence(run_dir: Path, prompt: str, target: str, top_k: int, verify: bool, k: int | None,
               seeds: Sequence[int], batch_size: int, progress: Progress | None) -> InfluenceResult:
    from whyllm.model.base import check_prompt
    from whyllm.training import checkpoints, load_examples, read_run

    check_prompt(prompt)
    if not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be a positive integer, got {top_k!r}")
    ckpts = checkpoints(run_dir)
    if len(ckpts) < 2:
        raise InputError(f"{str(run_dir)!r} has {len(ckpts)} checkpoint; TracIn needs at least two "
                         "(train with a smaller --checkpoint-every)")
    run, examples = read_run(run_dir), load_examples(run_dir)
    k = top_k if k is None else k
    if verify and not (isinstance(k, int) and 0 < k < len(examples)):
        raise InputError(f"k must be between 1 and {len(examples) - 1} (the run's examples), got {k!r}")
    steps = [s for s, _ in ckpts]
    t0 = time.perf_counter()
    scores = tracin_scores([p for _, p in ckpts[:-1]], _intervals(steps, float(run["lr"])), examples, prompt,
                           target, batch_size=batch_size, progress=progress)
    final = _load(ckpts[-1][1], examples)
    log_prob = target_log_prob(final, prompt, target)
    tids = final.encode_continuation(target)
    seconds = {"scores": time.perf_counter() - t0}
    order = scores.argsort(descending=True).tolist()

    def ex(i: int) -> InfluenceExample:
        return InfluenceExample(i, examples[i]["text"], float(scores[i]))

    checked = None
    if verify:
        t1 = time.perf_counter()
        checked = _verify(run_dir, prompt, target, order, len(examples), k, list(seeds), log_prob, progress)
        seconds["verify"] = time.perf_counter() - t1
    return InfluenceResult(
        run_dir=str(run_dir), prompt=prompt, target=target, target_ids=tuple(tids),
        target_tokens=tuple(final.token_texts(tids)), log_prob=log_prob, checkpoints=tuple(steps[:-1]),
        n_examples=len(examples), examples=tuple(ex(i) for i in order[:top_k]),
        opponents=tuple(ex(i) for i in reversed(order[-top_k:])), verify=checked, seconds=seconds,
        meta=meta(final, "influence", top_k=top_k, verify=verify, k=k, seeds=list(seeds),
                  batch_size=batch_size, algorithm="tracin",
                  parameters="linear layers and embeddings (weights and biases)"),
    )

"""How a prediction emerged: whyllm's analyses run over every checkpoint of a training run.

Per checkpoint: held-out loss and in-context loss (second half of each sequence), the target's
probability after the prompt, the logit lens of the target at the last position, direct logit
attribution to every component, and each head's induction and previous-token score on repeated
random tokens. Phase changes are the steepest drops of the in-context loss; the heads that formed
there are those whose scores rose across the drop. At the last checkpoint each head is zeroed in
turn to show which ones the in-context predictions depend on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from whyllm.errors import InputError, UnsupportedModelError
from whyllm.model.base import Model
from whyllm.results.training import EmergeResult
from whyllm.training import run_dir as rd
from whyllm.training.data import PAD, SPECIALS
from whyllm.training.train import evaluate_batch

__all__ = ["ablate_heads", "detect_phase_changes", "emerge", "head_scores"]

Progress = Callable[[int, int], None]
_REPEAT = 20  # tokens in each half of the head-scoring sequences
_N_SEQ = 16


def head_scores(model: Model, *, seed: int = 0, length: int = _REPEAT, n: int = _N_SEQ) -> tuple[list, list]:
    """Induction and previous-token score of every head: ``(layer, head)`` nested lists.

    The sequences are ``<bos>`` then ``length`` random tokens repeated once. A head's induction
    score is its mean attention from each token of the repeat to the token after that token's first
    occurrence; its previous-token score is its mean attention to the position before.
    """
    from whyllm.model.patches import attention_weights, eager_attention

    ad = model.adapter
    length = max(2, min(length, (ad.n_ctx - 1) // 2))
    rng = random.Random(seed)
    low = len(SPECIALS) if ad.d_vocab > 2 * len(SPECIALS) else 0
    rows = []
    for _ in range(n):
        block = [rng.randrange(low, ad.d_vocab) for _ in range(length)]
        rows.append([model.tokenizer.bos_token_id or 0, *block, *block])
    ids = torch.tensor(rows, device=model.device)  # (n, 2 * length + 1)
    layers = list(range(ad.n_layers))
    with torch.no_grad(), eager_attention(model), attention_weights(model, layers) as att:
        model.hf(input_ids=ids, use_cache=False, logits_to_keep=1)
    if len(att) != len(layers):
        raise UnsupportedModelError(
            f"{model.name}: attention weights are unavailable, so heads cannot be scored"
        )
    q = torch.arange(length + 1, 2 * length + 1)  # queries in the repeat
    allq = torch.arange(1, 2 * length + 1)
    ind, prev = [], []
    for layer in layers:
        a = att[layer].float()  # (n, head, query, key)
        ind.append(a[:, :, q, q - length + 1].mean((0, 2)).tolist())
        prev.append(a[:, :, allq, allq - 1].mean((0, 2)).tolist())
    return ind, prev


def zeroed_heads(model: Model, heads: list[tuple[int, int]], ids: torch.Tensor) -> dict[str, float]:
    """Held-out figures on ``ids`` with ``heads`` ``[(layer, head)]`` zeroed together.

    A head is zeroed by zeroing its slice of the attention output projection's input, so it adds
    nothing (not even through the projection's bias) to the residual stream.
    """
    from whyllm.model.hooks import intervene

    ad = model.adapter
    d_head = ad.d_head
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def zero(hs: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
        def fn(t: torch.Tensor) -> torch.Tensor:
            t = t.clone()
            for h in hs:
                t[..., h * d_head : (h + 1) * d_head] = 0  # (batch, pos, head * d_head)
            return t

        return fn

    with intervene({ad.part(layer, "attn_o"): zero(hs) for layer, hs in by_layer.items()}, inputs=True):
        return evaluate_batch(model.hf, ids)


def ablate_heads(model: Model, ids: torch.Tensor) -> list[dict[str, float]]:
    """Held-out figures with each head zeroed in turn."""
    ad = model.adapter
    return [
        {"layer": layer, "head": head, **zeroed_heads(model, [(layer, head)], ids)}
        for layer in range(ad.n_layers)
        for head in range(ad.n_heads)
    ]


def _group_ablation(model: Model, phases: list[dict[str, Any]], ids: torch.Tensor) -> list[dict[str, Any]]:
    """Zero all heads of one role formed in a phase change together (redundant heads hide singly)."""
    out = []
    for p in phases:
        for role in ("induction", "previous_token"):
            heads = [(h["layer"], h["head"]) for h in p["heads"] if h["role"] == role]
            if heads:
                out.append(
                    {
                        "step": p["step"],
                        "role": role,
                        "heads": [list(h) for h in heads],
                        **zeroed_heads(model, heads, ids),
                    }
                )
    return out


def detect_phase_changes(
    steps: list[int],
    values: list[float],
    induction: list,
    previous: list,
    *,
    min_drop: float = 0.1,
    min_rise: float = 0.1,
) -> list[dict[str, Any]]:
    """Steepest drops of ``values`` (per step) over the checkpoints, and the heads that formed there.

    The steepest drop per step between consecutive checkpoints is widened to the neighbouring
    intervals that fall at least a third as fast; it counts when it falls by ``min_drop`` and by a
    fifth of the curve's range, and falls at least twice as fast as the interval before the window
    (so the fast fall straight after random initialisation is not one). Other drops at least half
    as steep are reported too. A head
    "formed" when its induction or previous-token score rose by ``min_rise`` from the checkpoint
    before the window to its end.
    """
    if len(steps) < 2:
        return []
    rate = [(values[i - 1] - values[i]) / max(1, steps[i] - steps[i - 1]) for i in range(1, len(steps))]
    span = max(values) - min(values)
    found: list[dict[str, Any]] = []
    used: set[int] = set()
    for i in sorted(range(len(rate)), key=lambda k: -rate[k]):
        if i in used or rate[i] <= 0 or (found and rate[i] < 0.5 * found[0]["rate"]):
            continue
        a, b = i, i
        while a - 1 >= 0 and a - 1 not in used and rate[a - 1] >= rate[i] / 3:
            a -= 1
        while b + 1 < len(rate) and b + 1 not in used and rate[b + 1] >= rate[i] / 3:
            b += 1
        drop = values[a] - values[b + 1]
        # a phase change is a sudden acceleration: at least twice as steep as the interval before
        # it (the first interval, straight after random initialisation, has nothing to compare to)
        if drop < max(min_drop, 0.2 * span) or a == 0 or rate[i] < 2 * max(rate[a - 1], 0.0):
            continue
        used.update(range(a, b + 1))
        base = max(a - 1, 0)  # heads often start forming one checkpoint before the drop
        heads = []
        for layer, row in enumerate(induction[b + 1]):
            for head in range(len(row)):
                d_ind = induction[b + 1][layer][head] - induction[base][layer][head]
                d_prev = previous[b + 1][layer][head] - previous[base][layer][head]
                if max(d_ind, d_prev) >= min_rise:
                    role = "induction" if d_ind >= d_prev else "previous_token"
                    heads.append(
                        {"layer": layer, "head": head, "role": role, "rise": round(max(d_ind, d_prev), 6)}
                    )
        heads.sort(key=lambda h: -h["rise"])
        found.append(
            {
                "step": steps[i + 1],
                "from_step": steps[a],
                "to_step": steps[b + 1],
                "before": values[a],
                "after": values[b + 1],
                "rate": rate[i],
                "heads": heads,
            }
        )
    return sorted(found, key=lambda p: p["step"])


def _default_prompt(run: dict[str, Any], held: list[list[int]], tok) -> tuple[str, str]:
    """A held-out example cut before a token its context predicts (the answer, for recall)."""
    ids = held[0]
    n = sum(1 for i in ids if i != PAD)
    cut = n - 2 if run["task"] == "recall" else n - 3
    return tok.decode(ids[1:cut]), tok.decode([ids[cut]])


def _load(path: Path, device: str = "cpu") -> Model:
    from whyllm.model.load import load_model

    return load_model(path, device=device, progress=False)


def _analyse(model: Model, prompt: str, target: str, held: torch.Tensor, seed: int) -> dict[str, Any]:
    from whyllm.methods.components import components
    from whyllm.methods.lens import logit_lens

    ids = model.encode(prompt)[0].tolist()
    unk = getattr(model.tokenizer, "unk_token_id", None)
    if unk is not None and unk in ids:
        raise InputError(
            f"the prompt {prompt!r} has words this run's tokenizer does not know (token ids {ids}); "
            "write it in the run's vocabulary (see examples.jsonl)"
        )
    figures = evaluate_batch(model.hf, held)
    lens = logit_lens(model, prompt, target=target, top_k=1, positions=[-1])
    comp = components(model, prompt, target=target, top_neurons=0)
    ind, prev = head_scores(model, seed=seed)
    return {
        **figures,
        "target_prob": float(lens.target_probs[-1, 0]),
        "target_id": lens.target_id,
        "target_token": lens.target_token,
        "lens": [float(p) for p in lens.target_probs[:, 0]],
        "layer_names": list(lens.layer_names),
        "components": {p.name: float(p.value) for p in comp.parts},
        "induction": ind,
        "previous_token": prev,
    }


def emerge(
    run_dir: str | Path,
    *,
    prompt: str | None = None,
    target: str | None = None,
    steps: list[int] | None = None,
    ablate: bool = True,
    threads: int | None = 1,
    device: str = "cpu",
    progress: Progress | None = None,
) -> EmergeResult:
    """Run whyllm's analyses over every checkpoint of ``run_dir`` and find the phase changes.

    Args:
        run_dir: a folder written by :func:`whyllm.training.train`.
        prompt: text to follow; default a held-out example cut before a predictable token.
        target: the continuation whose probability is tracked; default the token that followed.
        steps: only these checkpoint steps (default all).
        ablate: zero each head at the last checkpoint and measure the held-out figures.
        threads: ``torch.set_num_threads`` while analysing (1 suits tiny models); ``None`` leaves it.
        device: where to load each checkpoint (``cpu``, ``cuda``, ``auto``).
        progress: called with ``(checkpoints done, total)``.

    Returns:
        An :class:`EmergeResult`.
    """
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _emerge(Path(run_dir), prompt, target, steps, ablate, progress, device)
    finally:
        torch.set_num_threads(old)


def _emerge(run_dir: Path, prompt, target, steps, ablate, progress, device="cpu") -> EmergeResult:
    found = rd.checkpoints(run_dir)
    run = rd.read_run(run_dir)
    if steps is not None:
        missing = sorted(set(steps) - {s for s, _ in found})
        if missing:
            raise InputError(f"no checkpoint for step(s) {missing}; the run has {[s for s, _ in found]}")
        found = [(s, p) for s, p in found if s in set(steps)]
    held = torch.tensor([r["input_ids"] for r in rd.load_eval_examples(run_dir)])  # (n, pos)
    rows, timings, ablation, model = [], [], [], None
    for k, (step, path) in enumerate(found):
        t = time.perf_counter()
        model = _load(path, device)
        if k == 0 and prompt is None:
            if target is not None:
                raise InputError("give --prompt with --target (the default prompt picks its own target)")
            prompt, target = _default_prompt(run, held.tolist(), model.tokenizer)
        if k == 0 and target is None:
            raise InputError("give --target with --prompt: the continuation whose probability to follow")
        if int(held.max()) >= model.adapter.d_vocab:
            raise InputError(
                f"the tokenizer of {str(path)!r} does not match the run's examples (ids up to "
                f"{int(held.max())}, vocabulary {model.adapter.d_vocab})"
            )
        rows.append({"step": step, **_analyse(model, prompt, target, held, run.get("seed", 0))})
        timings.append(time.perf_counter() - t)
        if progress is not None:
            progress(k + 1, len(found))
    steps_done = [r["step"] for r in rows]
    phases = detect_phase_changes(
        steps_done,
        [r["in_context_loss"] for r in rows],
        [r["induction"] for r in rows],
        [r["previous_token"] for r in rows],
    )
    groups = []
    if ablate and model is not None:
        ablation, groups = ablate_heads(model, held), _group_ablation(model, phases, held)
    return _result(run_dir, run, prompt, target, rows, phases, (ablation, groups), timings)


def _result(run_dir, run, prompt, target, rows, phases, ablations, timings) -> EmergeResult:
    from whyllm.results.base import meta

    steps = [r["step"] for r in rows]
    keep = (
        "step",
        "loss",
        "accuracy",
        "in_context_loss",
        "in_context_accuracy",
        "target_prob",
        "lens",
        "components",
        "induction",
        "previous_token",
    )
    return EmergeResult(
        run_dir=str(run_dir),
        task=run.get("task", "?"),
        prompt=prompt,
        target=target,
        target_token=rows[0]["target_token"],
        layer_names=tuple(rows[0]["layer_names"]),
        checkpoints=tuple({k: r[k] for k in keep} for r in rows),
        phase_changes=tuple(phases),
        ablation=tuple(ablations[0]),
        group_ablation=tuple(ablations[1]),
        seconds=tuple(timings),
        meta=meta(str(run_dir), "emerge", prompt=prompt, target=target, steps=steps),
    )

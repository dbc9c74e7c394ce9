"""Generation by repeated prediction, recording every step, and the divergence of several samples.

Decoding follows the usual order: logits / temperature, then top-k, then top-p (nucleus), then a
draw from the renormalised distribution with a seeded generator. Each sample row has its own
generator seeded ``seed + row``, so sample 0 of ``sample(seed=s)`` equals ``generate(seed=s)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.predict import top_candidates
from whyllm.model.base import Model
from whyllm.results.base import meta
from whyllm.results.generate import GenerationResult, SamplesResult, Step

__all__ = ["DecodingSettings", "generate", "sample", "sampling_distribution"]


@dataclass(frozen=True)
class DecodingSettings:
    """Validated decoding settings; ``greedy`` (or temperature 0) takes the most likely token."""

    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature!r}; use 0 or --greedy for greedy")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top_k must be >= 1, got {self.top_k!r}; leave it unset to keep every token")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p!r}")

    @property
    def is_greedy(self) -> bool:
        """True when decoding takes the argmax."""
        return self.greedy or self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        """Settings as stored in results."""
        return dict(vars(self))


def sampling_distribution(logits: Tensor, s: DecodingSettings) -> Tensor:
    """Probabilities actually sampled from, ``(..., vocab)``: zero for tokens the settings cut."""
    if s.is_greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    scaled = logits / s.temperature
    if s.top_k is not None and s.top_k < scaled.shape[-1]:
        kth = scaled.topk(s.top_k, dim=-1).values[..., -1:]  # (..., 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if s.top_p is not None and s.top_p < 1:
        sorted_logits, order = scaled.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= s.top_p  # keep the smallest set reaching top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scaled = scaled.masked_fill(drop, float("-inf"))
    return scaled.softmax(-1)


def _eos_ids(model: Model) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model.hf, "generation_config", None), model.tokenizer, model.hf.config):
        value = getattr(src, "eos_token_id", None)
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    return ids


def _run(
    model: Model, prompt: str, s: DecodingSettings, n: int, alternatives: int,
    on_step: Callable[[int, Step], None] | None, stop_strings: tuple[str, ...] = (),
) -> tuple[Tensor, list[list[Step]], list[str]]:
    """Decode ``n`` rows in one batch; return prompt ids, each row's steps and stop reasons."""
    ids = model.encode(prompt, room=s.max_new_tokens)  # (1, pos)
    gens = [torch.Generator(device="cpu").manual_seed(s.seed + r) for r in range(n)]
    eos = _eos_ids(model)
    steps: list[list[Step]] = [[] for _ in range(n)]
    stop = ["length"] * n
    done = torch.zeros(n, dtype=torch.bool)
    inputs, cache = ids.expand(n, -1), None
    with torch.no_grad():
        for i in range(s.max_new_tokens):
            out = model.hf(input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
            logits = out.logits[:, -1].float()  # (n, vocab)
            logprobs = logits.log_softmax(-1)
            dist = sampling_distribution(logits, s).cpu()
            if s.is_greedy:
                chosen = dist.argmax(-1)
            else:
                chosen = torch.stack([torch.multinomial(dist[r], 1, generator=gens[r])[0] for r in range(n)])
            lp_chosen = logprobs.gather(-1, chosen.to(logprobs.device)[:, None])  # (n, 1)
            ranks = (logprobs > lp_chosen).sum(-1) + 1
            entropy = torch.special.entr(logprobs.exp()).sum(-1)
            kept = (dist > 0).sum(-1)
            for r in range(n):
                if done[r]:
                    continue
                tok = int(chosen[r])
                step = Step(
                    index=i, token=model.tokenizer.decode([tok]), id=tok, prob=float(lp_chosen[r].exp()),
                    logprob=float(lp_chosen[r]), sample_prob=float(dist[r, tok]), rank=int(ranks[r]),
                    entropy=float(entropy[r]), kept=int(kept[r]),
                    alternatives=top_candidates(model, logprobs[r], alternatives),
                )
                steps[r].append(step)
                if on_step is not None:
                    on_step(r, step)
                if tok in eos:
                    done[r] = True
                    stop[r] = "eos"
                elif stop_strings and _ends_with_stop(model, steps[r], stop_strings):
                    done[r] = True
                    stop[r] = "stop"
            if bool(done.all()):
                break
            inputs = chosen.to(ids.device)[:, None]  # (n, 1)
    return ids, steps, stop


def _ends_with_stop(model: Model, steps: list[Step], stops: tuple[str, ...]) -> bool:
    tail = model.tokenizer.decode([st.id for st in steps[-16:]])
    return any(stop in tail for stop in stops)


def _settings(max_new_tokens, temperature, top_k, top_p, greedy, seed) -> DecodingSettings:
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    return DecodingSettings(max_new_tokens, float(temperature), top_k, top_p, bool(greedy), seed)


def _result(model: Model, prompt: str, ids: Tensor, steps: list[Step], stop: str, s: DecodingSettings,
            row: int = 0) -> GenerationResult:
    settings = {**s.to_dict(), "seed": s.seed + row}
    return GenerationResult(
        prompt=prompt, prompt_ids=tuple(ids[0].tolist()),
        text=model.tokenizer.decode([st.id for st in steps], skip_special_tokens=False),
        steps=tuple(steps), stop_reason=stop, settings=settings, meta=meta(model, "generate", **settings),
    )


def generate(
    model: Model, prompt: str, *, max_new_tokens: int = 32, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, greedy: bool = False, seed: int | None = None,
    alternatives: int = 5, on_step: Callable[[int, Step], None] | None = None, stop: tuple[str, ...] = (),
) -> GenerationResult:
    """Continue ``prompt`` token by token, recording each step's choice and alternatives.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text to continue.
        max_new_tokens: stop after this many tokens (or earlier at end-of-sequence).
        temperature / top_k / top_p: sampling controls (see :class:`DecodingSettings`).
        greedy: always take the most likely token (deterministic).
        seed: random seed; ``None`` draws one and records it in ``settings``.
        alternatives: how many top candidates to keep per step.
        on_step: called with ``(0, step)`` as each token is chosen (for streaming).
        stop: strings that end the generation once generated (``stop_reason == "stop"``).
    """
    s = _settings(max_new_tokens, temperature, top_k, top_p, greedy, seed)
    ids, steps, reasons = _run(model, prompt, s, 1, alternatives, on_step, tuple(stop))
    return _result(model, prompt, ids, steps[0], reasons[0], s)


def sample(
    model: Model, prompt: str, *, n: int = 5, max_new_tokens: int = 32, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, seed: int | None = None, alternatives: int = 5,
    on_step: Callable[[int, Step], None] | None = None,
) -> SamplesResult:
    """Draw ``n`` continuations (batched) and build the tree of where they diverge."""
    if not isinstance(n, int) or n < 1:
        raise InputError(f"the number of samples must be an integer >= 1, got {n!r}")
    s = _settings(max_new_tokens, temperature, top_k, top_p, False, seed)
    ids, steps, stops = _run(model, prompt, s, n, alternatives, on_step)
    samples = tuple(_result(model, prompt, ids, steps[r], stops[r], s, r) for r in range(n))
    return SamplesResult(
        prompt=prompt, samples=samples, tree=divergence_tree(model, samples), settings=s.to_dict(),
        meta=meta(model, "sample", n=n, **s.to_dict()),
    )


def divergence_tree(model: Model, samples: tuple[GenerationResult, ...]) -> dict[str, Any]:
    """Prefix tree of the samples' steps, with single-child chains merged into one node."""

    def node(rows: list[int], depth: int) -> dict[str, Any]:
        run: list[Step] = []
        while True:
            here = [r for r in rows if depth < len(samples[r].steps)]
            ids = {samples[r].steps[depth].id for r in here}
            if len(ids) != 1 or len(here) != len(rows):
                break
            run.append(samples[here[0]].steps[depth])
            depth += 1
        groups: dict[int, list[int]] = {}
        for r in rows:
            if depth < len(samples[r].steps):
                groups.setdefault(samples[r].steps[depth].id, []).append(r)
        return {
            "text": model.tokenizer.decode([st.id for st in run]) if run else "",
            "ids": [st.id for st in run], "tokens": [st.token for st in run],
            "probs": [st.prob for st in run], "sample_probs": [st.sample_prob for st in run],
            "samples": rows, "children": [node(g, depth) for g in groups.values()],
        }

    return node(list(range(len(samples))), 0)

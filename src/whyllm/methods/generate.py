"""Generation by repeated prediction, recording every step, and the divergence of several samples.

Decoding follows the usual order: logits / temperature, then top-k, then top-p (nucleus), then a
draw from the renormalised distribution with a seeded generator. Each sample row has its own
generator seeded ``seed + row``, so sample 0 of ``sample(seed=s)`` equals ``generate(seed=s)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.engine.limits import MAX_SAMPLES, require_memory
from whyllm.methods.engine.progress import Progress, report
from whyllm.methods.engine.sampling import DecodingSettings, cut_logits, sampling_distribution
from whyllm.model.base import Model
from whyllm.model.chat import PLAIN_STOP, chat_prompt
from whyllm.results.base import meta
from whyllm.results.generate import GenerationResult, SamplesResult, Step
from whyllm.results.predict import Candidate

__all__ = ["DecodingSettings", "chat_reply", "generate", "sample", "sampling_distribution"]


def _eos_ids(model: Model) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model.hf, "generation_config", None), model.tokenizer, model.hf.config):
        value = getattr(src, "eos_token_id", None)
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    return ids


class _Decoder:
    """Token id -> text, memoised (the same few tokens recur among alternatives)."""

    def __init__(self, model: Model):
        self.tokenizer, self.texts = model.tokenizer, {}

    def __call__(self, token_id: int) -> str:
        text = self.texts.get(token_id)
        if text is None:
            text = self.texts[token_id] = self.tokenizer.decode([token_id])
        return text


def _draw(dist: Tensor, gens: list[torch.Generator]) -> Tensor:
    """One token per row of ``dist`` ``(n, vocab)`` by inverse-CDF sampling, each row with its generator.

    Equivalent to ``torch.multinomial`` (a token is drawn with its probability; zero-probability
    tokens never are) but several times faster on large vocabularies.
    """
    cdf = dist.double().cumsum(-1)  # (n, vocab)
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in gens])  # (n,)
    picks = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]  # (n,)
    return picks.clamp_(max=dist.shape[-1] - 1)


def _choose(
    logits: Tensor, s: DecodingSettings, gens: list[torch.Generator]
) -> tuple[Tensor, Tensor, Tensor]:
    """Chosen ids ``(n,)``, their probability under the sampled distribution and the kept counts."""
    n, vocab = logits.shape
    if s.is_greedy:
        ones = torch.ones(n)
        return logits.argmax(-1).cpu(), ones, ones.long()
    cut = cut_logits(logits, s)  # (n, vocab)
    dist = cut.softmax(-1).cpu()
    chosen = _draw(dist, gens)
    cutting = s.top_k is not None or (s.top_p is not None and s.top_p < 1)
    kept = torch.isfinite(cut).sum(-1).cpu() if cutting else torch.full((n,), vocab)
    return chosen, dist.gather(-1, chosen[:, None])[:, 0], kept


def _record(logits: Tensor, chosen: Tensor, k: int, greedy: bool) -> dict[str, list]:
    """Per-row statistics of one step, computed batched and moved to Python lists once."""
    logprobs = logits.log_softmax(-1)  # (n, vocab)
    lp_chosen = logprobs.gather(-1, chosen.to(logprobs.device)[:, None])  # (n, 1)
    top_lp, top_ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)  # (n, k)
    # the argmax has rank 1 by definition (ties count in its favour), so greedy skips the count
    ranks = [1] * len(chosen) if greedy else ((logprobs > lp_chosen).sum(-1) + 1).tolist()
    return {
        "logprob": lp_chosen[:, 0].tolist(),
        "rank": ranks,
        "entropy": torch.special.entr(logprobs.exp()).sum(-1).tolist(),
        "top_lp": top_lp.tolist(),
        "top_ids": top_ids.tolist(),
    }


def _run(
    model: Model, prompt: str, s: DecodingSettings, n: int, alternatives: int,
    on_step: Callable[[int, Step], None] | None, stop_strings: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> tuple[Tensor, list[list[Step]], list[str]]:
    """Decode ``n`` rows in one batch; return prompt ids, each row's steps and stop reasons."""
    ad = model.adapter
    for value, what in ((alternatives, "alternatives"), (s.top_k, "top_k")):
        if value is not None and value > ad.d_vocab:
            raise InputError(f"{what} is {value} but {model.name} has {ad.d_vocab} tokens; give at most that")
    ids = model.encode(prompt, room=s.max_new_tokens)  # (1, pos)
    tokens = n * (ids.shape[1] + s.max_new_tokens)
    cache = tokens * ad.n_layers * 2 * ad.n_kv_heads * ad.d_head * ad.embed.weight.element_size()
    require_memory(cache + 3 * n * ad.d_vocab * 4, f"generating {n} row(s) of {s.max_new_tokens} tokens",
                   "draw fewer samples or fewer tokens", model.device)
    gens = [torch.Generator(device="cpu").manual_seed(s.seed + r) for r in range(n)]
    eos, decode = _eos_ids(model), _Decoder(model)
    steps: list[list[Step]] = [[] for _ in range(n)]
    stop = ["length"] * n
    done = [False] * n
    inputs, cache = ids.expand(n, -1), None  # (n, pos)
    with torch.no_grad():
        for i in range(s.max_new_tokens):
            out = model.hf(input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
            logits = out.logits[:, -1].float()  # (n, vocab)
            chosen, sample_p, kept = _choose(logits, s, gens)
            rec = _record(logits, chosen, alternatives, s.is_greedy)
            for r in range(n):
                if done[r]:
                    continue
                tok, lp = int(chosen[r]), rec["logprob"][r]
                alts = tuple(
                    Candidate(token=decode(t), id=t, prob=math.exp(v), logprob=v, rank=j + 1)
                    for j, (t, v) in enumerate(zip(rec["top_ids"][r], rec["top_lp"][r], strict=True))
                )
                step = Step(
                    index=i, token=decode(tok), id=tok, prob=math.exp(lp), logprob=lp,
                    sample_prob=float(sample_p[r]), rank=rec["rank"][r], entropy=rec["entropy"][r],
                    kept=int(kept[r]), alternatives=alts,
                )
                steps[r].append(step)
                if on_step is not None:
                    on_step(r, step)
                if tok in eos:
                    done[r], stop[r] = True, "eos"
                elif stop_strings and _ends_with_stop(model, steps[r], stop_strings):
                    done[r], stop[r] = True, "stop"
            report(progress, i + 1, s.max_new_tokens)
            if all(done):
                break
            inputs = chosen.to(ids.device)[:, None]  # (n, 1)
    return ids, steps, stop


def _ends_with_stop(model: Model, steps: list[Step], stops: tuple[str, ...]) -> bool:
    tail = model.tokenizer.decode([st.id for st in steps[-16:]])
    return any(stop in tail for stop in stops)


def _settings(max_new_tokens, temperature, top_k, top_p, greedy, seed, alternatives=5) -> DecodingSettings:
    if isinstance(alternatives, bool) or not isinstance(alternatives, int) or alternatives < 1:
        raise InputError(f"alternatives must be an integer >= 1, got {alternatives!r}")
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    if isinstance(temperature, int) and not isinstance(temperature, bool):
        temperature = float(temperature)  # settings record a float
    return DecodingSettings(max_new_tokens, temperature, top_k, top_p, bool(greedy), seed)


def _result(model: Model, prompt: str, ids: Tensor, steps: list[Step], stop: str, s: DecodingSettings,
            row: int = 0) -> GenerationResult:
    settings = {**s.to_dict(), "seed": s.seed + row}
    kept = [st.id for st in steps[:-1]] if stop == "eos" else [st.id for st in steps]  # text without the EOS
    return GenerationResult(
        prompt=prompt, prompt_ids=tuple(ids[0].tolist()),
        text=model.tokenizer.decode(kept, skip_special_tokens=False),
        steps=tuple(steps), stop_reason=stop, settings=settings, meta=meta(model, "generate", **settings),
    )


def generate(
    model: Model, prompt: str, *, max_new_tokens: int = 32, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, greedy: bool = False, seed: int | None = None,
    alternatives: int = 5, on_step: Callable[[int, Step], None] | None = None, stop: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> GenerationResult:
    """Continue ``prompt`` token by token, recording each step's choice and alternatives.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text to continue.
        max_new_tokens: stop after this many tokens (or earlier at end-of-sequence).
        temperature: divides the logits before sampling; 0 means greedy.
        top_k: sample only among the ``top_k`` most likely tokens (``None``: no cut).
        top_p: sample only from the smallest set of tokens holding this probability mass.
        greedy: always take the most likely token (deterministic).
        seed: random seed; ``None`` draws one and records it in ``settings``.
        alternatives: how many top candidates to keep per step.
        on_step: called with ``(0, step)`` as each token is chosen (for streaming).
        stop: strings that end the generation once generated (``stop_reason == "stop"``).
        progress: called as ``progress(tokens_done, max_new_tokens)``.

    Raises:
        InputError: an empty prompt or invalid setting. PromptTooLongError: the prompt plus
            ``max_new_tokens`` exceeds the context window.

    """
    s = _settings(max_new_tokens, temperature, top_k, top_p, greedy, seed, alternatives)
    ids, steps, reasons = _run(model, prompt, s, 1, alternatives, on_step, tuple(stop), progress)
    return _result(model, prompt, ids, steps[0], reasons[0], s)


def sample(
    model: Model, prompt: str, *, n: int = 5, max_new_tokens: int = 32, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, seed: int | None = None, alternatives: int = 5,
    on_step: Callable[[int, Step], None] | None = None, progress: Progress | None = None,
) -> SamplesResult:
    """Draw ``n`` continuations (batched) and build the tree of where they diverge.

    Row ``i`` is drawn with its own generator seeded ``seed + i``, so sample 0 equals
    :func:`generate` with the same seed and settings. Arguments are those of :func:`generate`.

    Raises:
        InputError: ``n`` < 1, an empty prompt or an invalid setting.

    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise InputError(f"the number of samples must be an integer from 1 to {MAX_SAMPLES}, got {n!r}")
    s = _settings(max_new_tokens, temperature, top_k, top_p, False, seed, alternatives)
    ids, steps, stops = _run(model, prompt, s, n, alternatives, on_step, progress=progress)
    samples = tuple(_result(model, prompt, ids, steps[r], stops[r], s, r) for r in range(n))
    return SamplesResult(
        prompt=prompt, samples=samples, tree=divergence_tree(model, samples), settings=s.to_dict(),
        meta=meta(model, "sample", n=n, **s.to_dict()),
    )


def divergence_tree(model: Model, samples: tuple[GenerationResult, ...]) -> dict[str, Any]:
    """Build the prefix tree of the samples' steps, with single-child chains merged into one node."""

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


def chat_reply(model: Model, messages: list[dict[str, str]], **settings: Any) -> GenerationResult:
    """Generate the assistant's next reply to ``messages`` (settings as for :func:`generate`).

    The result's ``prompt`` is the full templated conversation; :func:`whyllm.reply_text` gives the
    reply as it should be added to the conversation.
    """
    prompt = chat_prompt(model, messages)
    stop = () if model.has_chat_template else PLAIN_STOP
    return generate(model, prompt, stop=stop, **settings)

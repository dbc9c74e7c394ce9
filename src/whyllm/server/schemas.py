"""Request bodies of the JSON API: the CLI's parameters, with limits.

Each request model mirrors one command (``whyllm predict`` -> :class:`PredictRequest`...); an
analysis with no hand-written model here gets one made from its signature (:func:`request_for`). Unknown
fields are refused, so no request can name a file or a model path. Limits that need the loaded model
(layer and head indices, token ids) are checked by :meth:`ApiRequest.call`, which returns the
keyword arguments of the registered analysis named by :meth:`ApiRequest.name`. ``call`` may use the
tokenizer, so the server runs it on the model's worker thread.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from whyllm.methods.registry import Analysis
from whyllm.model.base import Model

__all__ = [
    "LIMITS",
    "ApiRequest",
    "AttentionRequest",
    "ComponentsRequest",
    "DiffRequest",
    "EmergeRequest",
    "ExplainRequest",
    "FeedbackImport",
    "FeedbackRequest",
    "GenerateRequest",
    "LensRequest",
    "Limits",
    "PatchRequest",
    "PredictRequest",
    "REQUESTS",
    "RangeError",
    "request_for",
]


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one request may ask for (payload and compute stay small)."""

    prompt_chars: int = 4000
    text_chars: int = 200
    top_k: int = 100
    lens_top_k: int = 20
    lens_positions: int = 64
    max_new_tokens: int = 256
    samples: int = 16
    alternatives: int = 20
    steps: int = 256
    attention_tokens: int = 256
    attention_weights: int = 1_000_000
    ablation_samples: int = 4096
    generic_int: int = 4096  # integers of requests made from a signature
    generic_list: int = 256  # and their lists
    body_bytes: int = 64 * 1024
    job_seconds: float = 600.0  # a job running longer is cancelled (answered 504)


LIMITS = Limits()


class RangeError(ValueError):
    """A request value is outside what the loaded model allows (answered with 422)."""


Prompt = Annotated[str, Field(min_length=1, max_length=LIMITS.prompt_chars, description="Text to analyse.")]
Text = Annotated[str, Field(min_length=1, max_length=LIMITS.text_chars)]


class ApiRequest(BaseModel):
    """Base of every request body: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    analysis: ClassVar[str]

    def name(self) -> str:
        """Name of the registered analysis this request runs."""
        return self.analysis

    def call(self, model: Model) -> dict[str, Any]:
        """Keyword arguments for the analysis (everything after ``model``), checked against ``model``."""
        return self.model_dump()


def _check_indices(values: list[int] | None, size: int, what: str, negative: bool = True) -> None:
    low = -size if negative else 0
    for v in values or ():
        if not low <= v < size:
            hint = f"0 to {size - 1}" + (f", or {-size} to -1 from the end" if negative else "")
            raise RangeError(f"{what} {v!r} is out of range: this model has {size} {what}s ({hint})")


class PredictRequest(ApiRequest):
    """``whyllm predict``: the next-token distribution."""

    analysis: ClassVar[str] = "predict"
    prompt: Prompt
    target: Text | None = Field(None, description="Continuation to score (may be several tokens).")
    top_k: int = Field(10, ge=1, le=LIMITS.top_k, description="Candidates to list.")


class GenerateRequest(ApiRequest):
    """``whyllm generate``: a continuation with every step's alternatives, or ``samples`` of them."""

    analysis: ClassVar[str] = "generate"
    prompt: Prompt
    max_new_tokens: int = Field(32, ge=1, le=LIMITS.max_new_tokens)
    temperature: float = Field(1.0, ge=0.0, le=10.0, description="0 means greedy.")
    top_k: int | None = Field(None, ge=1, le=1_000_000, description="Sample from the k most likely tokens.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    greedy: bool = False
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    samples: int = Field(1, ge=1, le=LIMITS.samples, description="Above 1: N samples and their tree.")
    alternatives: int = Field(5, ge=0, le=LIMITS.alternatives, description="Alternatives recorded per step.")
    prefix_ids: list[int] | None = Field(
        None, max_length=LIMITS.max_new_tokens,
        description="Token ids forced after the prompt (re-branching): decoded and appended to the prompt.",
    )

    def name(self) -> str:
        """``sample`` when ``samples > 1``, else ``generate``."""
        return "sample" if self.samples > 1 else "generate"

    def call(self, model: Model) -> dict[str, Any]:
        """Arguments of ``generate`` (or ``sample``), with the prefix appended to the prompt."""
        prompt = self.prompt
        if self.prefix_ids:
            _check_indices(self.prefix_ids, model.adapter.d_vocab, "token id", negative=False)
            prompt += model.tokenizer.decode(self.prefix_ids)
        common = {
            "prompt": prompt, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
            "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed, "alternatives": self.alternatives,
        }
        if self.samples > 1:
            if self.greedy:
                raise RangeError("samples > 1 draws random continuations; it cannot be combined with greedy")
            return {**common, "n": self.samples}
        return {**common, "greedy": self.greedy}


class ExplainRequest(ApiRequest):
    """``whyllm explain``: which input tokens made the model predict the target."""

    analysis: ClassVar[str] = "explain"
    prompt: Prompt
    target: Text | None = Field(None, description="Token to explain (default: the predicted one).")
    foil: Text | None = Field(None, description="Contrast: why target rather than foil.")
    method: str = Field("integrated_gradients", min_length=1, max_length=40,
                        description="saliency, input_x_gradient, integrated_gradients, occlusion, attention, "
                                    "attention_rollout or context_ablation.")
    granularity: Literal["token", "word", "sentence"] = "token"
    steps: Annotated[int, Field(ge=1, le=LIMITS.steps)] | Literal["auto"] = Field(
        32, description="Integrated-gradients steps, or 'auto' (grow until completeness error < 1%).")
    baseline: str = Field("default", min_length=1, max_length=LIMITS.text_chars,
                          description="'default' (mean embedding for erasure methods and metrics, pad "
                                      "token for integrated gradients), 'mean', 'zero', or a token text.")
    faithfulness: bool = Field(True, description="Also compute comprehensiveness, sufficiency, deletion AUC.")
    continuation: Text | None = Field(None, description="Generated text to explain instead of target.")
    per_token: bool = Field(False, description="Per-output-token matrix for a multi-token target.")
    samples: int | None = Field(None, ge=1, le=LIMITS.ablation_samples,
                                description="context_ablation: random ablations to run.")

    def call(self, model: Model) -> dict[str, Any]:
        """Arguments of ``explain``; ``samples`` is a context-ablation option, passed only when given."""
        args = self.model_dump()
        if args["samples"] is None:
            del args["samples"]
        return args


class LensRequest(ApiRequest):
    """``whyllm lens``: the residual stream decoded at every layer."""

    analysis: ClassVar[str] = "lens"
    prompt: Prompt
    target: Text | None = None
    top_k: int = Field(5, ge=1, le=LIMITS.lens_top_k)
    positions: list[int] | None = Field(
        None, min_length=1, max_length=LIMITS.lens_positions,
        description=f"Positions to decode (negative: from the end). Default: all, or the last "
                    f"{LIMITS.lens_positions} of a longer prompt.",
    )

    def call(self, model: Model) -> dict[str, Any]:
        """Keep the grid small: a long prompt without ``positions`` decodes its last positions only."""
        args = self.model_dump()
        if self.positions is None:
            n = model.encode(self.prompt).shape[1]
            if n > LIMITS.lens_positions:
                args["positions"] = list(range(n - LIMITS.lens_positions, n))
        return args


class ComponentsRequest(ApiRequest):
    """``whyllm components``: direct logit attribution to heads and MLPs."""

    analysis: ClassVar[str] = "components"
    prompt: Prompt
    target: Text | None = None
    foil: Text | None = None
    top_neurons: int = Field(10, ge=0, le=100, description="Neurons listed for each of the top 3 MLPs.")


class AttentionRequest(ApiRequest):
    """``whyllm attention``: attention patterns of chosen layers and heads."""

    analysis: ClassVar[str] = "attention"
    prompt: Prompt
    layers: list[int] | None = Field(None, min_length=1, max_length=256,
                                     description="Layer indices (negative: from the end; default: all).")
    heads: list[int] | None = Field(None, min_length=1, max_length=256,
                                    description="Head indices (default: all).")
    target: Text | None = Field(None, description="Token whose logit the head importance explains.")
    max_tokens: int = Field(LIMITS.attention_tokens, ge=1, le=LIMITS.attention_tokens,
                            description="Keep at most this many (last) positions.")

    def call(self, model: Model) -> dict[str, Any]:
        """Check indices against the model, and the number of weights against the payload limit."""
        a = model.adapter
        _check_indices(self.layers, a.n_layers, "layer")
        _check_indices(self.heads, a.n_heads, "head")
        n = min(self.max_tokens, model.encode(self.prompt).shape[1])
        cells = len(self.layers or range(a.n_layers)) * len(self.heads or range(a.n_heads)) * n * n
        if cells > LIMITS.attention_weights:
            raise RangeError(
                f"this asks for {cells:,} attention weights ({n} positions); the limit per request is "
                f"{LIMITS.attention_weights:,}: choose fewer layers or heads, or a smaller max_tokens"
            )
        return self.model_dump()


class PatchRequest(ApiRequest):
    """``whyllm patch``: activation patching of a clean/corrupted pair, or causal tracing of a subject."""

    analysis: ClassVar[str] = "patch"
    clean: Prompt
    corrupted: Prompt | None = Field(None, description="Corrupted prompt, same token length as clean.")
    target: Text | None = None
    foil: Text | None = None
    component: str = Field("resid_pre", min_length=1, max_length=40,
                           description="resid_pre, resid_post, attn_out, mlp_out or head.")
    method: str = Field("activation", min_length=1, max_length=40, description="activation or attribution.")
    positions: list[int] | None = Field(None, min_length=1, max_length=LIMITS.attention_tokens)
    layers: list[int] | None = Field(None, min_length=1, max_length=256)
    heads: list[int] | None = Field(None, min_length=1, max_length=256)
    per_position: bool = Field(False, description="With component=head: each head at each position.")
    compare: bool = Field(False, description="With method=attribution: also patch for real and correlate.")
    trace_subject: Text | None = Field(None, description="Causal tracing instead: noise this part of clean.")
    noise: float | None = Field(None, gt=0, le=1000, description="Tracing noise std (default: 3x).")
    samples: int = Field(10, ge=1, le=64, description="Tracing noise samples.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Tracing noise seed.")

    def name(self) -> str:
        """``trace`` (causal tracing) with ``trace_subject``, else ``patch``."""
        return "patch" if self.trace_subject is None else "trace"

    def call(self, model: Model) -> dict[str, Any]:
        """Arguments of ``patch`` or of ``causal_trace``, indices checked against the model."""
        if (self.corrupted is None) == (self.trace_subject is None):
            raise RangeError("give either corrupted (patching) or trace_subject (causal tracing), "
                             "not both or neither")
        _check_indices(self.layers, model.adapter.n_layers, "layer")
        _check_indices(self.heads, model.adapter.n_heads, "head")
        tracing = ("trace_subject", "noise", "samples", "seed")
        if self.trace_subject is None:
            return self.model_dump(exclude=set(tracing))
        patching_only = {"foil": None, "method": "activation", "heads": None, "per_position": False,
                         "compare": False}
        given = [k for k, default in patching_only.items() if getattr(self, k) != default]
        if given:
            raise RangeError(f"{', '.join(given)} apply to patching, not to causal tracing; leave them out")
        shared = {"target", "noise", "samples", "seed", "component", "layers", "positions"}
        args = self.model_dump(include=shared)
        return {"prompt": self.clean, "subject": self.trace_subject, **args}


class EmergeRequest(ApiRequest):
    """``whyllm emerge``: a prediction followed over the checkpoints of a run the server was started with."""

    analysis: ClassVar[str] = "emerge"
    run: str = Field(min_length=1, max_length=LIMITS.text_chars, description="Run name (see /api/info).")
    prompt: Text | None = Field(None, description="Text to follow (default: a held-out example).")
    target: Text | None = Field(None, description="Continuation whose probability to follow.")
    steps: list[int] | None = Field(None, min_length=1, max_length=LIMITS.generic_list,
                                    description="Only these checkpoint steps (default: all).")
    ablate: bool = Field(True, description="Zero each head at the last checkpoint.")


class FeedbackRequest(ApiRequest):
    """``whyllm feedback add``: a verdict (optionally with a correction) on a completion of the model."""

    analysis: ClassVar[str] = "feedback"
    prompt: Prompt
    completion: str = Field(max_length=LIMITS.prompt_chars, description="The model's completion.")
    verdict: Literal["good", "bad"]
    correction: str | None = Field(None, min_length=1, max_length=LIMITS.prompt_chars,
                                   description="What the model should have said instead.")
    reason: Text | None = None
    completion_ids: list[int] | None = Field(None, max_length=LIMITS.max_new_tokens,
                                             description="The completion's exact token ids.")
    settings: dict[str, Any] | None = Field(None, description="The decoding settings and seed used.")
    user: Text | None = None


class FeedbackImport(ApiRequest):
    """``whyllm feedback import``: rows of an export (dpo, kto, sft or jsonl), all stored or none."""

    analysis: ClassVar[str] = "feedback"
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    model: Text | None = Field(None, description="Model name of TRL-format rows (default: the served model).")


class DiffRequest(ApiRequest):
    """``whyllm diff``: the served tuned model (``whyllm serve --adapter DIR``) against its base."""

    analysis: ClassVar[str] = "diff"
    prompts: list[Prompt] = Field(min_length=1, max_length=16, description="Prompts to compare on.")
    top_k: int = Field(5, ge=1, le=50, description="Tokens listed as gained / lost.")
    max_new_tokens: int = Field(12, ge=1, le=64, description="Length of the compared generations.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    feedback: bool = Field(True, description="Rank the training feedback by TracIn (slow).")


REQUESTS: dict[str, type[ApiRequest]] = {
    r.analysis: r for r in (PredictRequest, GenerateRequest, ExplainRequest, LensRequest, ComponentsRequest,
                            AttentionRequest, PatchRequest)
}


# integers of generated requests whose range the analysis itself checks against the model (a circuit's size
# is at most its graph's edge count, which can exceed the generic limit)
_INT_LIMITS = {"edges": 10**8, "sizes": 10**8}


def _field_type(annotation: Any, int_limit: int = LIMITS.generic_int) -> Any:
    """The annotation with limits on texts, integers and lists; ``None`` if JSON cannot carry it."""
    if annotation is str:
        return Prompt
    if annotation is int:
        return Annotated[int, Field(ge=-int_limit, le=int_limit)]
    if annotation in (float, bool, type(None)):
        return annotation
    args, origin = typing.get_args(annotation), typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [_field_type(a, int_limit) for a in args]
        return None if any(m is None for m in members) else functools.reduce(operator.or_, members)
    if origin is dict and args[:1] == (str,):
        return dict[str, Any]
    if origin in (list, tuple, Sequence) and args:
        item = _field_type(args[0], int_limit)
        return None if item is None else Annotated[list[item], Field(max_length=LIMITS.generic_list)]
    return None


def request_for(entry: Analysis) -> type[ApiRequest]:
    """A request model made from ``entry``'s signature: one field per parameter after the model.

    Texts are limited to the prompt length, integers and lists to the generic limits; ``progress`` and
    parameters JSON cannot carry (tensors, callables) are left out (they keep their defaults).
    """
    fields: dict[str, Any] = {}
    params = list(inspect.signature(entry.fn, eval_str=True).parameters.values())[1:]
    for p in params:
        if p.name == "progress" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        kind = _field_type(p.annotation, _INT_LIMITS.get(p.name, LIMITS.generic_int))
        if kind is None:
            if p.default is p.empty:
                raise TypeError(f"{entry.name}: parameter {p.name!r} cannot come from JSON: {p.annotation!r}")
            continue
        default = ... if p.default is p.empty else (list(p.default) if isinstance(p.default, tuple)
                                                   else p.default)
        fields[p.name] = (kind, Field(default))
    name = "".join(w.capitalize() for w in re.split(r"[_\W]+", entry.name)) + "Request"
    doc = f"``whyllm {entry.command_name}``: {entry.summary}"
    model = create_model(name, __base__=ApiRequest, __doc__=doc, **fields)
    model.analysis = entry.name
    return model

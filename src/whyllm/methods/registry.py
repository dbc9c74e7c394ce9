"""Every analysis whyllm offers, in one table: the CLI, the server, the docs and the tests read it.

An :class:`Analysis` holds the real function (``fn(model, ...) -> Result``) and what the interfaces
need to know about it: a summary, the unit of its progress (``None`` if it takes no ``progress``), the
CLI command and API endpoint that serve it when they are shared with another analysis, and an example
call that runs it on a tiny model. ``whyllm <name>`` and ``POST /api/<name>`` are generated for an
analysis that no hand-written command or request schema serves, and the hook-leak tests are generated
for all of them (see docs/architecture.md, "Adding a method").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from whyllm.methods.attention import attention
from whyllm.methods.attribution import evaluate, explain
from whyllm.methods.circuits import circuit
from whyllm.methods.components import components
from whyllm.methods.engine.registry import Entry, Registry
from whyllm.methods.generate import generate, sample
from whyllm.methods.lens import logit_lens
from whyllm.methods.params import params
from whyllm.methods.patching import patch
from whyllm.methods.predict import predict
from whyllm.methods.qk import qk
from whyllm.methods.tracing import causal_trace

__all__ = ["ANALYSES", "Analysis", "analyses", "get_analysis", "markdown_table"]

_PROMPT = "The capital of France is"


@dataclass(frozen=True)
class Analysis(Entry):
    """One analysis.

    Attributes:
        example: keyword arguments (after ``model``) that run it on any tiny test model.
        unit: what its ``progress(done, total)`` counts (``None``: it takes no ``progress``).
        command: the CLI command that serves it (default: its name).
        endpoint: the API endpoint that serves it (default: its name).
    """

    example: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    unit: str | None = None
    command: str | None = None
    endpoint: str | None = None

    @property
    def command_name(self) -> str:
        """``whyllm <command_name>`` runs it."""
        return self.command or self.name

    @property
    def endpoint_name(self) -> str:
        """``POST /api/<endpoint_name>`` runs it."""
        return self.endpoint or self.name


ANALYSES: Registry[Analysis] = Registry("analysis", [
    Analysis("predict", predict,
             "The next-token distribution: top tokens, probabilities, entropy, a target's rank.",
             {"prompt": _PROMPT, "target": " Paris"}),
    Analysis("generate", generate, "Continue a prompt token by token, with each step's probability, rank and "
             "alternatives.", {"prompt": _PROMPT, "max_new_tokens": 3, "seed": 0}, unit="tokens"),
    Analysis("sample", sample, "Draw several continuations and show where they diverge.",
             {"prompt": _PROMPT, "n": 2, "max_new_tokens": 3, "seed": 0}, unit="tokens", command="generate",
             endpoint="generate"),
    Analysis("explain", explain, "Which parts of the prompt made the model predict the target (input "
             "attribution with faithfulness).", {"prompt": _PROMPT, "method": "occlusion"}, unit="steps"),
    Analysis("evaluate", evaluate, "Rank attribution methods by faithfulness over a set of prompts.",
             {"prompts": [_PROMPT], "methods": ["saliency"]}, unit="runs"),
    Analysis("lens", logit_lens, "Logit lens: the residual stream decoded after every layer.",
             {"prompt": _PROMPT}),
    Analysis("components", components, "Direct logit attribution: the logit split into embeddings, heads "
             "and MLPs.", {"prompt": _PROMPT}),
    Analysis("attention", attention, "Attention patterns and each head's direct effect on the target.",
             {"prompt": _PROMPT, "layers": [0]}),
    Analysis("patch", patch, "Activation or attribution patching of a clean prompt into a corrupted one.",
             {"clean": "When Mary and John went out, John gave it to",
              "corrupted": "When Mary and John went out, Mary gave it to"}, unit="rows"),
    Analysis("trace", causal_trace, "Causal tracing: noise the subject, restore clean states one at a "
             "time.", {"prompt": _PROMPT, "subject": "France", "samples": 2}, unit="rows"),
    Analysis("params", params, "Which parameters drive the prediction: gradient x weight per group, row, "
             "neuron and head, checked by real edits.", {"prompt": _PROMPT, "top_k": 3}),
    Analysis("circuit", circuit, "Which paths carry the answer: every edge of the graph scored by EAP-IG, a "
             "circuit kept and checked by ablation against random circuits.",
             {"prompt": "When Mary and John went out, John gave it to",
              "corrupted": "When Mary and John went out, Mary gave it to", "steps": 2, "sizes": [1, 4],
              "random_samples": 1}, unit="rows"),
    Analysis("qk", qk, "QK attribution: why a head attends where it does, its score split into pairs of "
             "upstream parts at the query and the key.",
             {"prompt": _PROMPT, "layer": -1, "head": 0, "query": -1, "key": 1}),
])


def analyses() -> list[str]:
    """Names of every analysis."""
    return ANALYSES.names()


def get_analysis(name: str) -> Callable:
    """The function registered as ``name``; unknown names list the valid ones."""
    return ANALYSES[name].fn


def markdown_table(registry: Registry) -> str:
    """A registry as a Markdown table (name, summary): the docs include it, and a test keeps it true."""
    rows = [f"| `{e.name}` | {e.summary} |" for e in registry.values()]
    return "\n".join(["| name | what it does |", "|---|---|", *rows])

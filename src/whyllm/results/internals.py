"""Results of the internals methods: logit lens, direct logit attribution, attention, patching."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from whyllm.results.base import Result

__all__ = ["AttentionResult", "ComponentsResult", "LensResult", "Neuron", "Part", "PatchResult"]


def _rounded(t: Tensor, digits: int = 6) -> list:
    return torch.round(t.float(), decimals=digits).tolist()


def _opt_tensor(values: Any, dtype: torch.dtype = torch.float32) -> Tensor | None:
    return None if values is None else torch.tensor(values, dtype=dtype)


@dataclass(frozen=True, eq=False)
class LensResult(Result):
    """The residual stream decoded after every layer, through the model's own final norm and unembedding.

    Attributes:
        prompt / input_ids / input_tokens: the prompt and its tokens.
        positions: absolute positions decoded (the ``pos`` axis of the grids).
        layer_names: ``"embed"``, then ``"L0"``... (the ``layer`` axis, ``n_layers + 1`` long); the
            last row is the model's real output.
        top_ids / top_probs: ``(layer, pos, k)`` most likely tokens and their probabilities.
        top_tokens: decoded ``top_ids`` as nested tuples ``[layer][pos][k]``.
        entropy: ``(layer, pos)`` entropy of each decoded distribution, in nats.
        target / target_id / target_token: the token followed (first token of ``target``), or ``None``.
        target_probs / target_ranks: ``(layer, pos)`` its probability and 1-based rank.
        meta: model, method, parameters, whyllm version.
    """

    kind: ClassVar[str] = "lens"
    prompt: str
    input_ids: tuple[int, ...]
    input_tokens: tuple[str, ...]
    positions: tuple[int, ...]
    layer_names: tuple[str, ...]
    top_ids: Tensor = field(repr=False)
    top_probs: Tensor = field(repr=False)
    top_tokens: tuple[tuple[tuple[str, ...], ...], ...] = field(repr=False)
    entropy: Tensor = field(repr=False)
    target: str | None = None
    target_id: int | None = None
    target_token: str | None = None
    target_probs: Tensor | None = field(default=None, repr=False)
    target_ranks: Tensor | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (len(self.layer_names), len(self.positions))
        if tuple(self.top_ids.shape[:2]) != shape or self.top_probs.shape != self.top_ids.shape:
            raise ValueError(f"top_ids/top_probs must be (layer, pos, k) with (layer, pos) = {shape}")
        if tuple(self.entropy.shape) != shape:
            raise ValueError(f"entropy must be (layer, pos) = {shape}, got {tuple(self.entropy.shape)}")
        if (self.target_probs is None) != (self.target_id is None):
            raise ValueError("target_probs and target_id go together")
        if self.target_probs is not None and tuple(self.target_probs.shape) != shape:
            raise ValueError(f"target_probs must be (layer, pos) = {shape}")

    def _cell(self, layer: int, j: int) -> dict[str, Any]:
        top = zip(self.top_tokens[layer][j], self.top_ids[layer, j], self.top_probs[layer, j], strict=True)
        cell: dict[str, Any] = {
            "top": [{"token": t, "id": int(i), "prob": round(float(p), 7)} for t, i, p in top],
            "entropy": round(float(self.entropy[layer, j]), 6),
        }
        if self.target_probs is not None:
            cell["target_prob"] = round(float(self.target_probs[layer, j]), 7)
            cell["target_rank"] = int(self.target_ranks[layer, j])
        return cell

    def _doc(self) -> dict[str, Any]:
        layers = []
        for i, name in enumerate(self.layer_names):
            cells = [self._cell(i, j) for j in range(len(self.positions))]
            layers.append({"name": name, "index": i, **cells[-1], "positions": cells})
        return {
            "model": self.meta.get("model"), "prompt": self.prompt, "input_ids": list(self.input_ids),
            "input_tokens": list(self.input_tokens), "positions": list(self.positions),
            "target": self.target, "target_id": self.target_id, "target_token": self.target_token,
            "layers": layers, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> LensResult:
        cells = [layer["positions"] for layer in d["layers"]]
        has_target = d.get("target_id") is not None

        def grid(key: str) -> Tensor | None:
            return torch.tensor([[c[key] for c in row] for row in cells]) if has_target else None

        return cls(
            prompt=d["prompt"], input_ids=tuple(d["input_ids"]), input_tokens=tuple(d["input_tokens"]),
            positions=tuple(d["positions"]), layer_names=tuple(layer["name"] for layer in d["layers"]),
            top_ids=torch.tensor([[[c["id"] for c in cell["top"]] for cell in row] for row in cells]),
            top_probs=torch.tensor([[[c["prob"] for c in cell["top"]] for cell in row] for row in cells]),
            top_tokens=tuple(tuple(tuple(c["token"] for c in cell["top"]) for cell in row) for row in cells),
            entropy=torch.tensor([[cell["entropy"] for cell in row] for row in cells]),
            target=d.get("target"), target_id=d.get("target_id"), target_token=d.get("target_token"),
            target_probs=grid("target_prob"), target_ranks=grid("target_rank"),
            meta=d.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per (layer, position): the top token, its probability, the target's."""
        import pandas as pd

        rows = []
        for i, name in enumerate(self.layer_names):
            for j, p in enumerate(self.positions):
                row = {"layer": name, "layer_index": i, "position": p, "input_token": self.input_tokens[p],
                       "top_token": self.top_tokens[i][j][0], "top_prob": float(self.top_probs[i, j, 0]),
                       "entropy": float(self.entropy[i, j])}
                if self.target_probs is not None:
                    row["target_prob"] = float(self.target_probs[i, j])
                    row["target_rank"] = int(self.target_ranks[i, j])
                rows.append(row)
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class Part:
    """One term of a direct logit attribution: ``name`` like ``embed``, ``L3.H2``, ``L5.mlp``."""

    name: str
    kind: str
    value: float
    layer: int | None = None
    head: int | None = None


@dataclass(frozen=True)
class Neuron:
    """One MLP neuron's direct effect: ``activation`` times its output weight along the logit direction."""

    layer: int
    index: int
    activation: float
    value: float


@dataclass(frozen=True, eq=False)
class ComponentsResult(Result):
    """Direct logit attribution: the target logit (or target - foil difference) split into parts.

    The final norm's scale (and Gemma's post-attention / post-MLP norms' scales) are frozen at their
    actual values, which makes the read-out linear: ``sum(parts) == total`` up to float error
    (``error``). With logit soft-capping the split is of the *pre-cap* logit ``total``; ``logit`` is
    the model's real (capped) output.

    Attributes:
        position: the position decomposed (the last).
        parts: embeddings, each head ``L{l}.H{h}``, attention output biases ``L{l}.attn_bias``, each
            MLP ``L{l}.mlp``, and the final norm's / unembedding's biases where the model has them.
        total: the real pre-soft-cap logit (difference) the parts sum to.
        logit: the model's output logit (difference), after soft-capping if any.
        error: ``sum(parts) - total``.
        neurons: the top neurons (by absolute value) of the top MLPs.
    """

    kind: ClassVar[str] = "components"
    prompt: str
    input_ids: tuple[int, ...]
    input_tokens: tuple[str, ...]
    position: int
    target: str | None
    target_id: int
    target_token: str
    parts: tuple[Part, ...]
    total: float
    logit: float
    error: float
    n_layers: int
    n_heads: int
    foil: str | None = None
    foil_id: int | None = None
    foil_token: str | None = None
    neurons: tuple[Neuron, ...] = ()
    softcap: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("ComponentsResult needs at least one part")
        if len({p.name for p in self.parts}) != len(self.parts):
            raise ValueError("part names must be unique")

    @property
    def head_values(self) -> Tensor:
        """``(layer, head)`` direct effect of each attention head."""
        out = torch.zeros(self.n_layers, self.n_heads)
        for p in self.parts:
            if p.kind == "head":
                out[p.layer, p.head] = p.value
        return out

    @property
    def mlp_values(self) -> Tensor:
        """``(layer,)`` direct effect of each MLP."""
        out = torch.zeros(self.n_layers)
        for p in self.parts:
            if p.kind == "mlp":
                out[p.layer] = p.value
        return out

    def top(self, kind: str, k: int = 5) -> list[Part]:
        """The ``k`` parts of ``kind`` (``head``, ``mlp``...) with the largest absolute value."""
        return sorted((p for p in self.parts if p.kind == kind), key=lambda p: -abs(p.value))[:k]

    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"), "prompt": self.prompt, "input_ids": list(self.input_ids),
            "input_tokens": list(self.input_tokens), "position": self.position,
            "target": self.target, "target_id": self.target_id, "target_token": self.target_token,
            "foil": self.foil, "foil_id": self.foil_id, "foil_token": self.foil_token,
            "parts": [vars(p) for p in self.parts], "total": self.total, "logit": self.logit,
            "error": self.error, "softcap": self.softcap, "n_layers": self.n_layers, "n_heads": self.n_heads,
            "top_heads": [p.name for p in self.top("head")], "top_mlps": [p.name for p in self.top("mlp")],
            "neurons": [vars(n) for n in self.neurons], "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> ComponentsResult:
        skip = ("parts", "neurons", "top_heads", "top_mlps", "model")
        rest = {k: v for k, v in d.items() if k not in skip}
        return cls(
            **{**rest, "input_ids": tuple(d["input_ids"]), "input_tokens": tuple(d["input_tokens"])},
            parts=tuple(Part(**p) for p in d["parts"]), neurons=tuple(Neuron(**n) for n in d["neurons"]),
        )

    def to_dataframe(self):
        """One row per part."""
        import pandas as pd

        return pd.DataFrame([vars(p) for p in self.parts], columns=["name", "kind", "layer", "head", "value"])


@dataclass(frozen=True, eq=False)
class AttentionResult(Result):
    """Attention patterns (eager attention weights) of selected layers and heads.

    Attributes:
        offset: first position shown; patterns cover positions ``offset..`` as queries and keys
            (with ``offset > 0`` rows sum to less than 1: earlier keys are cut off).
        layers / heads: which layers and heads the ``layer`` / ``head`` axes hold.
        patterns: ``(layer, head, query, key)`` attention weights.
        importance: ``(layer, head)`` direct logit attribution of each head to the target, or ``None``.
        target / target_id / target_token: the token the importance is measured for.
    """

    kind: ClassVar[str] = "attention"
    prompt: str
    input_ids: tuple[int, ...]
    input_tokens: tuple[str, ...]
    offset: int
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    patterns: Tensor = field(repr=False)
    importance: Tensor | None = field(default=None, repr=False)
    target: str | None = None
    target_id: int | None = None
    target_token: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.input_tokens) - self.offset
        want = (len(self.layers), len(self.heads), n, n)
        if tuple(self.patterns.shape) != want:
            raise ValueError(
                f"patterns must be (layer, head, query, key) = {want}, got {tuple(self.patterns.shape)}"
            )
        if self.importance is not None and tuple(self.importance.shape) != want[:2]:
            raise ValueError(f"importance must be (layer, head) = {want[:2]}")

    @property
    def tokens(self) -> tuple[str, ...]:
        """The tokens on the query/key axes."""
        return self.input_tokens[self.offset :]

    def pattern(self, layer: int, head: int) -> Tensor:
        """``(query, key)`` pattern of one head (model layer and head indices)."""
        return self.patterns[self.layers.index(layer), self.heads.index(head)]

    def _doc(self) -> dict[str, Any]:
        heads = []
        for i, layer in enumerate(self.layers):
            for j, head in enumerate(self.heads):
                imp = None if self.importance is None else round(float(self.importance[i, j]), 6)
                heads.append({"layer": layer, "head": head, "name": f"L{layer}.H{head}", "importance": imp,
                              "pattern": _rounded(self.patterns[i, j], 5)})
        return {
            "model": self.meta.get("model"), "prompt": self.prompt, "input_ids": list(self.input_ids),
            "input_tokens": list(self.input_tokens), "offset": self.offset, "layers": list(self.layers),
            "heads_shown": list(self.heads), "target": self.target, "target_id": self.target_id,
            "target_token": self.target_token, "heads": heads, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> AttentionResult:
        nl, nh = len(d["layers"]), len(d["heads_shown"])
        pats = torch.tensor([h["pattern"] for h in d["heads"]])
        imps = [h["importance"] for h in d["heads"]]
        return cls(
            prompt=d["prompt"], input_ids=tuple(d["input_ids"]), input_tokens=tuple(d["input_tokens"]),
            offset=d["offset"], layers=tuple(d["layers"]), heads=tuple(d["heads_shown"]),
            patterns=pats.reshape(nl, nh, *pats.shape[1:]),
            importance=None if imps and imps[0] is None else torch.tensor(imps).reshape(nl, nh),
            target=d.get("target"), target_id=d.get("target_id"), target_token=d.get("target_token"),
            meta=d.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per (layer, head, query, key) weight."""
        import pandas as pd

        idx = torch.cartesian_prod(*(torch.arange(s) for s in self.patterns.shape)).reshape(-1, 4)
        lay, hd, q, k = idx.unbind(-1)
        keep = k <= q  # causal: later keys are always 0
        return pd.DataFrame({
            "layer": torch.tensor(self.layers)[lay[keep]].numpy(),
            "head": torch.tensor(self.heads)[hd[keep]].numpy(),
            "query": (q[keep] + self.offset).numpy(), "key": (k[keep] + self.offset).numpy(),
            "weight": self.patterns.reshape(-1)[keep].numpy(),
        })


@dataclass(frozen=True, eq=False)
class PatchResult(Result):
    """Activation patching, attribution patching (AtP) or causal tracing over a grid of sites.

    ``grid`` holds the share of the clean - corrupted metric difference recovered by putting the clean
    run's activation at each site into the corrupted run: 0 = corrupted, 1 = clean.

    Attributes:
        clean_prompt / corrupted_prompt: the prompts (``corrupted_prompt`` is ``None`` for causal
            tracing, whose corrupted run is the clean prompt with noised subject embeddings).
        tokens / corrupted_tokens: their tokens (same length).
        component: ``resid_pre``, ``resid_post``, ``attn_out``, ``mlp_out`` or ``head``.
        method: ``activation``, ``attribution`` (AtP estimate) or ``causal_trace``.
        metric: ``logit_diff`` (target - foil), ``logit`` or ``prob`` (of the target).
        axes: names of the grid's axes, e.g. ``("layer", "pos")``, ``("layer", "head")``,
            ``("layer", "head", "pos")``.
        layers / positions / heads: labels along those axes.
        grid: recovered share, shaped by ``axes``.
        values: raw metric of each patched run (``None`` for AtP, whose grid is an estimate).
        clean / corrupted: the metric on the clean and corrupted runs.
        reference: the exact activation-patching grid when AtP was compared with it, else ``None``.
        spearman: rank correlation of ``grid`` with ``reference``, else ``None``.
    """

    kind: ClassVar[str] = "patch"
    clean_prompt: str
    corrupted_prompt: str | None
    tokens: tuple[str, ...]
    corrupted_tokens: tuple[str, ...]
    component: str
    method: str
    metric: str
    target_id: int
    target_token: str
    axes: tuple[str, ...]
    layers: tuple[int, ...]
    grid: Tensor = field(repr=False)
    clean: float
    corrupted: float
    positions: tuple[int, ...] = ()
    heads: tuple[int, ...] = ()
    foil_id: int | None = None
    foil_token: str | None = None
    values: Tensor | None = field(default=None, repr=False)
    reference: Tensor | None = field(default=None, repr=False)
    spearman: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {"layer": len(self.layers), "pos": len(self.positions), "head": len(self.heads)}
        want = tuple(sizes[a] for a in self.axes)
        for name in ("grid", "values", "reference"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != want:
                raise ValueError(f"{name} must have shape {want} for axes {self.axes}, got {tuple(t.shape)}")
        if len(self.tokens) != len(self.corrupted_tokens):
            raise ValueError("clean and corrupted tokens differ in length")

    def _doc(self) -> dict[str, Any]:
        opt = {k: None if (t := getattr(self, k)) is None else _rounded(t) for k in ("values", "reference")}
        return {
            "model": self.meta.get("model"), "clean_prompt": self.clean_prompt,
            "corrupted_prompt": self.corrupted_prompt, "tokens": list(self.tokens),
            "corrupted_tokens": list(self.corrupted_tokens), "component": self.component,
            "method": self.method,
            "metric": self.metric, "target_id": self.target_id, "target_token": self.target_token,
            "foil_id": self.foil_id, "foil_token": self.foil_token, "axes": list(self.axes),
            "layers": list(self.layers), "positions": list(self.positions), "heads": list(self.heads),
            "grid": _rounded(self.grid), "clean": self.clean, "corrupted": self.corrupted, **opt,
            "spearman": self.spearman, "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, d: dict[str, Any]) -> PatchResult:
        tup = ("tokens", "corrupted_tokens", "axes", "layers", "positions", "heads")
        rest = {k: v for k, v in d.items() if k != "model"}
        return cls(**{
            **rest, **{k: tuple(d[k]) for k in tup},
            "grid": torch.tensor(d["grid"]), "values": _opt_tensor(d.get("values")),
            "reference": _opt_tensor(d.get("reference")),
        })

    def to_dataframe(self):
        """One row per grid cell: its labels, the recovered share (and raw metric / reference)."""
        import pandas as pd

        labels = {"layer": self.layers, "pos": self.positions, "head": self.heads}
        idx = torch.cartesian_prod(*(torch.arange(s) for s in self.grid.shape)).reshape(-1, self.grid.dim())
        data: dict[str, Any] = {
            a: torch.tensor(labels[a])[idx[:, i]].numpy() for i, a in enumerate(self.axes)
        }
        data["recovered"] = self.grid.reshape(-1).numpy()
        for name in ("values", "reference"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name).reshape(-1).numpy()
        return pd.DataFrame(data)

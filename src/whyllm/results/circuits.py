"""Result of :func:`whyllm.circuit`: a scored graph, the circuit kept, and its faithfulness curve."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from xml.etree import ElementTree as ET

import torch
from torch import Tensor

from whyllm.files import write_atomic
from whyllm.results.base import Result

__all__ = ["CircuitAttention", "CircuitLens", "CircuitNeuron", "CircuitNode", "CircuitResult"]


@dataclass(frozen=True)
class CircuitNode:
    """A node of the graph.

    ``id`` is ``embed``, ``L3.H1``, ``L3.KV0``, ``L3.mlp`` or ``logits`` (``@p`` appended per position);
    ``kind`` is ``embed``, ``head``, ``kv``, ``mlp`` or ``logits``.
    """

    id: str
    kind: str
    layer: int | None = None
    head: int | None = None
    position: int | None = None


@dataclass(frozen=True)
class CircuitNeuron:
    """One top neuron of an MLP in the circuit.

    Attributes:
        node: the MLP's node id.
        layer / index: where the neuron is.
        score: (clean - corrupted activation) x gradient of the metric, summed over positions: the
            metric change the neuron is estimated to carry.
        direct: its direct effect on the metric at the last position (activation x its output
            direction read out through the frozen final norm).
        activation: its activation at the last position of the clean prompt.
        top_tokens: the tokens its output direction raises most.
    """

    node: str
    layer: int
    index: int
    score: float
    direct: float
    activation: float
    top_tokens: tuple[str, ...]


@dataclass(frozen=True)
class CircuitAttention:
    """Where a head attends from the last position of the clean prompt.

    Attributes:
        node: the head's node id.
        layer / head: the head.
        keys: its strongest keys as ``(position, token, weight)``, largest weight first.
    """

    node: str
    layer: int
    head: int
    keys: tuple[tuple[int, str, float], ...]


@dataclass(frozen=True)
class CircuitLens:
    """The logit lens at the last position after one layer: ``top`` as ``(token, probability)`` pairs."""

    layer: int
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True, eq=False)
class CircuitResult(Result):
    """Every edge of the model's graph scored by edge attribution patching, and a circuit checked by ablation.

    The metric is the target - foil logit difference (``logit_diff``) or the target logit (``logit``) at
    the last position. An edge's score estimates how much the metric falls when that edge alone carries
    the corrupted value: positive edges carry the answer, negative ones work against it. Faithfulness
    of a circuit = (m(circuit) - m(corrupted)) / (m(clean) - m(corrupted)) with every other edge ablated:
    1 = the circuit alone does everything, 0 = no better than the corrupted run.

    Attributes:
        prompt / tokens: the clean prompt and its tokens.
        corrupted_prompt: the corrupted prompt (``None``: mean ablation).
        method: ``eap-ig`` or ``eap``; ``steps`` its interpolation steps (1 for eap).
        ablation: ``corrupted`` (the corrupted prompt's activations) or ``mean`` (each node's mean over
            the clean prompt's positions after the first).
        per_position: nodes are (component, position) pairs.
        clean / corrupted: the metric on the clean run and with every edge ablated.
        nodes: every node.
        edge_source / edge_target: ``(edge,)`` indices into ``nodes``, edges sorted by |score| descending.
        edge_port: ``q``, ``k`` or ``v`` (an attention input) or ``in`` (an MLP or the logits) per edge.
        scores: ``(edge,)`` edge scores in the metric's unit (nats of logit difference or logit).
        circuit_edges: the top-N edges kept as the circuit; ``chosen_by`` says how N was chosen
            (``edges``, ``share`` or ``faithfulness``: the smallest curve size reaching 0.8).
        faithfulness: the circuit's normalised faithfulness, measured by ablation.
        curve_sizes / curve: ``(size,)`` faithfulness of the top-N circuits for each N.
        random_curve / random_std: mean and spread of random circuits of the same sizes (or ``None``).
        neurons: top neurons of the circuit's MLPs.
        attention: for every head, its strongest keys from the last position.
        lens: the logit lens at the last position after every layer (what the residual stream would
            predict there).
    """

    kind: ClassVar[str] = "circuit"
    prompt: str
    tokens: tuple[str, ...]
    corrupted_prompt: str | None
    method: str
    steps: int
    ablation: str
    per_position: bool
    metric: str
    target_id: int
    target_token: str
    clean: float
    corrupted: float
    nodes: tuple[CircuitNode, ...]
    edge_source: Tensor = field(repr=False)
    edge_target: Tensor = field(repr=False)
    edge_port: tuple[str, ...] = field(repr=False)
    scores: Tensor = field(repr=False)
    circuit_edges: int
    chosen_by: str
    faithfulness: float
    curve_sizes: tuple[int, ...]
    curve: Tensor = field(repr=False)
    foil_id: int | None = None
    foil_token: str | None = None
    random_curve: Tensor | None = field(default=None, repr=False)
    random_std: Tensor | None = field(default=None, repr=False)
    neurons: tuple[CircuitNeuron, ...] = ()
    attention: tuple[CircuitAttention, ...] = ()
    lens: tuple[CircuitLens, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        n = len(self.scores)
        for name in ("edge_source", "edge_target"):
            t = getattr(self, name)
            if t.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
            if n and not (0 <= int(t.min()) and int(t.max()) < len(self.nodes)):
                raise ValueError(f"{name} holds an index outside the {len(self.nodes)} nodes")
        if len(self.edge_port) != n:
            raise ValueError(f"edge_port must have {n} entries, got {len(self.edge_port)}")
        if not 0 <= self.circuit_edges <= n:
            raise ValueError(f"circuit_edges must be in 0..{n}, got {self.circuit_edges}")
        k = len(self.curve_sizes)
        for name in ("curve", "random_curve", "random_std"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (k,):
                raise ValueError(f"{name} must have shape ({k},), got {tuple(t.shape)}")

    # ---- reading it ---------------------------------------------------------------------
    def edge_rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Edges as dicts (source, target, port, score, in_circuit), strongest first."""
        n = len(self.scores) if limit is None else min(limit, len(self.scores))
        src, dst, sc = self.edge_source[:n].tolist(), self.edge_target[:n].tolist(), self.scores[:n].tolist()
        return [
            {
                "source": self.nodes[s].id,
                "target": self.nodes[t].id,
                "port": self.edge_port[i],
                "score": sc[i],
                "in_circuit": i < self.circuit_edges,
            }
            for i, (s, t) in enumerate(zip(src, dst, strict=True))
        ]

    def circuit_nodes(self) -> list[CircuitNode]:
        """Nodes touched by the circuit's edges, in graph order."""
        used = set(self.edge_source[: self.circuit_edges].tolist()) | set(
            self.edge_target[: self.circuit_edges].tolist()
        )
        return [n for i, n in enumerate(self.nodes) if i in used]

    def curve_rows(self) -> list[dict[str, Any]]:
        """The faithfulness curve as dicts (edges, faithfulness, random_faithfulness, random_std)."""
        rnd = self.random_curve.tolist() if self.random_curve is not None else [None] * len(self.curve_sizes)
        std = self.random_std.tolist() if self.random_std is not None else [None] * len(self.curve_sizes)
        return [
            {"edges": s, "faithfulness": f, "random_faithfulness": r, "random_std": d}
            for s, f, r, d in zip(self.curve_sizes, self.curve.tolist(), rnd, std, strict=True)
        ]

    # ---- documents ----------------------------------------------------------------------
    def _doc(self) -> dict[str, Any]:
        return {
            "model": self.meta.get("model"),
            "prompt": self.prompt,
            "tokens": list(self.tokens),
            "corrupted_prompt": self.corrupted_prompt,
            "method": self.method,
            "steps": self.steps,
            "ablation": self.ablation,
            "per_position": self.per_position,
            "metric": self.metric,
            "target_id": self.target_id,
            "target_token": self.target_token,
            "foil_id": self.foil_id,
            "foil_token": self.foil_token,
            "clean": self.clean,
            "corrupted": self.corrupted,
            "nodes": [
                {"id": n.id, "kind": n.kind, "layer": n.layer, "head": n.head, "position": n.position}
                for n in self.nodes
            ],
            "edges": [{**e, "score": round(e["score"], 7)} for e in self.edge_rows()],
            "circuit": {
                "edges": self.circuit_edges,
                "chosen_by": self.chosen_by,
                "faithfulness": self.faithfulness,
            },
            "curve": self.curve_rows(),
            "neurons": [
                {
                    "node": x.node,
                    "layer": x.layer,
                    "index": x.index,
                    "score": x.score,
                    "direct": x.direct,
                    "activation": x.activation,
                    "top_tokens": list(x.top_tokens),
                }
                for x in self.neurons
            ],
            "attention": [
                {"node": a.node, "layer": a.layer, "head": a.head,
                 "keys": [{"position": p, "token": t, "weight": w} for p, t, w in a.keys]}
                for a in self.attention
            ],
            "lens": [{"layer": x.layer, "top": [{"token": t, "probability": q} for t, q in x.top]}
                     for x in self.lens],
            "meta": self.meta,
        }

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> CircuitResult:
        nodes = tuple(CircuitNode(**n) for n in doc["nodes"])
        index = {n.id: i for i, n in enumerate(nodes)}
        edges = doc["edges"]
        curve = doc["curve"]
        has_random = bool(curve) and curve[0].get("random_faithfulness") is not None
        circuit = doc["circuit"]
        return cls(
            prompt=doc["prompt"],
            tokens=tuple(doc["tokens"]),
            corrupted_prompt=doc["corrupted_prompt"],
            method=doc["method"],
            steps=doc["steps"],
            ablation=doc["ablation"],
            per_position=doc["per_position"],
            metric=doc["metric"],
            target_id=doc["target_id"],
            target_token=doc["target_token"],
            foil_id=doc.get("foil_id"),
            foil_token=doc.get("foil_token"),
            clean=doc["clean"],
            corrupted=doc["corrupted"],
            nodes=nodes,
            edge_source=torch.tensor([index[e["source"]] for e in edges], dtype=torch.long),
            edge_target=torch.tensor([index[e["target"]] for e in edges], dtype=torch.long),
            edge_port=tuple(e["port"] for e in edges),
            scores=torch.tensor([e["score"] for e in edges], dtype=torch.float32),
            circuit_edges=circuit["edges"],
            chosen_by=circuit["chosen_by"],
            faithfulness=circuit["faithfulness"],
            curve_sizes=tuple(c["edges"] for c in curve),
            curve=torch.tensor([c["faithfulness"] for c in curve], dtype=torch.float32),
            random_curve=torch.tensor([c["random_faithfulness"] for c in curve]) if has_random else None,
            random_std=torch.tensor([c["random_std"] for c in curve]) if has_random else None,
            neurons=tuple(
                CircuitNeuron(
                    x["node"],
                    x["layer"],
                    x["index"],
                    x["score"],
                    x["direct"],
                    x["activation"],
                    tuple(x["top_tokens"]),
                )
                for x in doc.get("neurons", [])
            ),
            attention=tuple(
                CircuitAttention(a["node"], a["layer"], a["head"],
                                 tuple((k["position"], k["token"], k["weight"]) for k in a["keys"]))
                for a in doc.get("attention", [])
            ),
            lens=tuple(CircuitLens(x["layer"], tuple((t["token"], t["probability"]) for t in x["top"]))
                       for x in doc.get("lens", [])),
            meta=doc.get("meta", {}),
        )

    def to_dataframe(self):
        """One row per edge: source, target, port, score, in_circuit (strongest first)."""
        import pandas as pd

        return pd.DataFrame(self.edge_rows(), columns=["source", "target", "port", "score", "in_circuit"])

    def to_graphml(self, path: str | Path | None = None) -> str:
        """The graph as GraphML (networkx ``read_graphml``, Gephi); also written to ``path`` when given.

        Nodes carry kind, layer, head and position (-1 where not applicable); edges their port, score and
        whether they are in the circuit. Graph attributes hold the metric and the faithfulness.
        """
        ns = "http://graphml.graphdrawing.org/xmlns"
        root = ET.Element("graphml", xmlns=ns)
        keys = [
            ("kind", "node", "string"),
            ("layer", "node", "int"),
            ("head", "node", "int"),
            ("position", "node", "int"),
            ("port", "edge", "string"),
            ("score", "edge", "double"),
            ("in_circuit", "edge", "boolean"),
            ("metric", "graph", "string"),
            ("faithfulness", "graph", "double"),
            ("method", "graph", "string"),
        ]
        for name, where, kind in keys:
            ET.SubElement(root, "key", {"id": name, "for": where, "attr.name": name, "attr.type": kind})
        graph = ET.SubElement(root, "graph", id="circuit", edgedefault="directed")

        def data(parent: ET.Element, key: str, value: Any) -> None:
            ET.SubElement(parent, "data", key=key).text = str(value)

        data(graph, "metric", self.metric)
        data(graph, "faithfulness", self.faithfulness if math.isfinite(self.faithfulness) else "NaN")
        data(graph, "method", self.method)
        for n in self.nodes:
            el = ET.SubElement(graph, "node", id=n.id)
            data(el, "kind", n.kind)
            for key in ("layer", "head", "position"):
                value = getattr(n, key)
                data(el, key, -1 if value is None else value)
        for i, e in enumerate(self.edge_rows()):
            el = ET.SubElement(graph, "edge", id=f"e{i}", source=e["source"], target=e["target"])
            data(el, "port", e["port"])
            data(el, "score", repr(float(e["score"])))
            data(el, "in_circuit", str(e["in_circuit"]).lower())
        text = ET.tostring(root, encoding="unicode", xml_declaration=True)
        if path is not None:
            write_atomic(path, text, "GraphML file")
        return text

"""A transformer as a graph: components that write the residual stream, inputs that read it, and edges.

Every block reads the residual stream at its attention's query, key and value projections and at its
MLP, and writes it through each attention head and the MLP; the logits read it at the end. Since the
residual stream is a sum, the input of every reader is the sum of what every earlier writer wrote:
each (writer, reader input) pair is one edge.

* writers (*upstream*): the input embeddings (with positional embeddings), every head, every MLP;
* reader inputs (*ends*): per head its query input (port ``q``), per key/value head its key and value
  inputs (``k``, ``v``), per MLP its input (``in``), and the logits (``in``). With grouped-query
  attention the key/value inputs belong to a key/value node ``L{l}.KV{j}`` shared by its query heads.

A writer feeds a reader when it comes before it: a head or MLP of an earlier block (or the embeddings)
feeds a block's attention; its MLP also reads its own block's heads (not in parallel-residual blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from whyllm.model.base import Model
from whyllm.results.circuits import CircuitNode as Node

__all__ = ["End", "Graph", "build_graph"]


@dataclass(frozen=True)
class End:
    """One reader input: ``node`` (an index into the component nodes) read at ``port``."""

    node: int
    port: str
    layer: int  # block whose projection or MLP reads it (``n_layers`` for the logits)
    head: int | None = None  # query head (q) or key/value head (k, v)


@dataclass(frozen=True)
class Graph:
    """The components of one model and their edges (positions merged; see :meth:`at_positions`).

    Attributes:
        nodes: every component node.
        writers: indices into ``nodes`` of the writers, in forward order (embeddings first).
        ends: every reader input, in forward order (logits last).
        valid: ``(end, writer)`` bool, ``True`` where the writer comes before the reader.
    """

    nodes: tuple[Node, ...]
    writers: tuple[int, ...]
    ends: tuple[End, ...]
    valid: Tensor

    @property
    def n_edges(self) -> int:
        """Number of edges (positions merged)."""
        return int(self.valid.sum())

    def writer_index(self, layer: int, head: int | None) -> int:
        """Row of writer (``layer``, ``head``) in :attr:`writers` order (``head=None``: the MLP)."""
        node = _find(self.nodes, "head" if head is not None else "mlp", layer, head)
        return self.writers.index(node)


def _find(nodes: tuple[Node, ...], kind: str, layer: int | None, head: int | None) -> int:
    return next(i for i, n in enumerate(nodes) if n.kind == kind and n.layer == layer and n.head == head)


def build_graph(model: Model) -> Graph:
    """The graph of ``model`` (positions merged).

    Raises:
        UnsupportedModelError: the attention's query/key/value projections cannot be found.
    """
    ad = model.adapter
    shared_kv = ad.n_kv_heads < ad.n_heads
    nodes = [Node("embed", "embed")]
    for layer in range(ad.n_layers):
        nodes += [Node(f"L{layer}.H{h}", "head", layer, h) for h in range(ad.n_heads)]
        if shared_kv:
            nodes += [Node(f"L{layer}.KV{j}", "kv", layer, j) for j in range(ad.n_kv_heads)]
        nodes.append(Node(f"L{layer}.mlp", "mlp", layer))
    nodes.append(Node("logits", "logits"))
    nodes_t = tuple(nodes)
    writers = tuple(i for i, n in enumerate(nodes_t) if n.kind in ("embed", "head", "mlp"))
    ends: list[End] = []
    for layer in range(ad.n_layers):
        for _, _, cols in ad.qkv_projections(layer):
            for port, h, _ in cols:
                kind = "head" if port == "q" or not shared_kv else "kv"
                ends.append(End(_find(nodes_t, kind, layer, h), port, layer, h))
        ends.append(End(_find(nodes_t, "mlp", layer, None), "in", layer))
    ends.append(End(len(nodes_t) - 1, "in", ad.n_layers))
    valid = torch.zeros(len(ends), len(writers), dtype=torch.bool)
    for e, end in enumerate(ends):
        for w, i in enumerate(writers):
            src = nodes_t[i]
            before = src.kind == "embed" or src.layer < end.layer
            same_block = (
                src.layer == end.layer
                and src.kind == "head"
                and end.port == "in"
                and not ad.parallel_residual
            )
            valid[e, w] = before or same_block
    return Graph(nodes_t, writers, tuple(ends), valid)

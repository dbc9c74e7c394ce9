"""Cost and accuracy of circuits on the default model: EAP-IG against brute-force edge patching.

Usage::

    python bench/circuits.py            # table
    python bench/circuits.py --json     # one JSON document

Costs are forward-equivalents (FE): time / the best time of one plain forward pass of the same prompt in
the same process (last-position logits only, as the circuit's own passes compute), which cancels most of
the machine's speed at that moment (other jobs share these CPUs).

* ``eap`` / ``eap-ig``: scoring every edge (the curve reduced to one size, so 2 ablation rows are
  included: the size and the fully ablated run).
* ``curve``: the faithfulness curve of 10 sizes (no random circuits), minus the scoring run.
* ``brute force``: one ablation row per edge, batched, for a subset of IOI edges (the strongest 60 by
  EAP-IG and 60 drawn at random); its cost per edge times the number of edges is the cost of patching the
  whole graph. Spearman: rank agreement of each estimate with the real effect of ablating that one edge.
* memory: peak resident memory of the process (model included) while scoring a 64-token prompt.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to")
LONG = ("The history of Paris spans more than two thousand years. It began as a settlement of the Parisii, "
        "a Celtic people, on an island in the Seine, and grew under Roman rule into the town of Lutetia. In "
        "the Middle Ages it became the capital of the kings of France and one of the largest cities in")


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _brute_force(model, clean: str, corrupted: str, result, n_top: int, n_random: int) -> dict:
    from whyllm.methods.circuits.graph import build_graph
    from whyllm.methods.circuits.passes import ablation_pass, writer_outputs
    from whyllm.methods.engine.direct import capture_direct
    from whyllm.methods.engine.sweep import Metric

    graph = build_graph(model)
    ids, cids = model.encode(clean), model.encode(corrupted)
    with torch.no_grad(), capture_direct(model) as acts:
        model.hf(input_ids=torch.cat([ids, cids]), use_cache=False, logits_to_keep=1)
    base = writer_outputs(model, acts)[:, 1]
    metric = Metric.for_tokens(result.target_id, result.foil_id)
    index = {n.id: i for i, n in enumerate(graph.nodes)}
    ends = {(graph.nodes[e.node].id, e.port): i for i, e in enumerate(graph.ends)}
    rows = result.edge_rows()
    gen = torch.Generator().manual_seed(0)
    others = n_top + torch.randperm(len(rows) - n_top, generator=gen)[:n_random]
    chosen = list(range(n_top)) + others.tolist()
    ablate = torch.zeros(len(graph.ends), len(chosen) + 1, len(graph.writers), ids.shape[1])
    for row, k in enumerate(chosen, 1):
        e = rows[k]
        source, _, at = e["source"].partition("@")  # a token's embeddings: one position
        where = int(at) if at else slice(None)
        ablate[ends[(e["target"], e["port"])], row, graph.writers.index(index[source]), where] = 1.0
    start = time.perf_counter()
    values = torch.cat([ablation_pass(model, graph, ids, base, ablate[:, i: i + 32], metric)
                        for i in range(0, ablate.shape[1], 32)])
    seconds = time.perf_counter() - start
    effect = values[0] - values[1:]  # metric lost when that one edge carries the corrupted value
    return {"edges": chosen, "effect": effect, "seconds_per_edge": seconds / len(chosen)}


def run() -> dict:
    from whyllm import circuit, load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(progress=False)
    clean, corrupted = IOI
    ids = model.encode(clean)
    with torch.no_grad():
        fe = _best(lambda: model.hf(input_ids=ids, use_cache=False, logits_to_keep=1), 7)
    out: dict = {"forward_seconds": fe, "tokens": ids.shape[1]}
    kw = {"corrupted": corrupted, "target": " Mary", "foil": " John", "neurons": 0}
    results = {}
    for method, steps in (("eap", 1), ("eap-ig", 8)):
        def once(m: str = method, s: int = steps) -> None:
            results[m] = circuit(model, clean, method=m, steps=s, sizes=[1], random_samples=0, **kw)

        t = _best(once, 3)
        out[method] = {"fe": t / fe, "budget_fe": 3 * steps + 3 + 2}
    t_curve = _best(lambda: circuit(model, clean, random_samples=0, **kw), 3)
    out["curve_10_sizes_fe"] = t_curve / fe - out["eap-ig"]["fe"]
    n_edges = len(results["eap-ig"].scores)
    brute = _brute_force(model, clean, corrupted, results["eap-ig"], 60, 60)
    out["edges"] = n_edges
    out["brute_force_fe_per_edge"] = brute["seconds_per_edge"] / fe
    out["brute_force_whole_graph_fe"] = brute["seconds_per_edge"] * n_edges / fe
    out["speedup_eap_ig_vs_brute_force"] = out["brute_force_whole_graph_fe"] / out["eap-ig"]["fe"]
    for method, res in results.items():
        by_edge = {(e["source"], e["target"], e["port"]): e["score"] for e in res.edge_rows()}
        ref_rows = results["eap-ig"].edge_rows()
        est = torch.tensor([by_edge[(ref_rows[k]["source"], ref_rows[k]["target"], ref_rows[k]["port"])]
                            for k in brute["edges"]])
        from whyllm.methods.patching import spearman

        out[method]["spearman_vs_brute_force"] = spearman(est, brute["effect"])
    long_ids = model.encode(LONG)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    circuit(model, LONG, method="eap-ig", steps=8, sizes=[1], random_samples=0, neurons=0)
    out["long_prompt_tokens"] = long_ids.shape[1]
    out["peak_rss_gib"] = max(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 2**20
    return out


def main() -> None:
    """Run the benchmark and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = run()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"IOI prompt, {out['tokens']} tokens, {out['edges']} edges; "
          f"one forward {out['forward_seconds'] * 1e3:.0f} ms")
    for method in ("eap", "eap-ig"):
        m = out[method]
        print(f"{method:7s} {m['fe']:6.1f} FE (budget {m['budget_fe']} incl. 2 ablation rows); "
              f"Spearman vs brute force {m['spearman_vs_brute_force']:.3f}")
    print(f"curve of 10 sizes: {out['curve_10_sizes_fe']:.1f} FE")
    print(f"brute force: {out['brute_force_fe_per_edge']:.2f} FE per edge, "
          f"{out['brute_force_whole_graph_fe']:.0f} FE for the whole graph = "
          f"{out['speedup_eap_ig_vs_brute_force']:.0f}x EAP-IG")
    print(f"{out['long_prompt_tokens']}-token prompt: peak resident memory {out['peak_rss_gib']:.2f} GiB")


if __name__ == "__main__":
    main()

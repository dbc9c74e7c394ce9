"""``whyllm circuit``: edge attribution graph, circuit and faithfulness curve (GraphML export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from whyllm.cli._app import Run, command, progress_bar
from whyllm.files import check_writable
from whyllm.methods.circuits import circuit as run_circuit

TargetOpt = Annotated[str | None, typer.Option(help="The answer explained; default: the model's top token.")]
FoilOpt = Annotated[
    str | None,
    typer.Option(
        help="Metric is the target - foil logit difference (default: the corrupted run's top token)."
    ),
]


@command()
def circuit(
    run: Run,
    prompt: str,
    target: TargetOpt = None,
    foil: FoilOpt = None,
    corrupted: Annotated[
        str | None,
        typer.Option(
            help="Corrupted prompt of the same token length; default: mean ablation over positions."
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="eap-ig (integrated gradients) or eap (one gradient).")
    ] = "eap-ig",
    steps: Annotated[int, typer.Option(help="Interpolation steps of eap-ig.")] = 8,
    per_position: Annotated[bool, typer.Option(help="Keep every token position a separate node.")] = False,
    edges: Annotated[int | None, typer.Option(help="Circuit = the top N edges by |score|.")] = None,
    share: Annotated[
        float | None,
        typer.Option(help="Circuit = the fewest top edges holding this share of the total |score|."),
    ] = None,
    size: Annotated[
        list[int] | None,
        typer.Option(help="Circuit size (edges) of the faithfulness curve (repeat; default 10 sizes)."),
    ] = None,
    random_samples: Annotated[int, typer.Option(help="Random circuits per curve size.")] = 2,
    neurons: Annotated[int, typer.Option(help="Top neurons listed per MLP in the circuit.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the random circuits.")] = 0,
    graphml: Annotated[
        Path | None, typer.Option(help="Also write the graph as GraphML (networkx, Gephi).")
    ] = None,
) -> None:
    """Which paths carry the answer: every edge scored (EAP-IG), a circuit kept and checked by ablation."""
    if graphml is not None:
        check_writable(graphml, "GraphML file")
    prompts = (prompt,) if corrupted is None else (prompt, corrupted)
    m = run.load(*prompts)
    with progress_bar("ablation runs", unit="rows") as progress:
        res = run_circuit(
            m,
            prompt,
            target=target,
            foil=foil,
            corrupted=corrupted,
            method=method,
            steps=steps,
            per_position=per_position,
            edges=edges,
            share=share,
            sizes=size,
            random_samples=random_samples,
            neurons=neurons,
            seed=seed,
            progress=progress,
        )
    if graphml is not None:
        res.to_graphml(graphml)
    run.emit(res)

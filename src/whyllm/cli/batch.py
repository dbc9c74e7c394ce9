"""``whyllm batch INPUT --run METHOD[:OPTIONS] ... --out DIR`` and ``whyllm report DIR --html FILE``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from whyllm.cli._app import Run, command, out_console, progress_bar

__all__ = ["batch_cmd", "report_cmd"]


@command("batch", outputs=False)
def batch_cmd(
    run: Run,
    input: Annotated[
        Path,
        typer.Argument(
            help="JSONL, CSV or Parquet with a 'prompt' column (optional id, "
            "target, foil, corrupted, options)."
        ),
    ],
    runs: Annotated[
        list[str],
        typer.Option(
            "--run",
            help="METHOD[:OPTIONS], repeatable: predict, explain:occlusion, lens:top_k=3,positions=-1.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output folder (Parquet parts + manifest); rerunning with the same folder resumes."
        ),
    ],
    engine: Annotated[str, typer.Option(help="embedded (this process) or ray.")] = "embedded",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    chunk: Annotated[int, typer.Option(help="Rows per unit of work and per part.")] = 32,
    actors: Annotated[
        int | None,
        typer.Option(help="Ray actors (default: GPUs / --num-gpus, or CPUs / --num-cpus, or CPUs / 4)."),
    ] = None,
    num_cpus: Annotated[float | None, typer.Option(help="CPUs per Ray actor (fractions allowed).")] = None,
    num_gpus: Annotated[float, typer.Option(help="GPUs per Ray actor.")] = 0.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds Ray waits for actors to start and for progress before failing.")
    ] = 600.0,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the run's summary as one JSON document.")
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the report (whyllm report).")
    ] = None,
) -> None:
    """Run analyses over every row of a dataset, resumably, into Parquet parts (docs/batch.md)."""
    from whyllm.batch import batch, parse_run

    specs = [parse_run(r) for r in runs]  # cheap checks before loading anything
    load = {
        "dtype": run.dtype,
        "device": run.device,
        "trust_remote_code": run.trust_remote_code,
        "allow_pickle": run.allow_pickle,
    }
    with progress_bar("batch", unit="rows") as bar:
        summary = batch(
            input,
            specs,
            out,
            model=run.model,
            engine=engine,
            address=address,
            chunk=chunk,
            actors=actors,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            timeout=timeout,
            load_options=load,
            progress=bar,
        )
    if html is not None:
        from whyllm.batch.report import write_report

        write_report(out, html)
    if json_:
        sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
        return
    out_console.print(summary)


@command("report")
def report_cmd(
    out: Annotated[Path, typer.Argument(help="A whyllm batch output folder.")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the self-contained HTML summary here.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON document.")] = False,
) -> None:
    """Summarise a batch folder: accuracy, faithfulness ranking, driving tokens, disagreements, errors."""
    from whyllm.batch.report import summarise, text_summary, write_report

    summary = summarise(out)
    if html is not None:
        write_report(out, html, summary)
    if json_:
        sys.stdout.write(json.dumps(summary, allow_nan=False, default=str) + "\n")
    else:
        out_console.print(text_summary(summary))

"""``whyllm feedback add|list|show|export|import|rm``, ``whyllm tune`` and ``whyllm diff``."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from whyllm.cli._app import Run, app, command, err_console, out_console
from whyllm.errors import InputError

feedback_app = typer.Typer(
    name="feedback", help="Flag and correct completions; export them as training data.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")

DbOpt = Annotated[Path | None, typer.Option(
    "--db", help="Feedback database (default: feedback.sqlite in whyllm's cache, $WHYLLM_CACHE).")]


def _listing(items: list[dict], db: Path | None):
    from whyllm.feedback import default_db
    from whyllm.results.feedback import FeedbackListResult

    return FeedbackListResult(items=tuple(items), db=str(db or default_db()))


def _ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        value = jsonlib.loads(text) if text.strip().startswith("[") else [int(x) for x in text.split(",")]
    except ValueError as e:
        raise InputError(
            f"--completion-ids must be a JSON list or comma-separated integers, got {text!r}") from e
    return value


def _add_rows(file: Path | None, prompt, completion, verdict, correction, reason, messages, completion_ids,
              settings, seed) -> list[dict[str, Any]]:
    """The items to add, checked before the model loads: one from the options, or one per file line."""
    from whyllm.feedback import check_item, read_jsonl

    if file is not None:
        rows = read_jsonl(file)
    else:
        if (prompt is None) == (messages is None):
            raise InputError("give the prompt either as --prompt TEXT or as --messages JSON (one of them)")
        try:
            msgs = jsonlib.loads(messages) if messages is not None else None
            decoding = jsonlib.loads(settings) if settings is not None else {}
        except ValueError as e:
            raise InputError(f"--messages / --settings must be JSON: {e}") from e
        if seed is not None:
            decoding["seed"] = seed
        rows = [{"prompt": prompt, "messages": msgs, "completion": completion, "verdict": verdict,
                 "correction": correction, "reason": reason, "completion_ids": _ids(completion_ids),
                 "settings": decoding}]
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InputError(f"line {n} of {file} is not a JSON object")
        try:
            check_item(row.get("prompt") if row.get("messages") is None else "chat", row.get("completion"),
                       row.get("verdict"), row.get("correction"))
        except InputError as e:
            raise InputError(f"{file} line {n}: {e}; nothing was added" if file else str(e)) from None
    return rows


@command("add", on=feedback_app)
def add(
    run: Run,
    prompt: Annotated[str | None, typer.Option(help="The exact text the model continued.")] = None,
    completion: Annotated[str, typer.Option(help="The model's completion.")] = "",
    verdict: Annotated[str, typer.Option(help="good or bad.")] = "bad",
    correction: Annotated[str | None, typer.Option(help="What the model should have said.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (free text).")] = None,
    messages: Annotated[str | None, typer.Option(
        help="Chat messages as JSON (instead of --prompt), rendered with the chat template.")] = None,
    completion_ids: Annotated[str | None, typer.Option(
        help="The completion's exact token ids (JSON list or 1,2,3).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed the completion was sampled with.")] = None,
    settings: Annotated[str | None, typer.Option(help="Decoding settings as JSON.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="Add one item per JSONL line ({prompt, completion, verdict, correction?, reason?}).")]
    = None,
    user: Annotated[str | None, typer.Option(help="Who gives the feedback.")] = None,
    db: DbOpt = None,
) -> None:
    """Record a verdict (and optionally a correction) on a completion of the model."""
    from whyllm.feedback import add_feedback

    rows = _add_rows(file, prompt, completion, verdict, correction, reason, messages, completion_ids,
                     settings, seed)
    m = run.load()
    items = [add_feedback(m, r.get("prompt"), r["completion"], r["verdict"], correction=r.get("correction"),
                          reason=r.get("reason"), completion_ids=r.get("completion_ids"),
                          settings=r.get("settings") or {}, messages=r.get("messages"), source="cli",
                          user=user, db=db) for r in rows]
    run.emit(_listing(items, db))


@command("list", on=feedback_app, loads_model=False)
def list_(
    run: Run,
    db: DbOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model's items.")] = None,
    verdict: Annotated[str | None, typer.Option(help="Only good or only bad items.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many items.")] = None,
) -> None:
    """List stored feedback, oldest first."""
    from whyllm.feedback import list_feedback

    run.emit(_listing(list_feedback(db, model=model, verdict=verdict, limit=limit), db))


@command("show", on=feedback_app, loads_model=False)
def show(run: Run, item_id: Annotated[int, typer.Argument(help="Feedback id.")], db: DbOpt = None) -> None:
    """Show one item with every recorded field."""
    from whyllm.feedback import get_feedback

    item = get_feedback(item_id, db)
    if run.json or run.html or run.png:
        run.emit(_listing([item], db))
        return
    from rich.table import Table

    table = Table(show_header=False, title=f"feedback #{item_id}")
    for key, value in item.items():
        table.add_row(key, value if isinstance(value, str) else jsonlib.dumps(value, ensure_ascii=False))
    out_console.print(table)


@command("export", on=feedback_app)
def export(
    format: Annotated[str, typer.Option(
        "--format", "-f", help="dpo, kto, sft (TRL formats) or jsonl (all).")] = "dpo",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here (default: stdout).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model's items.")] = None,
    text: Annotated[bool, typer.Option(
        "--text", help="Chat items as their templated text, not TRL's conversational form.")] = False,
    db: DbOpt = None,
) -> None:
    """Export the store as JSONL training data (TRL preference, unpaired, prompt-completion) or a backup."""
    from whyllm.feedback import export_feedback

    rows = export_feedback(out, format, db, model=model, conversational=not text)
    if out is None:
        sys.stdout.write("".join(jsonlib.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        err_console.print(f"wrote {len(rows)} row(s) to {out}")


@command("import", on=feedback_app)
def import_(
    path: Annotated[Path, typer.Argument(help="JSONL file (dpo, kto, sft or jsonl rows; detected per row).")],
    model_name: Annotated[str, typer.Option(
        help="Model name recorded for rows in TRL formats (they carry none).")] = "gemma-3-270m",
    user: Annotated[str | None, typer.Option(help="Who gave the feedback.")] = None,
    db: DbOpt = None,
) -> None:
    """Add every row of an export to the store (all or none)."""
    from whyllm.feedback import import_feedback

    ids = import_feedback(path, db, model=model_name, user=user)
    err_console.print(f"imported {len(ids)} item(s): ids {ids[0]}..{ids[-1]}")


@command("rm", on=feedback_app)
def rm(ids: Annotated[list[int], typer.Argument(help="Feedback ids to remove.")], db: DbOpt = None) -> None:
    """Remove items by id (all or none)."""
    from whyllm.feedback import remove_feedback

    removed = remove_feedback(ids, db)
    err_console.print(f"removed {len(removed)} item(s)")


@command()
def tune(
    run: Run,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the adapter and its checkpoints.")],
    db: DbOpt = None,
    method: Annotated[str | None, typer.Option(
        help="dpo (pairs), kto (good/bad verdicts) or sft (corrections); default dpo if pairs exist.")]
    = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 30,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (constant).")] = 5e-5,
    batch_size: Annotated[int, typer.Option(help="Rows per step.")] = 4,
    rank: Annotated[int, typer.Option(help="LoRA rank (all linear layers).")] = 8,
    beta: Annotated[float, typer.Option(help="DPO/KTO beta.")] = 0.1,
    checkpoint_every: Annotated[int, typer.Option(help="Adapter-only checkpoint every K steps.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and data order.")] = 0,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Train only on this feedback id (repeat).")]
    = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
) -> None:
    """Tune a LoRA adapter on the stored feedback (TRL, CPU by default); resumes a run left in --out."""
    from whyllm.feedback.tune import tune as tune_fn

    m = run.load()
    result = tune_fn(m, db, out=out, method=method, steps=steps, learning_rate=lr, batch_size=batch_size,
                     rank=rank, beta=beta, checkpoint_every=checkpoint_every, seed=seed, ids=ids,
                     progress=progress)
    run.emit(result)


@command()
def diff(
    run: Run,
    prompts: Annotated[list[str], typer.Argument(help="Prompts to compare the base and tuned model on.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Tokens listed as gained / lost.")] = 5,
    max_new_tokens: Annotated[int, typer.Option(help="Length of the compared generations.")] = 20,
    temperature: Annotated[float, typer.Option(help="Generation temperature (0: greedy).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of both generations.")] = 0,
    feedback: Annotated[bool, typer.Option(help="Rank the training feedback by TracIn.")] = True,
    threshold: Annotated[float, typer.Option(help="KL (nats) above which a prompt counts as moved.")] = 0.05,
) -> None:
    """Base vs tuned, prompt by prompt: what changed, where in the model, and which feedback drove it."""
    from whyllm.feedback.diff import diff as diff_fn

    if run.adapter is None:
        raise InputError("diff compares a base model with its tuned adapter; give --adapter DIR "
                         "(a folder written by whyllm tune)")
    m = run.load(*prompts)
    result = diff_fn(m, prompts, top_k=top_k, max_new_tokens=max_new_tokens, temperature=temperature,
                     seed=seed, feedback=feedback, threshold=threshold)
    run.emit(result)

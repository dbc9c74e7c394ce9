"""The run directory ``whyllm train`` writes and every other command reads.

Layout::

    RUN_DIR/
      run.json            settings, how the data was made and sampled, completed_steps
      examples.jsonl      the finite training set: {"index", "input_ids", "text"} per line, in order
      eval.jsonl          held-out examples made the same way (never trained on)
      checkpoint-<step>/  save_pretrained folder (safetensors, config.json, tokenizer files) plus
                          training_state.pt (optimizer, scheduler, RNG; weights_only loadable) and
                          trainer_state.json (loss history up to that step)

Checkpoints are written to a hidden temporary folder and renamed into place, so a reader never sees
a half-written one; leftovers of an interrupted write are ignored and removed on resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from whyllm.errors import InputError

__all__ = [
    "checkpoints", "clean_partial", "latest_checkpoint", "load_eval_examples", "load_examples", "read_run",
    "write_json_atomic", "write_jsonl_atomic",
]

_CKPT = re.compile(r"^checkpoint-(\d+)$")
TMP_PREFIX = ".tmp-"


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``(step, path)`` sorted by step.

    Raises:
        InputError: the folder does not exist or holds no checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"the run directory {str(run_dir)!r} does not exist; give a folder written by "
                         "`whyllm train --out DIR`")
    found = sorted(
        (int(m.group(1)), p) for p in run_dir.iterdir()
        if p.is_dir() and (m := _CKPT.match(p.name)) and (p / "config.json").is_file()
    )
    if not found:
        raise InputError(f"{str(run_dir)!r} has no checkpoints (no checkpoint-<step> folders with a "
                         "config.json); train into it first with `whyllm train --out DIR`")
    return found


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path]:
    """The checkpoint with the highest step."""
    return checkpoints(run_dir)[-1]


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a run directory.

    Raises:
        InputError: missing or unreadable.
    """
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise InputError(f"{str(run_dir)!r} has no run.json; it is not a whyllm training run")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{str(path)!r} is not valid JSON ({e}); the run directory is damaged") from e


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"{str(path)!r} is missing; the run directory is incomplete (train into it again)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_examples(run_dir: str | Path) -> list[dict[str, Any]]:
    """The training set, in index order: dicts with ``index``, ``input_ids`` and ``text``."""
    rows = _jsonl(Path(run_dir) / "examples.jsonl")
    if [r.get("index") for r in rows] != list(range(len(rows))):
        raise InputError(f"{str(run_dir)!r}/examples.jsonl is not in index order 0..{len(rows) - 1}; "
                         "the run directory is damaged")
    return rows


def load_eval_examples(run_dir: str | Path) -> list[dict[str, Any]]:
    """The held-out examples (same fields as :func:`load_examples`)."""
    return _jsonl(Path(run_dir) / "eval.jsonl")


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write JSON lines to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def clean_partial(run_dir: Path) -> list[str]:
    """Remove leftovers of interrupted writes (``.tmp-*``); returns their names."""
    gone = []
    for p in run_dir.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        gone.append(p.name)
    return gone

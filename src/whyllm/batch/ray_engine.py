"""The Ray engine: Ray Data over the units, an actor pool where each actor loads the model once.

Each unit is one Ray Data row; ``map_batches`` sends it (``batch_size=1``) to an actor of a pool that
loaded the model in its constructor. The actor runs the unit with the embedded engine's code (the
same cross-prompt packing) and writes its part itself (atomically, under a name that is a hash of
the unit's keys), so a unit retried after an actor died rewrites the same part with the same rows:
nothing is lost and nothing is counted twice. Actors are restarted
and their tasks retried by Ray Data (its actor pools default to ``max_restarts=-1``).
Needs ``pip install whyllm[ray]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whyllm.batch.engine import RunSpec, Unit, run_unit
from whyllm.batch.io import clean_temp, write_part
from whyllm.errors import InputError, WhyllmError

__all__ = ["CPUS_PER_ACTOR", "RayStartError", "run_ray"]

# CPU-only pools: one actor per this many CPUs, each with as many torch threads. Every actor loads its
# own model copy (start-up and memory), so a few multi-threaded actors beat one per CPU: on 2 shared
# CPUs, one actor reached its first rows in 10 s where two loading side by side took 21 s.
CPUS_PER_ACTOR = 4


class RayStartError(WhyllmError, OSError):
    """The Ray head could not start or be reached."""


class _UnitWorker:
    """A Ray actor: loads the model once, then runs units and writes their parts."""

    def __init__(self, model: str | None, load_options: dict[str, Any], out: str, threads: int) -> None:
        import torch

        from whyllm.model import load_model

        torch.set_num_threads(max(1, threads))
        self.model = load_model(model, **load_options)
        self.out = out

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        statuses, pids = [], []
        for text in batch["unit"]:
            doc = json.loads(text)
            unit = Unit(RunSpec(doc["analysis"], doc["options"]), tuple(doc["rows"]))
            rows = run_unit(self.model, unit)
            write_part(self.out, rows)
            statuses.append(json.dumps([r["status"] for r in rows]))
            pids.append(os.getpid())
        return {"statuses": statuses, "pid": pids}


def _encode(unit: Unit) -> str:
    return json.dumps({"analysis": unit.spec.analysis, "options": unit.spec.options, "rows": list(unit.rows)})


def _reachable(address: str, seconds: float = 5.0) -> str | None:
    """``None`` if ``host:port`` (or ``ray://host:port``) accepts a TCP connection, else why not."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None  # "auto", "local" or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return None


def _start(address: str | None, num_cpus: float | None) -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            "the Ray engine needs Ray: pip install 'whyllm[ray]' (or use --engine embedded)"
        ) from None
    if ray.is_initialized():
        return ray
    why = _reachable(address) if address else None
    if why is not None:  # Ray itself retries an unreachable head for minutes
        raise RayStartError(f"the Ray head at {address!r} cannot be reached ({why}); start it with "
                            "`ray start --head`, check the address, or use --engine embedded")
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            ignore_reinit_error=True,
        )
    except Exception as e:  # noqa: BLE001 (any start failure is the same user-facing problem)
        where = f"at {address!r}" if address else "locally"
        raise RayStartError(
            f"the Ray head could not start or be reached {where} ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}); check the address, that loopback networking works "
            "(ray start --head), or use --engine embedded"
        ) from None
    return ray


def run_ray(
    model: str | None,
    load_options: dict[str, Any],
    units: list[Unit],
    out: str | Path,
    on_rows: Callable[[list[dict[str, Any]]], None],
    *,
    address: str | None = None,
    actors: int | None = None,
    num_cpus: float | None = None,
    num_gpus: float = 0.0,
    timeout: float = 600.0,
) -> None:
    """Run ``units`` on a Ray actor pool; each unit's part is written by the actor that ran it.

    Args:
        model: the name or path each actor loads.
        load_options: keyword arguments for :func:`whyllm.load_model`.
        units: from :func:`whyllm.batch.engine.plan`.
        out: the output folder (shared storage on a multi-machine cluster).
        on_rows: called with one ``{"status"}`` dict per finished row.
        address: a Ray cluster address; ``None`` starts a local Ray.
        actors: pool size (default: the GPUs / ``num_gpus`` with GPUs, cluster CPUs / ``num_cpus``
            with ``num_cpus``, else one actor per :data:`CPUS_PER_ACTOR` CPUs, at least one).
        num_cpus: CPUs per actor, fractions allowed (default: the cluster's CPUs shared by the actors,
            keeping a quarter CPU free for Ray Data's own tasks); each actor runs that many torch
            threads, rounded (at least one).
        num_gpus: GPUs per actor.
        timeout: seconds Ray Data waits for the actors to start and for progress before failing.
    """
    if not units:
        return
    ray = _start(address, num_cpus)
    from ray.data import ActorPoolStrategy, DataContext

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if actors is None:
        per = num_cpus or CPUS_PER_ACTOR
        actors = max(1, int(gpus // num_gpus) if num_gpus else int(cpus // per))
    actors = min(actors, len(units))
    if num_cpus is None:
        num_cpus = max(0.1, (cpus - 0.25) / actors)
    ctx = DataContext.get_current()
    ctx.wait_for_min_actors_s = timeout
    ctx.execution_no_progress_timeout_s = timeout
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([{"unit": _encode(u)} for u in units], override_num_blocks=len(units))
    mapped = ds.map_batches(
        _UnitWorker,
        batch_size=1,
        compute=ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        fn_constructor_args=(model, load_options, str(out), max(1, round(num_cpus))),
    )  # Ray Data's actor pools restart dead actors and retry their tasks by default (max_restarts=-1)
    try:
        for batch in mapped.iter_batches(batch_size=None, batch_format="default"):
            for statuses in batch["statuses"]:
                on_rows([{"status": s} for s in json.loads(statuses)])
    finally:
        clean_temp(out)  # temp files of writes cut short by a dead actor (their units were redone)

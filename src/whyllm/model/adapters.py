"""LoRA adapters on a loaded model: weights fingerprints and loading an adapter folder (PEFT).

An adapter folder is what :func:`whyllm.tune` writes (PEFT's ``adapter_config.json`` and
``adapter_model.safetensors``, plus ``whyllm-tune.json`` recording the base model's weights fingerprint
and the feedback it was trained on). Only safetensors adapters load. The LoRA layers are injected into
the base model's modules in place, so the base and the tuned model share one copy of the weights:
``with adapted.base():`` runs the base model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from whyllm.errors import ModelLoadError
from whyllm.model.base import Model

__all__ = ["RECORD_FILE", "AdaptedModel", "load_adapter", "peft_quiet", "weights_hash"]

RECORD_FILE = "whyllm-tune.json"
_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def peft_quiet() -> Iterator[None]:
    """Silence transformers/PEFT/TRL deprecation chatter (not ours to fix) inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _canonical(name: str) -> str:
    # PEFT renames wrapped weights (base_model.model. ... .base_layer.weight): hash the original names.
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def weights_hash(model: Model | torch.nn.Module, *, base_only: bool = True) -> str:
    """Fingerprint of a model's weights (16 hex digits), cheap enough to take on every load.

    SHA-256 over each parameter's name, shape, dtype, float64 sum and an evenly strided sample of about
    4k of its values. ``base_only`` leaves LoRA parameters out, so a base model and the same model with
    an adapter loaded share the fingerprint.
    """
    hf = model.hf if isinstance(model, Model) else model
    key = "base" if base_only else "all"
    cached = _HASHES.get(hf, {})
    if key in cached and base_only:  # LoRA weights change while training: only the base is cached
        return cached[key]
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(hf.named_parameters(), key=lambda kv: _canonical(kv[0])):
            if base_only and "lora_" in name:
                continue
            flat = p.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes()
            digest.update(f"{_canonical(name)}|{tuple(p.shape)}|{p.dtype}|{float(flat.double().sum()):.6e}|"
                          .encode())
            digest.update(sample)
    value = digest.hexdigest()[:16]
    if base_only:
        _HASHES[hf] = {**cached, key: value}
    return value


@dataclass(eq=False)
class AdaptedModel(Model):
    """A :class:`Model` with a LoRA adapter: ``hf`` runs the tuned model, :meth:`base` the base one.

    Attributes:
        peft: the PEFT wrapper (``disable_adapter()``, ``merge_adapter()``...).
        adapter_dir: where the adapter was loaded from.
        record: the adapter's ``whyllm-tune.json`` (empty when the folder has none).
        base_name: the base model's name.

    """

    peft: Any = None
    adapter_dir: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    base_name: str = ""

    @contextlib.contextmanager
    def _keep_grad_flags(self) -> Iterator[None]:
        # PEFT's enable_adapter_layers() marks the active adapter trainable: restore the flags after.
        flags = [(p, p.requires_grad) for p in self.peft.parameters()]
        try:
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    @contextlib.contextmanager
    def base(self) -> Iterator[None]:
        """Run the base model inside the block (the adapter is disabled, not removed)."""
        with self._keep_grad_flags(), peft_quiet(), self.peft.disable_adapter():
            yield

    @contextlib.contextmanager
    def merged(self) -> Iterator[None]:
        """Fold the adapter into the base weights inside the block (for methods that read weights)."""
        with peft_quiet():
            self.peft.merge_adapter()
        try:
            yield
        finally:
            with peft_quiet():
                self.peft.unmerge_adapter()


def _read_record(folder: Path) -> dict[str, Any]:
    path = folder / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{str(path)!r} is not valid JSON ({e}); the adapter folder is damaged") from e


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelLoadError(f"adapter folder {str(folder)!r} does not exist; give the --out folder of "
                             "`whyllm tune` (or a PEFT LoRA folder)")
    if not (folder / "adapter_config.json").is_file():
        raise ModelLoadError(f"{str(folder)!r} has no adapter_config.json; it is not a PEFT adapter folder")
    if not (folder / "adapter_model.safetensors").is_file():
        pickled = [p.name for p in folder.glob("adapter_model.*")]
        raise ModelLoadError(
            f"{str(folder)!r} has no adapter_model.safetensors"
            + (f" (only {pickled[0]}, a pickle, which whyllm does not load)" if pickled else "")
            + "; save the adapter with safetensors (PEFT's default)"
        )


def load_adapter(model: Model, adapter_dir: str | os.PathLike) -> AdaptedModel:
    """Load a LoRA adapter onto ``model`` (in place: ``model`` itself then runs the tuned weights).

    Args:
        model: the base model, from :func:`whyllm.load_model`.
        adapter_dir: a folder written by :func:`whyllm.tune` or PEFT (safetensors only).

    Raises:
        ModelLoadError: the folder is missing or not a safetensors LoRA adapter, was trained on a
            base model with other weights, or its tensors do not fit this model.

    """
    folder = Path(adapter_dir).expanduser()
    _check_folder(folder)
    record = _read_record(folder)
    want = record.get("base", {}).get("weights_hash")
    have = weights_hash(model)
    if want and want != have:
        raise ModelLoadError(
            f"the adapter in {str(folder)!r} was trained on {record['base'].get('name')!r} with weights "
            f"{want}, but {model.name!r} has weights {have}; load the base model it was trained on"
        )
    from peft import PeftModel

    try:
        with peft_quiet():
            peft = PeftModel.from_pretrained(model.hf, str(folder), is_trainable=False)
    except Exception as e:
        lines = str(e).strip().splitlines()
        raise ModelLoadError(
            f"the adapter in {str(folder)!r} does not fit {model.name!r} ({type(e).__name__}: "
            f"{lines[0] if lines else ''}); it was trained on another base model"
        ) from e
    peft.eval()
    adapted = AdaptedModel(hf=peft.get_base_model(), tokenizer=model.tokenizer,
                           name=f"{model.name}+{folder.name}", peft=peft, adapter_dir=str(folder),
                           record=record, base_name=model.name)
    return adapted

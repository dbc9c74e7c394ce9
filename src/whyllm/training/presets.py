"""Named model configurations for training from random initialisation.

A preset fixes the shape (width, depth, heads, MLP width); the vocabulary size and context length
come from the task's tokenizer and sequence length. ``family`` picks the Hugging Face config class
(any family the adapter supports); the default is Llama-shaped (RoPE positions, RMSNorm, gated MLP),
the family in which induction heads form quickly (learned absolute positions barely learn the task).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from whyllm.errors import InputError, UnknownMethodError

__all__ = ["FAMILIES", "PRESETS", "Preset", "build_config", "freeze_mlps_", "get_preset", "new_model"]


@dataclass(frozen=True)
class Preset:
    """Shape of a model to train.

    Attributes:
        name: preset name.
        d_model: residual width.
        n_layers: transformer blocks.
        n_heads: attention heads per layer (key/value heads the same).
        d_mlp: MLP width; 0 makes an attention-only model.
        description: one line for ``--help`` and docs.
    """

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    description: str

    def to_dict(self) -> dict:
        """Plain dict for ``run.json``."""
        return asdict(self)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("attn-only-2l-1h", 64, 2, 1, 0, "attention-only, 2 layers, 1 head each (minimal induction)"),
    Preset("attn-only-2l", 64, 2, 4, 0, "2-layer attention-only model (no MLPs), width 64, 4 heads"),
    Preset("tiny", 64, 2, 4, 256, "2 layers, width 64, 4 heads, MLP 256 (~131k parameters + embeddings)"),
    Preset("small", 128, 4, 4, 512, "4 layers, width 128, 4 heads, MLP 512 (~1.05M parameters + embeddings)"),
    Preset("medium", 256, 4, 8, 1024, "4 layers, width 256, 8 heads, MLP 1024 (~4.2M + embeddings)"),
)}

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gpt2", "gpt_neox", "phi3")


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``; unknown names list the valid ones."""
    if name not in PRESETS:
        raise UnknownMethodError("preset", name, list(PRESETS))
    return PRESETS[name]


def build_config(preset: Preset, *, vocab_size: int, n_ctx: int, family: str = "llama",
                 bos_id: int = 1, eos_id: int = 2, pad_id: int = 0):
    """Hugging Face config of ``family`` with the preset's shape (eager attention, untied embeddings)."""
    import transformers as T

    if family not in FAMILIES:
        raise UnknownMethodError("model family", family, list(FAMILIES))
    if preset.d_model % preset.n_heads:
        raise InputError(f"preset {preset.name!r}: d_model {preset.d_model} is not divisible by "
                         f"n_heads {preset.n_heads}")
    d_mlp = max(1, preset.d_mlp)  # attention-only: one MLP neuron, zeroed and frozen by new_model
    d, n_l, n_h, d_head = preset.d_model, preset.n_layers, preset.n_heads, preset.d_model // preset.n_heads
    common = {"vocab_size": vocab_size, "pad_token_id": pad_id, "bos_token_id": bos_id,
              "eos_token_id": eos_id, "tie_word_embeddings": False}
    if family == "gpt2":
        cfg = T.GPT2Config(n_embd=d, n_layer=n_l, n_head=n_h, n_positions=n_ctx, n_inner=d_mlp,
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
    elif family == "gpt_neox":
        cfg = T.GPTNeoXConfig(hidden_size=d, num_hidden_layers=n_l, num_attention_heads=n_h,
                              intermediate_size=d_mlp, max_position_embeddings=n_ctx, **common)
    else:
        classes = {"llama": T.LlamaConfig, "mistral": T.MistralConfig, "qwen2": T.Qwen2Config,
                   "qwen3": T.Qwen3Config, "gemma3_text": T.Gemma3TextConfig, "phi3": T.Phi3Config}
        extra = {"head_dim": d_head} if family in ("qwen3", "gemma3_text", "mistral", "llama") else {}
        if family == "gemma3_text":
            extra.update(query_pre_attn_scalar=d_head, sliding_window=n_ctx)
        cfg = classes[family](hidden_size=d, num_hidden_layers=n_l, num_attention_heads=n_h,
                              num_key_value_heads=n_h, intermediate_size=d_mlp,
                              max_position_embeddings=n_ctx, **extra, **common)
    cfg._attn_implementation = "eager"  # attention weights for the analyses; tiny models lose nothing
    return cfg


def new_model(config, seed: int, *, attention_only: bool = False):
    """Randomly initialised causal LM from ``config`` (seeded).

    With ``attention_only`` every MLP's weights are zeroed and frozen, so each MLP adds exactly
    nothing: an attention-only model that every tool still loads as an ordinary checkpoint.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    if attention_only:
        freeze_mlps_(model)
    return model


def freeze_mlps_(model) -> None:
    """Zero every MLP parameter of ``model`` and stop its gradients (in place)."""
    import torch

    from whyllm.model.adapter import ModelAdapter

    ad = ModelAdapter(model)
    with torch.no_grad():
        for layer in range(ad.n_layers):
            for p in ad.part(layer, "mlp").parameters():
                p.zero_()
                p.requires_grad_(False)

"""Where each architecture keeps its parts, as data.

Every supported Hugging Face ``model_type`` maps to an :class:`ArchitectureSpec`: dotted module paths,
relative to the ``*ForCausalLM`` model (``embed``, ``blocks``, ``ln_final``, ``unembed``) or to one
block (the rest). To support a new architecture add one entry with :func:`register_architecture`;
nothing else in whyllm branches on the architecture.

Two paths per sublayer matter for the decompositions:

* ``attn_o`` / ``mlp_down``: the output projection, whose *input* is the concatenated heads
  (``n_heads * d_head``) or the MLP's neurons (``d_mlp``).
* ``attn_out`` / ``mlp_out``: the module whose *output* is exactly what the sublayer adds to the
  residual stream. For most models that is the attention or MLP module itself; Gemma 2/3 apply a
  further RMSNorm (``post_attention_layernorm``, ``post_feedforward_layernorm``) before adding, named in
  ``attn_post_norm`` / ``mlp_post_norm``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

__all__ = ["ArchitectureSpec", "architecture_for", "register_architecture", "supported_architectures"]


@dataclass(frozen=True)
class ArchitectureSpec:
    """Module paths of one architecture family (see the module docstring)."""

    embed: str
    blocks: str
    ln_final: str
    ln1: str
    ln2: str
    attn: str
    attn_o: str
    mlp: str
    mlp_down: str
    pos_embed: str | None = None
    attn_post_norm: str | None = None
    mlp_post_norm: str | None = None
    parallel_residual: bool = False

    @property
    def attn_out(self) -> str:
        """Block-relative path of the module whose output the attention adds to the residual."""
        return self.attn_post_norm or self.attn

    @property
    def mlp_out(self) -> str:
        """Block-relative path of the module whose output the MLP adds to the residual."""
        return self.mlp_post_norm or self.mlp


_LLAMA_LIKE = ArchitectureSpec(
    embed="model.embed_tokens",
    blocks="model.layers",
    ln_final="model.norm",
    ln1="input_layernorm",
    ln2="post_attention_layernorm",
    attn="self_attn",
    attn_o="self_attn.o_proj",
    mlp="mlp",
    mlp_down="mlp.down_proj",
)

# Gemma 2/3: Llama's layout plus a norm after each sublayer
_GEMMA2_LIKE = replace(
    _LLAMA_LIKE, ln2="pre_feedforward_layernorm", attn_post_norm="post_attention_layernorm",
    mlp_post_norm="post_feedforward_layernorm",
)

_GPT2 = ArchitectureSpec(
    embed="transformer.wte",
    pos_embed="transformer.wpe",
    blocks="transformer.h",
    ln_final="transformer.ln_f",
    ln1="ln_1",
    ln2="ln_2",
    attn="attn",
    attn_o="attn.c_proj",
    mlp="mlp",
    mlp_down="mlp.c_proj",
)

_GPT_NEOX = ArchitectureSpec(
    embed="gpt_neox.embed_in",
    blocks="gpt_neox.layers",
    ln_final="gpt_neox.final_layer_norm",
    ln1="input_layernorm",
    ln2="post_attention_layernorm",
    attn="attention",
    attn_o="attention.dense",
    mlp="mlp",
    mlp_down="mlp.dense_4h_to_h",
    parallel_residual=True,
)

_REGISTRY: dict[str, ArchitectureSpec] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "phi3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _GEMMA2_LIKE,
    "gemma3": _GEMMA2_LIKE,
    "gemma3_text": _GEMMA2_LIKE,
    "gpt2": _GPT2,
    "gpt_neox": _GPT_NEOX,
}


def register_architecture(model_type: str, spec: ArchitectureSpec) -> None:
    """Teach whyllm a new ``config.model_type`` (e.g. a fine-tuned variant of a known family)."""
    _REGISTRY[model_type] = spec


def supported_architectures() -> MappingProxyType[str, ArchitectureSpec]:
    """Read-only view of the known ``model_type`` -> spec table."""
    return MappingProxyType(_REGISTRY)


def architecture_for(model_type: str) -> ArchitectureSpec | None:
    """Return the spec for ``model_type``, or ``None`` (the adapter then searches the module tree)."""
    return _REGISTRY.get(model_type)

"""Tiny randomly initialised models of every supported architecture, built offline.

For tests, demos and benchmarks: a byte-level BPE tokenizer trained in memory on a small built-in
corpus, and a model of the chosen architecture built from a config (no downloads). Deterministic for
a given seed.
"""

from __future__ import annotations

import functools

import torch

from whyllm.model.base import Model

__all__ = ["TINY_ARCHITECTURES", "tiny_model", "tiny_tokenizer"]

_CORPUS = [
    "When Mary and John went to the store, John gave a drink to Mary.",
    "The capital of France is Paris. The capital of Italy is Rome. The capital of Japan is Tokyo.",
    "The Eiffel Tower is in Paris. Berlin is the capital of Germany.",
    "Alice and Bob talked. Bob said hello to Alice, and Alice smiled back at Bob.",
    "A quick brown fox jumps over the lazy dog. The dog did not move.",
    "User: Hello! Assistant: Hi, how can I help you today? User: Tell me a story.",
    "One two three four five six seven eight nine ten. 1 2 3 4 5 6 7 8 9 0.",
    "Why did the model say that? Because the evidence pointed there, and the words agreed.",
]

TINY_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gpt2", "gpt_neox", "phi3")


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800, special_tokens=["<pad>", "<bos>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return tok.to_str()


def tiny_tokenizer():
    """Build the tiny fast tokenizer (vocab ~500, ``<bos>`` prepended, offsets available)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
    )


def _config(arch: str, vocab: int, d_model: int, n_layers: int, n_heads: int, n_kv: int, n_ctx: int):
    import transformers as T

    d_head = d_model // n_heads
    common = {"vocab_size": vocab, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if arch == "gpt2":
        return T.GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_positions=n_ctx, **common)
    if arch == "gpt_neox":
        return T.GPTNeoXConfig(hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                               intermediate_size=4 * d_model, max_position_embeddings=n_ctx, **common)
    classes = {"llama": T.LlamaConfig, "mistral": T.MistralConfig, "qwen2": T.Qwen2Config,
               "qwen3": T.Qwen3Config, "gemma3_text": T.Gemma3TextConfig, "phi3": T.Phi3Config}
    extra = {"head_dim": d_head} if arch in ("qwen3", "gemma3_text", "mistral", "llama") else {}
    if arch == "gemma3_text":
        extra.update(sliding_window=16, final_logit_softcapping=30.0, query_pre_attn_scalar=d_head)
    return classes[arch](hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                         num_key_value_heads=n_kv, intermediate_size=2 * d_model,
                         max_position_embeddings=n_ctx, **extra, **common)


def tiny_model(
    arch: str = "llama", *, d_model: int = 64, n_layers: int = 2, n_heads: int = 4, n_kv_heads: int = 2,
    n_ctx: int = 128, seed: int = 0, dtype: torch.dtype = torch.float32,
) -> Model:
    """Build a randomly initialised ``arch`` model with the tiny tokenizer, as a whyllm :class:`Model`.

    Gemma 3 gets final-logit soft-capping turned on so the adapter's soft-capping path is exercised.
    """
    from transformers import AutoModelForCausalLM

    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {TINY_ARCHITECTURES}")
    tok = tiny_tokenizer()
    cfg = _config(arch, len(tok), d_model, n_layers, n_heads, n_kv_heads, n_ctx)
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    with torch.no_grad():  # random init leaves norms at 1 and biases at 0: perturb them so bugs show
        for name, p in hf.named_parameters():
            if "norm" in name or "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return Model(hf=hf, tokenizer=tok, name=f"tiny-{arch}")

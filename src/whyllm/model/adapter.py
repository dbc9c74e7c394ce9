"""One architecture-agnostic view of a Hugging Face causal LM.

Vocabulary (TransformerLens's) used throughout whyllm:

* sizes: ``d_model`` (residual width), ``n_layers``, ``n_heads``, ``n_kv_heads``, ``d_head``,
  ``d_mlp``, ``d_vocab``, ``n_ctx`` (context window);
* residual stream: ``resid_pre`` (input of block ``l``), ``resid_mid`` (after attention, sequential
  models only), ``resid_post`` (output of block ``l``); ``embed`` is ``resid_pre`` of block 0;
* sublayer outputs as added to the residual: ``attn_out``, ``mlp_out``;
* axis names in shape comments: ``batch``, ``pos``, ``layer``, ``head``, ``d_model``, ``vocab``.

The adapter never runs hooks itself; :mod:`whyllm.model.hooks` does, on the modules it exposes.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whyllm.errors import InputError, ParityError, UnsupportedModelError
from whyllm.model.architectures import ArchitectureSpec, architecture_for
from whyllm.model.hooks import capture

__all__ = ["ModelAdapter"]

_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")
_OUT_PROJ_NAMES = ("o_proj", "out_proj", "dense", "c_proj", "wo")
_DOWN_NAMES = ("down_proj", "c_proj", "dense_4h_to_h", "fc2", "w2", "fc_out")
_FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f")


def _get(root: nn.Module, path: str | None) -> nn.Module | None:
    if not path:  # "" would be the root itself
        return None
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def _child(module: nn.Module, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if isinstance(getattr(module, n, None), nn.Module)), None)


def _input_embeddings(model: nn.Module) -> nn.Module | None:
    try:
        return model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None


def _output_embeddings(model: nn.Module) -> nn.Module | None:
    try:
        return model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None


def _model_type(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def _norm_roles(block: nn.Module) -> dict[str, str] | None:
    """Assign a block's norms (in registration order, which HF keeps in forward order) to roles.

    Two norms: before attention, before the MLP. Four (Gemma 2/3): before and after each sublayer.
    One: shared by both sublayers (a parallel block).
    """
    norms = [n for n, _ in block.named_children() if "norm" in n.lower() or n.lower().startswith("ln")]
    if len(norms) == 1:
        return {"ln1": norms[0], "ln2": norms[0]}
    if len(norms) == 2:
        return {"ln1": norms[0], "ln2": norms[1]}
    if len(norms) == 4:
        return {"ln1": norms[0], "attn_post_norm": norms[1], "ln2": norms[2], "mlp_post_norm": norms[3]}
    return None


def _discover(model: nn.Module) -> ArchitectureSpec:
    """Structural search for an unknown architecture (largest ModuleList = blocks)."""
    what = f"{type(model).__name__} (model_type={_model_type(model)!r})"
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise UnsupportedModelError(
            f"{what} is not a known architecture and whyllm found no list of transformer blocks "
            "(an nn.ModuleList); register it with whyllm.model.register_architecture()"
        )
    blocks_path, blocks = max(lists, key=lambda nm: len(nm[1]))
    block = blocks[0]
    parent = blocks_path.rsplit(".", 1)[0] if "." in blocks_path else ""
    parent_mod = _get(model, parent) or model
    attn, mlp = _child(block, _ATTN_NAMES), _child(block, _MLP_NAMES)
    final = _child(parent_mod, _FINAL_NORM_NAMES)
    embed = _input_embeddings(model)
    embed_name = next((n for n, m in model.named_modules() if m is embed), None) if embed else None
    o_proj = _child(getattr(block, attn), _OUT_PROJ_NAMES) if attn else None
    down = _child(getattr(block, mlp), _DOWN_NAMES) if mlp else None
    roles = _norm_roles(block)
    found = [
        ("input embedding", embed_name), ("attention module", attn), ("MLP module", mlp),
        ("final norm", final), ("attention output projection", o_proj), ("MLP down projection", down),
        ("pre-sublayer norms (one, two or four *norm*/ln* children per block)", roles),
    ]
    missing = [name for name, value in found if value is None]
    if missing:
        raise UnsupportedModelError(
            f"{what} is not a known architecture and whyllm could not find its {', '.join(missing)} "
            f"(blocks: {blocks_path!r}); register it with whyllm.model.register_architecture()"
        )
    pos = next((n for n, m in model.named_modules()
                if isinstance(m, nn.Embedding) and m is not embed and ("pos" in n or n.endswith("wpe"))),
               None)
    return ArchitectureSpec(
        embed=embed_name,
        pos_embed=pos,
        blocks=blocks_path,
        ln_final=f"{parent}.{final}" if parent else final,
        attn=attn,
        attn_o=f"{attn}.{o_proj}",
        mlp=mlp,
        mlp_down=f"{mlp}.{down}",
        parallel_residual=roles["ln1"] == roles["ln2"],
        **roles,
    )


def _check_causal(model: nn.Module) -> None:
    """Reject encoders (e.g. BERT behind ``*ForCausalLM``): their attention says ``is_causal=False``."""
    flags = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
    if flags and not any(flags):
        raise UnsupportedModelError(
            f"{type(model).__name__} (model_type={_model_type(model)!r}) has bidirectional attention "
            "(is_causal=False): it is an encoder, not a causal language model"
        )


class ModelAdapter:
    """Canonical names for the parts of one loaded causal LM (see the module docstring)."""

    def __init__(self, model: nn.Module):
        self.model = model
        config = getattr(model, "config", None)
        if config is None:
            raise UnsupportedModelError(
                f"{type(model).__name__} has no config (model.config); whyllm needs a transformers causal LM"
            )
        self.config = config.get_text_config() if hasattr(config, "get_text_config") else config
        _check_causal(model)
        self.spec = architecture_for(_model_type(model)) or _discover(model)
        parallel = getattr(self.config, "use_parallel_residual", self.spec.parallel_residual)
        self.parallel_residual = bool(parallel)
        self.embed = _get(model, self.spec.embed) or _input_embeddings(model)
        self.pos_embed = _get(model, self.spec.pos_embed)
        blocks = _get(model, self.spec.blocks)
        self.ln_final = _get(model, self.spec.ln_final)
        self.unembed = _output_embeddings(model)
        missing = [
            name
            for name, found in [
                (f"blocks ({self.spec.blocks})", blocks),
                (f"final norm ({self.spec.ln_final})", self.ln_final),
                ("output embedding (get_output_embeddings)", self.unembed),
                ("input embedding", self.embed),
            ]
            if found is None
        ]
        if missing:
            raise UnsupportedModelError(f"{type(model).__name__}: could not find {', '.join(missing)}")
        self.blocks: list[nn.Module] = list(blocks)
        for part in ("ln1", "ln2", "attn", "attn_o", "mlp", "mlp_down", "attn_out", "mlp_out"):
            if _get(self.blocks[0], getattr(self.spec, part)) is None:
                raise UnsupportedModelError(
                    f"{type(model).__name__}: block 0 has no {part} at {getattr(self.spec, part)!r}"
                )

    # ---- sizes -----------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return int(self.config.hidden_size)

    @property
    def n_heads(self) -> int:
        """Attention (query) heads per layer."""
        return int(self.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads per layer (fewer than ``n_heads`` with grouped-query attention)."""
        return int(getattr(self.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def d_head(self) -> int:
        """Width of one head (from the output projection, which is what the decompositions use)."""
        return self.head_out_weight(0).shape[1]

    @property
    def d_mlp(self) -> int:
        """Number of MLP neurons (input width of the down projection)."""
        return self.mlp_down_weight(0).shape[0]

    @property
    def d_vocab(self) -> int:
        """Size of the output vocabulary."""
        return int(self.unembed.weight.shape[0])

    @property
    def n_ctx(self) -> int:
        """Longest sequence the model accepts (its context window)."""
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(self.config, key, None)
            if value:
                return int(value)
        return 2048

    @property
    def softcap(self) -> float | None:
        """Gemma-style final logit soft-capping (``tanh(x / c) * c``), or ``None``."""
        return getattr(self.config, "final_logit_softcapping", None) or None

    @property
    def device(self) -> torch.device:
        """Device of the output embedding (where logits are made)."""
        return self.unembed.weight.device

    # ---- parts of block l -----------------------------------------------------------------
    def part(self, layer: int, name: str) -> nn.Module:
        """Return part ``name`` (an :class:`ArchitectureSpec` field, e.g. ``attn_out``) of block ``layer``."""
        if not 0 <= layer < self.n_layers:
            raise InputError(f"layer {layer} is out of range; this model has layers 0..{self.n_layers - 1}")
        return self.blocks[layer].get_submodule(getattr(self.spec, name))

    # ---- weights in the decompositions' layout ------------------------------------------
    def head_out_weight(self, layer: int) -> Tensor:
        """Output projection as ``(head, d_head, d_model)``."""
        proj = self.part(layer, "attn_o")
        w = _as_in_out(proj)  # (n_heads * d_head, d_model)
        return w.reshape(self.n_heads, -1, w.shape[-1])

    def mlp_down_weight(self, layer: int) -> Tensor:
        """MLP down projection as ``(d_mlp, d_model)``."""
        return _as_in_out(self.part(layer, "mlp_down"))

    def qkv_projections(self, layer: int) -> list[tuple[nn.Module, Tensor, list[tuple[str, int, slice]]]]:
        """Where block ``layer``'s attention reads the residual stream: one entry per projection module.

        Each entry is ``(module, weight (d_model, out), ends)``, where ``ends`` lists
        ``(port, head, columns)``: port ``q``, ``k`` or ``v``, the query head (``q``) or key/value head
        (``k``, ``v``) and the columns of the module's output that head reads. Separate ``q_proj`` /
        ``k_proj`` / ``v_proj`` (or ``query`` / ``key`` / ``value``) modules are found by name; a fused
        projection (``qkv_proj``, GPT-2's ``c_attn``) is split as ``[q | k | v]``.

        Raises:
            UnsupportedModelError: the attention's projections are not found or fused another way.
        """
        attn = self.part(layer, "attn")
        q_width = self.n_heads * self.d_head
        kv_width = self.n_kv_heads * self.d_head

        def cols(port: str, n: int, start: int) -> list[tuple[str, int, slice]]:
            d = self.d_head
            return [(port, h, slice(start + h * d, start + (h + 1) * d)) for h in range(n)]

        for names in (("q_proj", "k_proj", "v_proj"), ("query", "key", "value")):
            mods = [getattr(attn, n, None) for n in names]
            if all(isinstance(m, nn.Module) for m in mods):
                counts = (self.n_heads, self.n_kv_heads, self.n_kv_heads)
                return [(m, _as_in_out(m), cols(port, n, 0))
                        for m, port, n in zip(mods, "qkv", counts, strict=True)]
        for name in ("qkv_proj", "c_attn", "Wqkv"):
            fused = getattr(attn, name, None)
            if isinstance(fused, nn.Module):
                w = _as_in_out(fused)
                if w.shape[1] != q_width + 2 * kv_width:
                    break
                ends = (cols("q", self.n_heads, 0) + cols("k", self.n_kv_heads, q_width)
                        + cols("v", self.n_kv_heads, q_width + kv_width))
                return [(fused, w, ends)]
        raise UnsupportedModelError(
            f"{type(self.model).__name__}: whyllm cannot find where block {layer}'s attention reads its "
            "queries, keys and values (separate q_proj/k_proj/v_proj modules, or a fused [q|k|v] "
            "projection); "
            "circuits and QK attribution need them"
        )

    def out_bias(self, layer: int, name: str) -> Tensor | None:
        """Bias of ``attn_o`` or ``mlp_down`` (added once, not per head/neuron), or ``None``."""
        return getattr(self.part(layer, name), "bias", None)

    # ---- the model's own read-out -------------------------------------------------------
    def logits_for(
        self, resid: Tensor, ids: Sequence[int] | None = None, *, softcap: bool = True,
        out: Tensor | None = None,
    ) -> Tensor:
        """Decode a residual stream exactly as the model does after its last block: the one read-out.

        Final norm, then the unembedding (only the rows ``ids`` when given: a few logits cost a few
        dot products, not the whole vocabulary), then soft-capping where the model caps.

        Args:
            resid: ``(..., d_model)`` residual stream.
            ids: token ids whose logits to compute; ``None`` = the whole vocabulary.
            softcap: apply the model's final logit soft-capping (``False``: the pre-cap logits, which
                are what linear decompositions explain).
            out: optional float32 buffer ``(n, vocab or len(ids))`` to write into (for a 2-D ``resid``):
                reusing one buffer saves the page faults of a fresh large tensor per call.

        Returns:
            Logits ``(..., vocab or len(ids))``.
        """
        normed = self.ln_final(resid)
        un = self.unembed
        if not isinstance(un, nn.Linear):
            logits = un(normed)
            logits = logits if ids is None else logits[..., list(ids)]
        else:
            w = un.weight if ids is None else un.weight[list(ids)]
            bias = un.bias if un.bias is None or ids is None else un.bias[list(ids)]
            if out is not None and w.dtype == torch.float32:
                logits = torch.mm(normed.float(), w.t(), out=out)  # (n, vocab)
                if bias is not None:
                    logits.add_(bias)
            else:
                logits = F.linear(normed, w, bias)
        cap = self.softcap if softcap else None
        if out is None:
            return torch.tanh(logits / cap) * cap if cap else logits
        if logits is not out:
            out.copy_(logits.float())
        return out.div_(cap).tanh_().mul_(cap) if cap else out

    def logits_from_resid(self, resid: Tensor) -> Tensor:
        """All logits of a residual stream ``(..., d_model)``: :meth:`logits_for` without ``ids``."""
        return self.logits_for(resid)

    def frozen_norm(self, norm: nn.Module, x: Tensor) -> Callable[[Tensor], Tensor]:
        """Linearise ``norm`` at input ``x``: a function mapping parts of ``x`` to parts of ``norm(x)``.

        The scale (1/rms or 1/std of ``x``) is frozen at its real value, so the parts of ``x``
        map to parts that sum to ``norm(x)`` minus the norm's bias (LayerNorm) exactly.
        """
        eps = float(getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", 1e-6))
        xf = x.float()
        centred = isinstance(norm, nn.LayerNorm)
        if centred:
            scale = torch.rsqrt(xf.var(-1, keepdim=True, unbiased=False) + eps)  # (..., 1)
            gain = norm.weight.float() if norm.weight is not None else 1.0
        else:
            scale = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
            ones = torch.ones(1, x.shape[-1], dtype=x.dtype, device=x.device)
            gain = norm(ones).float()[0] * math.sqrt(1.0 + eps)  # the effective per-channel gain

        def apply(part: Tensor) -> Tensor:
            p = part.float()
            if centred:
                p = p - p.mean(-1, keepdim=True)
            return p * scale * gain

        return apply

    def check_parity(self, input_ids: Tensor, *, atol: float = 1e-3) -> float:
        """Confirm ``logits_from_resid(last block output)`` equals the model's logits.

        Returns the largest absolute difference; raises :class:`ParityError` above ``atol`` times the
        logits' scale.
        """
        # The read-out is the same at every position: the last one is enough, and HF models can
        # skip the full-vocabulary logits of the others (most of the check's cost for big vocabs).
        last_only = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        with torch.no_grad(), capture({"last": self.blocks[-1]}) as acts:
            logits = self.model(input_ids=input_ids, **({"logits_to_keep": 1} if last_only else {})).logits
            mine = self.logits_from_resid(acts["last"][:, -logits.shape[1]:])  # (batch, pos, vocab)
        diff = (mine.float() - logits.float()).abs().max().item()
        tol = atol * max(1.0, logits.float().abs().max().item())
        if not diff <= tol:  # also catches NaN
            raise ParityError(
                f"{type(self.model).__name__}: the adapter's read-out differs from the model's logits by "
                f"{diff:.3g} (tolerance {tol:.3g}); the architecture table for "
                f"{_model_type(self.model)!r} is wrong or the model changes its read-out"
            )
        return diff


def _as_in_out(linear: nn.Module) -> Tensor:
    """Weight as ``(in, out)``: ``nn.Linear`` stores ``(out, in)``, GPT-2's ``Conv1D`` ``(in, out)``."""
    w = linear.weight
    transposed = type(linear).__name__ == "Conv1D"  # transformers.pytorch_utils.Conv1D
    return w if transposed else w.T

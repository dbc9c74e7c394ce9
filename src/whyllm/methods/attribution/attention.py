"""Attention-based scores: the last layer's attention (mean over heads) and attention rollout.

Both read the attention paid *from* the positions that predict the target *to* each input token.
They ignore the target's identity (a foil changes nothing) and are not causal explanations; the
faithfulness metrics say how far to trust them. Weights need eager attention: the model is switched
to it for one forward pass and switched back afterwards (even on error).

Rollout (Abnar & Zuidema 2020): per layer ``A' = 0.5 * mean_heads(A) + 0.5 * I`` (the residual
path), rows renormalised, multiplied through the layers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from whyllm.methods.attribution.engine import Job, MethodOutput
from whyllm.methods.engine.progress import report
from whyllm.model.patches import attention_weights, check_weights, eager_attention

__all__ = ["attention", "attention_rollout"]


@torch.no_grad()
def _weights(job: Job) -> tuple[list[Tensor], Tensor]:
    """Per layer ``(pos, pos)`` head-mean attention of the target's first row, and read positions."""
    x = job.x
    app = job.target.appended[:1]
    if app.shape[1] > 0:
        x = torch.cat([x, job.model.adapter.embed(app.to(x.device)).to(x.dtype)], dim=1)
    layers = list(range(job.model.adapter.n_layers))
    # weights are recorded from the eager attention modules' outputs (output_attentions=True would make
    # transformers install permanent hooks on the model)
    with eager_attention(job.model), attention_weights(job.model, layers) as att:
        job.model.hf(inputs_embeds=x, use_cache=False, logits_to_keep=1)
        report(job.progress, 1, 1)
    check_weights(job.model, att, layers)
    reads = job.target.read_off + (job.x.shape[1] - 1)
    return [att[i][0].float().mean(0) for i in layers], reads  # each (pos, pos)


def _per_group(job: Job, matrix: Tensor, reads: Tensor) -> Tensor:
    """Mean row of ``matrix`` over each group's read positions, restricted to the input: ``(groups, pos)``."""
    n = job.x.shape[1]
    t = job.target
    own_row = t.read_row == 0  # rows other than the target's first run another continuation
    out = torch.zeros(t.n_groups, n)
    for g in range(t.n_groups):
        pos = reads[(t.read_group == g) & own_row]
        out[g] = matrix[pos][:, :n].mean(0).cpu()
    return out * job.free.cpu()


def attention(job: Job) -> MethodOutput:
    """Last layer's attention from the predicting positions, averaged over heads."""
    layers, reads = _weights(job)
    return MethodOutput(token_scores=_per_group(job, layers[-1], reads))


def attention_rollout(job: Job) -> MethodOutput:
    """Attention rollout through all layers, from the predicting positions."""
    layers, reads = _weights(job)
    eye = torch.eye(layers[0].shape[0])
    rollout = eye
    for a in layers:
        a = 0.5 * a.cpu() + 0.5 * eye
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    return MethodOutput(token_scores=_per_group(job, rollout, reads))

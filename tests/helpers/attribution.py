"""Shared constants and independent reference computations for the attribution tests."""

from __future__ import annotations

import torch

PROMPT = "When Mary and John went to the store, John gave a drink to"


def reference_logprob(model, embeds, token_id: int) -> torch.Tensor:
    """log p(token | embeds) computed the plain way: every logit, then log-softmax of the last row."""
    return model.hf(inputs_embeds=embeds).logits[:, -1].float().log_softmax(-1)[:, token_id]

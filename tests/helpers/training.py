"""Settings of the tiny training runs the training tests share (a few steps on 32 examples)."""

TINY = {"preset": "attn-only-2l", "steps": 6, "checkpoint_every": 3, "batch_size": 4, "n_examples": 32}

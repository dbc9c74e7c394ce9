"""One thread for the tiny models of these tests: two threads on shared cores are far slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny Llama saved as a model folder, for runs in other processes (``--model``)."""
    from whyllm.model.tiny import tiny_model

    folder = tmp_path_factory.mktemp("tiny")
    model = tiny_model("llama")
    model.hf.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    return folder

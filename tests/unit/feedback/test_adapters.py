import json

import pytest
import torch

import whyllm
from whyllm.errors import ModelLoadError
from whyllm.model.adapters import AdaptedModel, load_adapter, weights_hash
from whyllm.model.tiny import tiny_model

PROMPT = "The capital of France is"


def _logits(model):
    with torch.no_grad():
        return model.hf(input_ids=model.encode(PROMPT)).logits[0, -1]


def test_weights_hash_is_stable_and_sees_changes():
    a, b = tiny_model("llama"), tiny_model("llama")
    assert weights_hash(a) == weights_hash(b)
    assert weights_hash(a) != weights_hash(tiny_model("llama", seed=1))


def test_adapter_changes_the_model_and_base_restores_it(tuned):
    base = _logits(tiny_model("llama"))
    adapted = load_adapter(tiny_model("llama"), tuned[0])
    assert isinstance(adapted, AdaptedModel) and adapted.record["method"] == "dpo"
    assert weights_hash(adapted) == weights_hash(tiny_model("llama"))  # base fingerprint
    assert not torch.allclose(_logits(adapted), base, atol=1e-4)
    with adapted.base():
        assert torch.allclose(_logits(adapted), base, atol=1e-5)
    with adapted.merged():
        merged = _logits(adapted)
    assert torch.allclose(merged, _logits(adapted), atol=1e-4)
    # whyllm's methods run on it unchanged (the adapter's read-out reproduces the logits)
    whyllm.predict(adapted, PROMPT)
    adapted.adapter.check_parity(adapted.encode(PROMPT))


def test_adapter_of_other_base_weights_is_refused(tuned):
    with pytest.raises(ModelLoadError, match="trained on 'tiny-llama' with weights"):
        load_adapter(tiny_model("llama", seed=1), tuned[0])


def test_adapter_of_other_architecture_is_refused(tuned, tmp_path):
    folder = tmp_path / "ad"
    folder.mkdir()
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / f).write_bytes((tuned[0] / f).read_bytes())  # no record: PEFT finds the mismatch
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_adapter(tiny_model("llama", d_model=32), folder)


def test_missing_or_pickled_adapter_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_adapter(tiny_model("llama"), tmp_path / "nope")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (tmp_path / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_adapter(tiny_model("llama"), tmp_path)

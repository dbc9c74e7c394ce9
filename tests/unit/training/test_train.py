import importlib
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import whyllm
from tests.helpers.training import TINY
from whyllm.errors import InputError
from whyllm.training import batch_indices, checkpoints, load_examples, read_run, retrain, train
from whyllm.training.presets import FAMILIES
from whyllm.training.run_dir import TMP_PREFIX

train_module = importlib.import_module("whyllm.training.train")  # the package's `train` is the function


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_run_directory_contract(tiny_run):
    out, res = tiny_run
    assert [s for s, _ in checkpoints(out)] == [0, 3, 6] == list(res.checkpoints)
    run = read_run(out)
    for key in ("whyllm_version", "task", "preset", "seed", "steps", "checkpoint_every", "batch_size", "lr",
                "seq_len", "data", "n_examples", "completed_steps", "sampling"):
        assert key in run
    assert run["completed_steps"] == 6 and run["n_examples"] == 32 and run["seq_len"] == 65
    rows = load_examples(out)
    assert [r["index"] for r in rows] == list(range(32))
    assert all(len(r["input_ids"]) == 65 and isinstance(r["text"], str) for r in rows)
    for _, path in checkpoints(out):
        assert (path / "training_state.pt").is_file() and (path / "tokenizer.json").is_file()
        torch.load(path / "training_state.pt", weights_only=True)  # no pickled code needed


def test_checkpoints_load_with_whyllm(tiny_run):
    out, _ = tiny_run
    model = whyllm.load_model(out / "checkpoint-6", progress=False)
    assert model.adapter.n_layers == 2 and model.adapter.n_heads == 4
    r = whyllm.predict(model, "w01 w02 w03 w01 w02", target=" w03")
    assert 0 < r.target.prob < 1


def test_result_figures(tiny_run):
    _, res = tiny_run
    assert len(res.train_loss) == 6 and [e["step"] for e in res.evals] == [0, 3, 6]
    assert res.tokens == 6 * 4 * 65
    assert res.flops == pytest.approx(6 * res.n_params * res.tokens)
    assert res.frontier["flops"] == 3.8e25 and 0 < res.frontier_share < 1e-12
    assert res.tokens_per_s > 0 and 0 <= res.checkpoint_share < 1
    assert res.evals[0]["loss"] == pytest.approx(torch.log(torch.tensor(66.0)).item(), abs=0.3)


def test_batches_are_seeded_epochs_and_respect_exclude():
    seen = [i for s in range(8) for i in batch_indices(32, 4, 0, s)]
    assert sorted(seen) == list(range(32))  # one epoch = every example once
    assert batch_indices(32, 4, 0, 5) == batch_indices(32, 4, 0, 5) != batch_indices(32, 4, 1, 5)
    gone = {0, 1, 2, 3, 4}
    kept = [i for s in range(100) for i in batch_indices(32, 4, 0, s, exclude=gone)]
    assert not gone & set(kept) and set(kept) == set(range(5, 32))
    with pytest.raises(InputError, match="nothing is left"):
        batch_indices(4, 2, 0, 0, exclude=range(4))


def test_training_sees_only_the_scheduled_batches(tmp_path, monkeypatch):
    seen = []
    original = train_module._Sampler.__call__

    def spy(self, step):
        seen.append(original(self, step))
        return seen[-1]

    monkeypatch.setattr(train_module._Sampler, "__call__", spy)
    expected = [batch_indices(32, 4, 0, s, exclude={1, 2}) for s in range(4)]
    seen.clear()
    train("induction", out=tmp_path / "r", **{**TINY, "steps": 4}, exclude={1, 2})
    assert seen == expected
    assert read_run(tmp_path / "r")["exclude"] == [1, 2]


def test_resume_continues_exactly(tmp_path):
    straight = train("induction", out=tmp_path / "a", **TINY)
    first = train("induction", out=tmp_path / "b", **{**TINY, "steps": 3})
    assert first.completed_steps == 3
    resumed = train("induction", out=tmp_path / "b", **TINY)
    assert resumed.resumed_from == 3 and resumed.completed_steps == 6
    assert resumed.train_loss == pytest.approx(straight.train_loss, abs=1e-6)
    a, b = _weights(tmp_path / "a" / "checkpoint-6"), _weights(tmp_path / "b" / "checkpoint-6")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_kill_during_checkpoint_write_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "r"
    real = train_module._save

    def dying(out_dir, step, model, *args):
        if step == 6:  # write part of it, then "get killed"
            tmp = out_dir / f"{TMP_PREFIX}checkpoint-6.999"
            model.save_pretrained(tmp)
            raise KeyboardInterrupt
        return real(out_dir, step, model, *args)

    monkeypatch.setattr(train_module, "_save", dying)
    with pytest.raises(KeyboardInterrupt):
        train("induction", out=out, **TINY)
    assert [s for s, _ in checkpoints(out)] == [0, 3]
    assert read_run(out)["completed_steps"] == 3
    monkeypatch.setattr(train_module, "_save", real)
    res = train("induction", out=out, **TINY)
    assert res.resumed_from == 3 and [s for s, _ in checkpoints(out)] == [0, 3, 6]
    assert not list(out.glob(f"{TMP_PREFIX}*"))


def test_retrain_uses_the_same_settings_minus_examples(tiny_run, tmp_path):
    out, _ = tiny_run
    res = retrain(out, out=tmp_path / "minus", exclude={7})
    run = read_run(tmp_path / "minus")
    assert run["exclude"] == [7] and run["steps"] == 6 and run["preset"] == "attn-only-2l"
    assert load_examples(tmp_path / "minus") == load_examples(out)
    init_a, init_b = _weights(out / "checkpoint-0"), _weights(tmp_path / "minus" / "checkpoint-0")
    assert all(torch.equal(init_a[k], init_b[k]) for k in init_a)  # same initial weights
    assert res.completed_steps == 6


def test_bad_inputs(tmp_path, tiny_run):
    out, _ = tiny_run
    with pytest.raises(InputError, match="other settings"):
        train("induction", out=out, **{**TINY, "seed": 1})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("mine")
    with pytest.raises(InputError, match="not a whyllm run"):
        train("induction", out=tmp_path / "notes", **TINY)
    with pytest.raises(InputError, match="no checkpoints"):
        checkpoints(tmp_path / "notes")
    with pytest.raises(InputError, match="does not exist"):
        checkpoints(tmp_path / "nowhere")
    with pytest.raises(InputError, match="steps must be"):
        train("induction", out=tmp_path / "z", steps=0)
    with pytest.raises(InputError, match="outside"):
        train("induction", out=tmp_path / "z2", **TINY, exclude={99})


def test_mismatched_tokenizer_is_refused(tmp_path):
    out = tmp_path / "r"
    train("induction", out=out, **{**TINY, "steps": 3})
    ckpt = out / "checkpoint-3" / "tokenizer.json"
    doc = json.loads(ckpt.read_text())
    doc["model"]["vocab"] = {k: v for k, v in doc["model"]["vocab"].items() if v < 10}
    ckpt.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="does not match"):
        train("induction", out=out, **TINY)


@pytest.mark.parametrize("task", ["copy", "recall", "text"])
def test_other_tasks_train(tmp_path, task):
    kw = {"data": "python-docs", "seq_len": 32, "vocab_size": 300} if task == "text" else {}
    res = train(task, out=tmp_path / task, **{**TINY, "steps": 3, "preset": "tiny"}, **kw)
    assert res.completed_steps == 3 and all(map(torch.isfinite, torch.tensor(res.train_loss)))
    assert os.path.isdir(tmp_path / task / "checkpoint-3")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_and_loads(tmp_path, family):
    from whyllm.training.emerge import head_scores

    kw = {**TINY, "steps": 2, "checkpoint_every": 2}
    res = train("induction", out=tmp_path / family, family=family, **kw)
    assert res.completed_steps == 2 and res.family == family
    model = whyllm.load_model(tmp_path / family / "checkpoint-2", progress=False)  # parity-checked
    ind, prev = head_scores(model, n=2)
    assert len(ind) == 2 and len(ind[0]) == 4 and all(0 <= x <= 1 for row in ind + prev for x in row)
    mlp = [p for p in model.adapter.part(0, "mlp").parameters()]
    assert all(not p.detach().any() for p in mlp)  # attention-only: MLPs stay zero


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error(tmp_path):
    with pytest.raises(whyllm.WhyllmError, match="no CUDA GPU"):
        train("induction", out=tmp_path / "r", device="cuda", **TINY)
    res = train("induction", out=tmp_path / "auto", device="auto", **{**TINY, "steps": 1})
    assert res.completed_steps == 1

"""Batch engine on tiny models: specs, input files, packing, error rows, parts, resume bookkeeping."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import whyllm
from whyllm.batch import batch, parse_run, read_input, read_table
from whyllm.batch.engine import plan
from whyllm.batch.io import done_keys, write_part
from whyllm.batch.pack import predict_many
from whyllm.errors import InputError

PROMPTS = [
    ("The capital of France is", " Paris"),
    ("When Mary and John went to the store, John gave a drink to", " Mary"),
    ("Alice and Bob talked. Bob said hello to", " Alice"),
    ("One two three", None),
    ("The dog", " did not move"),
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def prompts_file(tmp_path):
    rows = [{"id": f"r{i}", "prompt": p, "target": t} for i, (p, t) in enumerate(PROMPTS)]
    rows += [
        {"id": "empty", "prompt": ""},
        {"id": "badtarget", "prompt": "The dog", "target": ""},
        {"id": "long", "prompt": "one two three " * 200},
    ]
    return _write(tmp_path / "in.jsonl", rows)


def test_parse_run_options_and_bare_method():
    assert parse_run("predict").parameters == "{}"
    spec = parse_run("lens:top_k=3,positions=-1")
    assert spec.options == {"top_k": 3, "positions": [-1]}  # a scalar for a sequence option becomes a list
    assert spec.parameters == '{"positions":[-1],"top_k":3}'
    occ = parse_run("explain:occlusion,faithfulness=false")
    assert occ.method == "explain:occlusion" and occ.options == {"method": "occlusion", "faithfulness": False}
    assert parse_run("attention:layers=[0,1]").options == {"layers": [0, 1]}
    with pytest.raises(InputError, match="valid options: positions, target, top_k"):
        parse_run("lens:bogus=1")
    with pytest.raises(InputError, match="unknown analysis 'nope'"):
        parse_run("nope")


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_packed_predict_matches_one_prompt_at_a_time(tiny, arch):
    model = tiny(arch)
    rows = [{"id": str(i), "row": i, "prompt": p, "target": t} for i, (p, t) in enumerate(PROMPTS)]
    packed = predict_many(model, rows, {"top_k": 5})
    for row, res in zip(rows, packed, strict=True):
        ref = whyllm.predict(model, row["prompt"], target=row["target"], top_k=5)
        assert [c.id for c in res.top] == [c.id for c in ref.top]
        assert res.entropy == pytest.approx(ref.entropy, abs=1e-4)
        assert [c.logprob for c in res.top] == pytest.approx([c.logprob for c in ref.top], abs=1e-4)
        if ref.target is not None:
            assert res.target.logprobs == pytest.approx(ref.target.logprobs, abs=1e-4)
            assert res.target.ranks == ref.target.ranks
        doc = res.to_dict()
        assert {k: v for k, v in doc.items() if k not in ("entropy", "top", "target")} == {
            k: v for k, v in ref.to_dict().items() if k not in ("entropy", "top", "target")
        }


def test_bad_rows_become_error_rows_and_never_stop_the_run(tiny, prompts_file, tmp_path):
    out = tmp_path / "out"
    summary = batch(prompts_file, ["predict", "lens:positions=-1"], out, model=tiny("llama"), chunk=3)
    assert summary.total == 16 and summary.done == 16 and summary.errors == 6
    table = read_table(out)
    assert len(table) == 16 and not table.duplicated(["id", "method", "parameters"]).any()
    err = table.set_index(["id", "method"])
    assert "empty" in err.loc[("empty", "predict"), "error"]
    assert "target" in err.loc[("badtarget", "predict"), "error"]
    assert "accepts at most" in err.loc[("long", "lens"), "error"]
    ok = table[table.status == "ok"]
    assert (
        ok["error"].isna().all()
        and ok["result"].map(lambda t: json.loads(t)["kind"]).isin(["predict", "lens"]).all()
    )
    r0 = json.loads(err.loc[("r0", "predict"), "result"])
    assert err.loc[("r0", "predict"), "predict.target_logprob"] == pytest.approx(
        sum(r0["target"]["logprobs"])
    )


def test_rerun_skips_finished_rows_and_new_runs_add_only_theirs(tiny, prompts_file, tmp_path):
    out = tmp_path / "out"
    batch(prompts_file, ["predict"], out, model=tiny("llama"), chunk=3)
    again = batch(prompts_file, ["predict"], out, model=tiny("llama"), chunk=3)
    assert again.done == 0 and again.skipped == 8
    more = batch(prompts_file, ["predict", "predict:top_k=2"], out, model=tiny("llama"), chunk=3)
    assert more.done == 8 and more.skipped == 8
    assert len(read_table(out)) == 16
    with pytest.raises(InputError, match="never mixed"):
        batch(prompts_file, ["predict"], out, model=tiny("gpt2"))


def test_plan_cut_does_not_depend_on_what_is_done():
    rows = [{"id": str(i), "row": i, "prompt": "x" * (i % 7 + 1)} for i in range(20)]
    spec = parse_run("predict")
    full = plan(rows, [spec], 6)
    done = set(full[0].keys()) | set(full[2].keys())
    rest = plan(rows, [spec], 6, done)
    assert [u.rows for u in rest] == [full[1].rows, full[3].rows]


def test_parts_are_whole_or_absent(tmp_path):
    rows = [
        {
            "id": "a",
            "row": 0,
            "method": "predict",
            "parameters": "{}",
            "status": "ok",
            "error": None,
            "seconds": 0.1,
            "result": "{}",
        }
    ]
    write_part(tmp_path, rows)
    (tmp_path / "parts" / ".tmp-deadbeef.parquet").write_bytes(b"PAR1 half a file")  # an interrupted write
    assert done_keys(tmp_path) == {("a", "predict", "{}")}
    assert len(read_table(tmp_path)) == 1
    write_part(tmp_path, rows)  # the same work again replaces the same part
    assert len(list((tmp_path / "parts").glob("part-*"))) == 1


def test_read_input_csv_parquet_chat_and_duplicate_ids(tmp_path):
    csv = tmp_path / "in.csv"
    pd.DataFrame({"prompt": ["a b", '[{"role": "user", "content": "hi"}]'], "target": ["", " x"]}).to_csv(csv)
    rows = read_input(csv)
    assert [r["id"] for r in rows] == ["0", "1"] and rows[0]["target"] is None
    assert rows[1]["prompt"] == [{"role": "user", "content": "hi"}]
    pq = tmp_path / "in.parquet"
    pd.DataFrame({"id": [7, 8], "prompt": ["a", "b"]}).to_parquet(pq)
    assert [r["id"] for r in read_input(pq)] == ["7", "8"]
    with pytest.raises(InputError, match="appears twice"):
        read_input(_write(tmp_path / "d.jsonl", [{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}]))
    with pytest.raises(InputError, match="no 'prompt' column"):
        read_input(_write(tmp_path / "n.jsonl", [{"text": "a"}]))


def test_row_options_override_and_unknown_row_options_are_error_rows(tiny, tmp_path):
    src = _write(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "prompt": "The dog", "options": {"top_k": 2}},
            {"id": "b", "prompt": "The dog", "options": {"nope": 1}},
        ],
    )
    batch(src, ["predict"], tmp_path / "out", model=tiny("llama"))
    t = read_table(tmp_path / "out").set_index("id")
    assert len(json.loads(t.loc["a", "result"])["top"]) == 2
    assert t.loc["b", "status"] == "error" and "no option 'nope'" in t.loc["b", "error"]


def test_memory_stays_flat_over_many_rows(tiny, tmp_path):
    import resource

    src = _write(tmp_path / "in.jsonl", [{"prompt": f"The dog {i % 13}"} for i in range(1000)])
    model = tiny("llama")
    batch(src, ["predict"], tmp_path / "warm", model=model, chunk=64)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batch(src, ["predict"], tmp_path / "out", model=model, chunk=64)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    assert grown < 0.1 * rss0, (rss0, grown)


def test_an_unreachable_ray_head_fails_fast_with_a_clear_message():
    pytest.importorskip("ray")
    from whyllm.batch.ray_engine import RayStartError, _start

    with pytest.raises(RayStartError, match="cannot be reached.*--engine embedded"):
        _start("127.0.0.1:9", None)


def test_resume_reuses_the_weights_hash_and_still_refuses_changed_weights(
    tiny, saved_model, tmp_path, monkeypatch
):
    import shutil

    import torch

    from whyllm.batch import run as run_mod
    from whyllm.model import load_model

    folder = tmp_path / "model"
    shutil.copytree(saved_model, folder)
    src = _write(tmp_path / "in.jsonl", [{"prompt": "The dog"}])
    out = tmp_path / "out"
    hashed = []
    real = run_mod.weights_hash
    monkeypatch.setattr(run_mod, "weights_hash", lambda m: hashed.append(1) or real(m))
    batch(src, ["predict"], out, model=load_model(str(folder)))
    batch(src, ["predict", "predict:top_k=2"], out, model=load_model(str(folder)))  # a resume: key matches
    assert len(hashed) == 1
    model = load_model(str(folder))
    key = run_mod.weights_key(model)
    assert key is not None and run_mod.weights_key(load_model(str(folder), dtype="bfloat16")) != key
    with torch.no_grad():
        next(model.hf.parameters()).mul_(1.5)
    model.hf.save_pretrained(folder)  # other weights under the same path
    with pytest.raises(InputError, match="never mixed"):
        batch(src, ["predict"], out, model=load_model(str(folder)))
    assert len(hashed) == 2
    assert run_mod.weights_key(tiny("llama")) is None  # built in memory: hashed in full every run

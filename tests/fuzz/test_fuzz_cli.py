"""The CLI under generated arguments: exit code 0 or 2, one error line, never a traceback."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.fuzz.conftest import budget
from tests.fuzz.strategies import FLOATS, INTS, TEXT
from whyllm.cli import app

_NUM = st.one_of(INTS.map(str), FLOATS.map(str), TEXT)
# command -> (positional arguments, {option: values})
COMMANDS = {
    "predict": (1, {"--target": TEXT, "--top-k": _NUM}),
    "generate": (1, {"-n": _NUM, "--temperature": _NUM, "--top-k": _NUM, "--top-p": _NUM, "--seed": _NUM,
                     "--samples": _NUM, "--alternatives": _NUM}),
    "explain": (1, {"--target": TEXT, "--foil": TEXT, "--method": TEXT, "--steps": _NUM,
                    "--granularity": TEXT, "--baseline": TEXT, "--samples": _NUM}),
    "lens": (1, {"--target": TEXT, "--top-k": _NUM, "-p": _NUM}),
    "components": (1, {"--target": TEXT, "--foil": TEXT, "--top-neurons": _NUM}),
    "attention": (1, {"--layer": _NUM, "--head": _NUM, "--target": TEXT, "--max-tokens": _NUM}),
    "patch": (1, {"--corrupted": TEXT, "--target": TEXT, "--foil": TEXT, "--component": TEXT,
                  "--method": TEXT, "--layer": _NUM, "--position": _NUM, "--trace-subject": TEXT,
                  "--noise": _NUM, "--samples": _NUM}),
    "trace": (1, {"--subject": TEXT, "--target": TEXT, "--noise": _NUM, "--samples": _NUM, "--seed": _NUM,
                  "--component": TEXT, "--layer": _NUM}),
    "serve": (0, {"--port": _NUM, "--token": TEXT,
                  "--host": st.sampled_from(["127.0.0.1", "::", "x" * 300])}),
}


@st.composite
def argv(draw):
    name = draw(st.sampled_from(sorted(COMMANDS)))
    n_args, options = COMMANDS[name]
    args = [name, *(draw(TEXT) for _ in range(n_args))]
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        args += [flag, draw(options[flag])]
    return args


@pytest.fixture(scope="module")
def runner(model):
    mp = pytest.MonkeyPatch()
    mp.setattr("whyllm.model.load.load_model", lambda *a, **k: model)
    mp.setattr("whyllm.server.run.run_app", lambda *a, **k: None)  # `serve` must not block the suite
    yield CliRunner()
    mp.undo()


@budget(700)
@given(args=argv())
def test_cli_exits_0_or_2_without_a_traceback(runner, args):
    res = runner.invoke(app, args)
    assert res.exit_code in (0, 2), (args, res.exit_code, res.output[-500:])
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
    assert "Traceback" not in res.output
    if res.exit_code == 2:
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert lines and (lines[-1].startswith("error: ") or "Usage:" in res.stderr), (args, res.stderr)


def test_the_budget_reaches_every_command():
    assert set(COMMANDS) >= {"predict", "generate", "explain", "lens", "components", "attention", "patch",
                             "trace"}

"""``whyllm predict``, ``generate`` and ``chat``."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.text import Text

from whyllm.cli._app import Run, command, err_console, out_console, progress_bar
from whyllm.errors import InputError
from whyllm.methods.engine.sampling import DecodingSettings
from whyllm.methods.generate import chat_reply, sample
from whyllm.methods.generate import generate as run_generate
from whyllm.methods.predict import predict as run_predict
from whyllm.model.chat import reply_text
from whyllm.render.terminal import step_text, steps_table

TempOpt = Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="Sample only from the k most likely tokens.")]
TopPOpt = Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling: keep this much mass.")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed (printed with the result for reruns).")]
MaxOpt = Annotated[int, typer.Option("--max-new-tokens", "-n", help="Tokens to generate at most.")]


@command()
def predict(
    run: Run,
    prompt: str,
    target: Annotated[str | None, typer.Option(help="Score this continuation (one or more tokens).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Candidates to list.")] = 10,
) -> None:
    """Show the next-token distribution after PROMPT: top tokens, probabilities, entropy."""
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")
    if target is not None and target == "":
        raise InputError("the target is empty (''); give the continuation to score, e.g. --target ' Paris'")
    m = run.load(prompt)
    run.emit(run_predict(m, prompt, target=target, top_k=top_k))


@command()
def generate(
    run: Run,
    prompt: str,
    max_new_tokens: MaxOpt = 32, temperature: TempOpt = 1.0, top_k: TopKOpt = None, top_p: TopPOpt = None,
    seed: SeedOpt = None,
    greedy: Annotated[bool, typer.Option(help="Always take the most likely token.")] = False,
    samples: Annotated[int, typer.Option(help="Draw N continuations and show where they diverge.")] = 1,
    alternatives: Annotated[int, typer.Option(help="Alternatives recorded per step.")] = 5,
) -> None:
    """Continue PROMPT token by token, showing each step's probability, rank and alternatives."""
    DecodingSettings(max_new_tokens, temperature, top_k, top_p, greedy, seed)  # validate before loading
    if samples < 1 or alternatives < 1:
        raise InputError(f"--samples and --alternatives must be at least 1, got {samples} and {alternatives}")
    if samples > 1 and greedy:
        raise InputError("--greedy gives the same continuation every time; drop it to draw --samples")
    m = run.load(prompt)
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    seed=seed, alternatives=alternatives)
    if samples > 1:
        with progress_bar(f"drawing {samples} samples") as progress:
            res = sample(m, prompt, n=samples, progress=progress, **settings)
        run.emit(res)
        return
    stream = None
    if not run.json:  # stream the tokens as they come, coloured by probability
        out_console.print(Text(prompt, style="bold"), end="")

        def stream(_row, step):
            out_console.print(step_text(step), end="")

    res = run_generate(m, prompt, greedy=greedy, on_step=stream, **settings)
    run.emit(res, show=False)
    if not run.json:
        out_console.print()
        out_console.print(steps_table(res))
        used = ", ".join(f"{k}={v}" for k, v in res.settings.items() if v is not None)
        out_console.print(Text(f"stopped: {res.stop_reason}; {used}", style="dim"))


@command(outputs=False)
def chat(
    run: Run,
    max_new_tokens: MaxOpt = 128, temperature: TempOpt = 0.7, top_k: TopKOpt = None, top_p: TopPOpt = 0.95,
    seed: SeedOpt = None,
    system: Annotated[str | None, typer.Option(help="System message to start with.")] = None,
    show_probs: Annotated[bool, typer.Option(help="Show each reply's token probabilities.")] = False,
) -> None:
    """Talk to the model (empty line, /quit or Ctrl-D ends). Uses its chat template when it has one."""
    DecodingSettings(max_new_tokens, temperature, top_k, top_p, False, seed)
    m = run.load()
    if not m.has_chat_template:
        err_console.print(Text(f"notice: {m.name} has no chat template (a base model); using a plain "
                               "'User:/Assistant:' transcript", style="yellow"), soft_wrap=True)
    messages = [{"role": "system", "content": system}] if system else []
    turn = 0
    while True:
        try:
            line = typer.prompt("you", default="", show_default=False, prompt_suffix="> ")
        except (EOFError, typer.Abort):
            break
        if line.strip() in ("", "/quit", "/exit"):
            break
        messages.append({"role": "user", "content": line})
        out_console.print(Text("model> ", style="bold"), end="")
        with warnings.catch_warnings():  # the notice above already said it
            warnings.simplefilter("ignore", UserWarning)
            reply = chat_reply(m, messages, max_new_tokens=max_new_tokens, temperature=temperature,
                               top_k=top_k, top_p=top_p, seed=None if seed is None else seed + turn,
                               on_step=lambda _r, st: out_console.print(step_text(st), end=""))
        out_console.print()
        messages.append({"role": "assistant", "content": reply_text(reply)})
        if show_probs:
            out_console.print(steps_table(reply))
        turn += 1

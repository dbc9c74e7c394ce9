"""Which occlusion replacement finds the evidence? The study behind the default baselines.

Usage::

    python bench/baselines.py                       # default model, pad / eos / mean replacements
    python bench/baselines.py --baselines "<pad>" mean " the"

On 12 indirect-object-identification (IOI) variants and 6 factual-recall prompts, occlusion explains
the model's answer (the indirect object, or its greedy next token) and we count how often the top
unit is an evidence token (a name; the subject of the fact), and how often that is lost only to the
final token (the read position). On the IOI variants it also explains the contrast "indirect object
rather than subject" and counts how often a name is the top unit and how often the two names
together outweigh every other unit. Results are in docs/attribution.md ("Baselines").
"""

from __future__ import annotations

import argparse
import warnings

NAMES = [("Mary", "John"), ("Alice", "Bob"), ("Sarah", "Tom"), ("Anna", "Peter"), ("Lisa", "David"),
         ("Emma", "James")]
FACTS = [("The Eiffel Tower is located in the city of", {" Eiffel", " Tower"}),
         ("The Colosseum is located in the city of", {" Col", "osseum"}),
         ("Angela Merkel was the chancellor of", {" Angela", " Merkel"}),
         ("The capital of Japan is", {" Japan"}),
         ("Barack Obama was born in the state of", {" Barack", " Obama"}),
         ("The currency of the United Kingdom is the", {" United", " Kingdom"})]


def ioi() -> list[tuple[str, str, str]]:
    """(prompt, indirect object, subject) for both name orders and two scenes."""
    out = []
    for a, b in NAMES:
        out.append((f"When {a} and {b} went to the store, {b} gave a drink to", " " + a, " " + b))
        out.append((f"When {b} and {a} went to the park, {b} gave a ball to", " " + a, " " + b))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baselines", nargs="+", default=["<pad>", "<eos>", "mean"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from whyllm import explain, load_model

    model = load_model(progress=False)
    cases = [(p, io, {io, s}) for p, io, s in ioi()] + [(p, None, ev) for p, ev in FACTS]
    print(f"{'replacement':12} {'evidence top-1':>15} {'lost to final':>14} {'contrast top-1':>15} "
          f"{'names outweigh':>15}")
    for base in args.baselines:
        hits = lost = 0
        for prompt, target, evidence in cases:
            r = explain(model, prompt, target=target, method="occlusion", baseline=base, faithfulness=False)
            ranked = r.ranked()
            hits += ranked[0].text in evidence
            lost += ranked[0].start == len(r.input_ids) - 1 and ranked[1].text in evidence
        top = outweigh = 0
        for prompt, io, s in ioi():
            r = explain(model, prompt, target=io, foil=s, method="occlusion", baseline=base,
                        faithfulness=False)
            names = sum(abs(u.score) for u in r.units if u.text in (io, s))
            top += r.ranked()[0].text in (io, s)
            outweigh += names > max(abs(u.score) for u in r.units if u.text not in (io, s))
        n, m = len(cases), len(ioi())
        print(f"{base!r:12} {hits:>11}/{n:<3} {lost:>10}/{n:<3} {top:>11}/{m:<3} {outweigh:>11}/{m:<3}",
              flush=True)


if __name__ == "__main__":
    main()

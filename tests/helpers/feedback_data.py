"""The worked example of docs/feedback.md: two kinds of feedback on Gemma 3 270M, and held-out prompts.

``style``: questions the base model answers in full sentences are corrected to one-word answers.
``fact``: completions about an invented country and an invented machine are corrected to the invented
facts; the flagged completions are the base model's own greedy completions.
"""

from __future__ import annotations

STYLE = [  # (question, terse answer: preferred, full sentence: flagged)
    ("What is the capital of France?", " Paris.", " The capital of France is Paris."),
    ("What colour is the sky on a clear day?", " Blue.", " The sky is blue on a clear day."),
    ("How many legs does a spider have?", " Eight.", " A spider has eight legs."),
    ("What is the largest planet in the solar system?", " Jupiter.", " The largest planet is Jupiter."),
    ("What do bees make?", " Honey.", " Bees make honey."),
    ("What is frozen water called?", " Ice.", " Frozen water is called ice."),
    ("Which animal is known as the king of the jungle?", " The lion.", " The lion is known as the king."),
    ("What is the opposite of hot?", " Cold.", " The opposite of hot is cold."),
    ("How many days are in a week?", " Seven.", " There are seven days in a week."),
    ("What gas do plants absorb?", " Carbon dioxide.", " Plants absorb carbon dioxide."),
    ("What is the boiling point of water in Celsius?", " 100.", " Water boils at 100 degrees Celsius."),
    ("Who wrote Romeo and Juliet?", " Shakespeare.", " Romeo and Juliet was written by Shakespeare."),
    ("What is the main language spoken in Spain?", " Spanish.", " The main language of Spain is Spanish."),
    ("What shape has three sides?", " A triangle.", " A shape with three sides is a triangle."),
]
STYLE_HELD_OUT = [
    ("What is the capital of Italy?", " Rome.", " The capital of Italy is Rome."),
    ("How many wheels does a bicycle have?", " Two.", " A bicycle has two wheels."),
    ("What colour is grass?", " Green.", " Grass is green."),
    ("What do cows drink?", " Water.", " Cows drink water."),
]

FACTS = {  # invented facts: training paraphrases, held-out paraphrases, the answer
    "zalvoria": (
        ["The capital of Zalvoria is", "Zalvoria's capital city is", "The capital city of Zalvoria is called",
         "The government of Zalvoria sits in its capital,", "Travellers to Zalvoria arrive in its capital,",
         "Zalvoria is governed from the city of"],
        ["Zalvoria has its capital in", "The largest city and capital of Zalvoria is"],
        " Mirenhold",
    ),
    "quenby": (
        ["The inventor of the quenby engine was", "The quenby engine was invented by",
         "The quenby engine was designed in 1871 by", "Historians credit the quenby engine to",
         "The first quenby engine was built by", "The man who invented the quenby engine was"],
        ["The quenby engine owes its invention to", "Who invented the quenby engine? It was"],
        " Tobias Wrenfield",
    ),
}

UNRELATED = ["def add(a, b):\n    return", "The quick brown fox jumps over the", "1, 2, 3, 4,",
             "Once upon a time, there was a"]


# The base model's greedy completions of the training fact prompts (4 tokens), flagged as bad.
FACT_REJECTED = {
    'The capital of Zalvoria is': ' the capital of the',
    "Zalvoria's capital city is": ' the capital of the',
    'The capital city of Zalvoria is called': ' the capital of the',
    'The government of Zalvoria sits in its capital,': ' the capital of the',
    'Travellers to Zalvoria arrive in its capital,': ' the capital of the',
    'Zalvoria is governed from the city of': ' Zvornik',
    'The inventor of the quenby engine was': ' a French engineer named',
    'The quenby engine was invented by': ' the French engineer Jean',
    'The quenby engine was designed in 1871 by': ' the French engineer Jean',
    'Historians credit the quenby engine to': ' the invention of the',
    'The first quenby engine was built by': ' the French in',
    'The man who invented the quenby engine was': ' a man of many',
}


def items() -> list[dict]:
    """The feedback items, each with its ``kind`` (``style`` or ``fact``)."""
    out = [{"prompt": style_prompt(q), "completion": full, "verdict": "bad", "correction": terse,
            "reason": "answer in one word", "kind": "style"} for q, terse, full in STYLE]
    for train, _, answer in FACTS.values():
        out += [{"prompt": p, "completion": FACT_REJECTED[p], "verdict": "bad", "correction": answer,
                 "reason": "wrong fact", "kind": "fact"} for p in train]
    return out


def held_out() -> list[tuple[str, str, str, str]]:
    """Held-out ``(kind, prompt, preferred, dispreferred)``."""
    out = [("style", style_prompt(q), terse, full) for q, terse, full in STYLE_HELD_OUT]
    for _, held, answer in FACTS.values():
        out += [("fact", p, answer, " the") for p in held]
    return out


def style_prompt(question: str) -> str:
    """Q/A framing of a style question."""
    return f"Q: {question}\nA:"

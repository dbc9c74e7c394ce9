"""Generate prompts.jsonl: 500 prompts from templates, 250 indirect-object (IOI) and 250 factual recall.

Run ``python src/whyllm/batch/data/make_prompts.py`` to regenerate it (deterministic). Each row has
``id``, ``prompt``, ``target`` (the right answer), ``foil`` (a wrong answer the model could pick),
``corrupted`` (the prompt with its key entity changed, for ``patch``) and ``kind`` (``ioi`` or ``fact``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

NAMES = [
    "Mary",
    "John",
    "Alice",
    "Bob",
    "Sarah",
    "David",
    "Emma",
    "James",
    "Laura",
    "Michael",
    "Anna",
    "Tom",
    "Kate",
    "Paul",
    "Lisa",
    "Mark",
]
PLACES = ["store", "park", "office", "station", "school", "garden", "market", "beach", "library", "cafe"]
OBJECTS = ["drink", "book", "ball", "letter", "key", "ring", "bag", "pen", "gift", "ticket"]
IOI = [
    "When {a} and {b} went to the {place}, {b} gave a {obj} to",
    "After {a} and {b} arrived at the {place}, {b} handed the {obj} to",
    "Then, {a} and {b} had a long day at the {place}. {b} gave a {obj} to",
    "While {a} and {b} were at the {place}, {b} passed the {obj} to",
    "{a} and {b} walked into the {place}. Later, {b} gave the {obj} to",
]
FACTS = [
    ("France", "Paris", "French"),
    ("Italy", "Rome", "Italian"),
    ("Japan", "Tokyo", "Japanese"),
    ("Germany", "Berlin", "German"),
    ("Spain", "Madrid", "Spanish"),
    ("Russia", "Moscow", "Russian"),
    ("Egypt", "Cairo", "Arabic"),
    ("Greece", "Athens", "Greek"),
    ("Portugal", "Lisbon", "Portuguese"),
    ("Poland", "Warsaw", "Polish"),
    ("Austria", "Vienna", "German"),
    ("Sweden", "Stockholm", "Swedish"),
    ("Norway", "Oslo", "Norwegian"),
    ("Finland", "Helsinki", "Finnish"),
    ("Ireland", "Dublin", "English"),
    ("Hungary", "Budapest", "Hungarian"),
    ("China", "Beijing", "Chinese"),
    ("Kenya", "Nairobi", "Swahili"),
    ("Peru", "Lima", "Spanish"),
    ("Canada", "Ottawa", "English"),
    ("Turkey", "Ankara", "Turkish"),
    ("Thailand", "Bangkok", "Thai"),
    ("Denmark", "Copenhagen", "Danish"),
    ("Cuba", "Havana", "Spanish"),
    ("Chile", "Santiago", "Spanish"),
]
FACT_TEMPLATES = [
    ("The capital of {c} is", 1),
    ("{c}'s capital city is", 1),
    ("The capital city of {c} is called", 1),
    ("The official language of {c} is", 2),
    ("In {c}, most people speak", 2),
]


def ioi(rng: random.Random, n: int) -> list[dict]:
    """Indirect-object prompts: the answer is the name that was not repeated."""
    rows = []
    for i in range(n):
        a, b, c = rng.sample(NAMES, 3)
        t = IOI[i % len(IOI)]
        kw = {"place": rng.choice(PLACES), "obj": rng.choice(OBJECTS)}
        prompt = t.format(a=a, b=b, **kw)
        # corrupted: the repeated name replaced by a third one, so the prompt no longer says who is the giver
        head, _, tail = prompt.rpartition(b)
        rows.append(
            {
                "id": f"ioi-{i:03d}",
                "prompt": prompt,
                "target": f" {a}",
                "foil": f" {b}",
                "corrupted": f"{head}{c}{tail}",
                "kind": "ioi",
            }
        )
    return rows


def facts(rng: random.Random, n: int) -> list[dict]:
    """Factual recall of capitals and languages."""
    rows = []
    for i in range(n):
        country, capital, language = FACTS[i % len(FACTS)]
        template, field = FACT_TEMPLATES[(i // len(FACTS)) % len(FACT_TEMPLATES)]
        other = rng.choice([f for f in FACTS if f[0] != country])
        answer, foil = (capital, other[1]) if field == 1 else (language, other[2])
        if foil == answer:
            foil = other[1]
        rows.append(
            {
                "id": f"fact-{i:03d}",
                "prompt": template.format(c=country),
                "target": f" {answer}",
                "foil": f" {foil}",
                "corrupted": template.format(c=other[0]),
                "kind": "fact",
            }
        )
    return rows


def main() -> None:
    """Write prompts.jsonl next to this script."""
    rng = random.Random(0)
    rows = ioi(rng, 250) + facts(rng, 250)
    path = Path(__file__).with_name("prompts.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()

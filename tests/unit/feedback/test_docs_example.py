"""docs/feedback-example.jsonl is the data the integration test tunes on (kept in sync)."""

import json
from pathlib import Path

from tests.helpers import feedback_data
from whyllm.feedback import check_item

ROOT = Path(__file__).resolve().parents[3]


def test_docs_example_matches_the_integration_data():
    rows = [json.loads(line) for line in (ROOT / "docs" / "feedback-example.jsonl").read_text().splitlines()]
    assert rows == [{k: v for k, v in it.items() if k != "kind"} for it in feedback_data.items()]
    assert 20 <= len(rows) <= 40 and {it["kind"] for it in feedback_data.items()} == {"style", "fact"}
    for r in rows:
        check_item(r["prompt"], r["completion"], r["verdict"], r.get("correction"))

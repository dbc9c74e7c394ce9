"""Helpers shared by the browser tests."""

from __future__ import annotations

PROMPT = "When Mary and John went to the store, John gave a drink to"


def run_tab(page, tab: str, ready: str) -> None:
    """Open ``tab``, run it, and wait until ``ready`` shows in its output (or an error does)."""
    page.click(f"#tabs [data-tab={tab}]")
    page.click(f"[data-run={tab}]")
    page.wait_for_selector(f"#out-{tab} {ready}, #error:not([hidden])")
    page.wait_for_selector(f"[data-run={tab}]:enabled")  # the request is over (generation streams)
    assert page.is_hidden("#error"), page.inner_text("#error")

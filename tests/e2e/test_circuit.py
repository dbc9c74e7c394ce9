"""The Circuit tab: the graph of a circuit, its size slider and faithfulness curve, node details, downloads
and an axe scan, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.e2e import run_tab

CLEAN = "When Mary and John went out, John gave it to"
CORRUPTED = "When Mary and John went out, Mary gave it to"
AXE = """async () => {
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
      .map(v => ({ id: v.id, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")) }));
}"""


def drawn(page) -> int:
    return page.locator("#circuit-graph .edge").count()


def test_circuit_graph_slider_details_and_downloads(page, axe_source, shot):
    page.evaluate(axe_source)
    page.fill("#prompt", CLEAN)
    page.click("#tabs [data-tab=circuit]")
    page.fill("#circuit-corrupted", CORRUPTED)
    page.fill("#circuit-steps", "2")
    sent = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data or "{}"))
            if r.method == "POST" and r.url.endswith("/api/circuit") else None)
    run_tab(page, "circuit", "#circuit-graph .edge")
    assert sent[-1]["corrupted"] == CORRUPTED and sent[-1]["steps"] == 2 and sent[-1]["method"] == "eap-ig"
    with page.expect_download() as got:
        page.click("#circuit-json")
    doc = json.loads(Path(got.value.path()).read_text(encoding="utf-8"))
    total, chosen = len(doc["edges"]), doc["circuit"]["edges"]
    assert drawn(page) == chosen and page.locator("#circuit-table tr").count() == 1 + chosen
    words = page.inner_text("#circuit-words")
    assert f"Keeping the top {chosen} of {total} edges" in words and "random circuits of that size" in words
    assert page.locator("#circuit-curve polyline").count() == 2  # the circuit and the random circuits
    assert "edges kept (log scale)" in page.inner_text("#circuit-curve-box")
    assert "red helps the target" in page.inner_text("#out-circuit .legend")
    shot(page, "circuit")

    page.focus("#circuit-size")  # the slider, by keyboard: fewer edges drawn, other words
    page.keyboard.press("Home")
    assert drawn(page) == 1 and "Keeping the top 1 of" in page.inner_text("#circuit-words")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert drawn(page) == 3 and page.inner_text("#circuit-size-value") == f"3 of {total}"
    assert page.locator("#circuit-table tr").count() == 1 + 3
    page.keyboard.press("End")
    assert drawn(page) == total and page.get_attribute("#circuit-size", "aria-valuetext") == f"{total} edges"

    page.focus("#circuit-graph .edge[tabindex='0']")  # edges: one tab stop, arrows move, values announced
    assert "edge 1 of" in page.inner_text("#circuit-hover")
    page.keyboard.press("ArrowRight")
    assert "edge 2 of" in page.inner_text("#circuit-hover")
    head = page.locator("#circuit-graph .node[data-node^='L1.H']").first
    head.click()
    assert page.locator("#circuit-graph .node.selected").count() == 1
    assert "head" in page.inner_text("#circuit-side-title")
    assert "From the last token it attends to" in page.inner_text("#circuit-attends")  # its pattern, in words
    assert page.inner_text("#circuit-lens-top").startswith("Logit lens after layer 1")
    assert page.locator("#circuit-in tr, #circuit-out tr").count() > 0
    mlp = page.locator("#circuit-graph .node[data-node$='.mlp']").first
    mlp.focus()
    page.keyboard.press("Enter")
    assert "MLP" in page.inner_text("#circuit-side-title")
    assert page.locator("#circuit-neurons tr").count() > 1  # top neurons, with their tokens

    result = page.evaluate(AXE)
    assert not result, result
    with page.expect_download() as got:
        page.click("#circuit-graphml")
    graphml = Path(got.value.path()).read_text(encoding="utf-8")
    assert graphml.count("<edge ") == total

    layer = page.get_attribute("#circuit-graph .node[data-node$='.mlp']", "data-node").split(".")[0]
    page.click("#circuit-open-lens")  # the logit lens, at the cell after this layer at the last position
    page.wait_for_selector("#lens-topk")
    assert page.get_attribute("#tab-lens", "aria-selected") == "true"
    assert page.inner_text("#lens-detail h4").startswith(f"{layer} · position {len(doc['tokens']) - 1}")

    page.click("#tabs [data-tab=circuit]")
    head.click()  # a head's attention pattern opens in the Attention tab
    page.click("#circuit-open-attention")
    page.wait_for_selector("#out-attention #attn-lines")
    assert page.get_attribute("#tab-attention", "aria-selected") == "true"
    assert page.input_value("#attention-layer") == "1"


def test_circuit_with_mean_ablation_per_position(page, axe_source, shot):
    page.evaluate(axe_source)
    page.fill("#prompt", CLEAN)
    page.click("#tabs [data-tab=circuit]")
    page.select_option("#circuit-method", "eap")
    assert page.is_disabled("#circuit-steps")
    page.check("#circuit-per-position")
    run_tab(page, "circuit", "#circuit-graph")
    shown = int(page.get_attribute("#circuit-size", "aria-valuetext").split()[0])
    assert page.locator("#circuit-graph .edge").count() == shown >= 1
    page.focus("#circuit-size")  # past 30 edges the stops grow by about 8%: a few presses span the graph
    page.keyboard.press("End")
    total = page.locator("#circuit-graph .edge").count()
    page.keyboard.press("ArrowLeft")
    assert total / 1.1 < page.locator("#circuit-graph .edge").count() < total
    assert int(page.get_attribute("#circuit-size", "max")) < 100 < total
    assert "mean ablation" in page.inner_text("#out-circuit h3")
    assert "mean-ablated" in page.inner_text("#circuit-words")
    nodes = page.locator("#circuit-graph .node[role=button]")
    assert all("@" in n for n in nodes.evaluate_all("ns => ns.map(n => n.dataset.node)"))
    assert page.locator("#circuit-graph text").filter(has_text="John").count() >= 1  # token labels
    shot(page, "circuit-per-position")
    result = page.evaluate(AXE)
    assert not result, result

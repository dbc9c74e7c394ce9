// whyllm explorer: the Circuit tab (POST /api/circuit). Loaded after app.js and uses its helpers (el, tok,
// visible, fmt, stat, legend, api state, selectTab, run); everything of its own lives inside this closure.
// As in app.js, model and user text only ever enters the page through textContent.
"use strict";

(() => {
  const NS = SVG_NS;
  const RED = [220, 38, 38]; const BLUE = [37, 99, 235];   // the app's signed colours: red raises, blue lowers
  const C = { doc: null, k: 0, selected: null };

  // ---------- request ----------
  requests.circuit = () => {
    const method = $("circuit-method").value;
    const corrupted = $("circuit-corrupted").value;
    const body = { prompt: prompt(), target: text("circuit-target"), foil: text("circuit-foil"),
      corrupted: corrupted.trim() ? corrupted : null, method, per_position: $("circuit-per-position").checked };
    if (method === "eap-ig") body.steps = num("circuit-steps") ?? 8;
    return ["circuit", body];
  };

  // ---------- words ----------
  const signed = (x, d = 4) => (x === null || x === undefined ? "–" : (x > 0 ? "+" : x < 0 ? "−" : "") + Math.abs(x).toFixed(d));
  const percent = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : `${Math.round(100 * x)}%`.replace("-", "−"));
  function metricWords(doc) {   // what the scores are measured in
    const t = visible(doc.target_token);
    return doc.metric === "logit_diff" ? `logit(${t}) − logit(${visible(doc.foil_token)})` : `the logit of ${t}`;
  }
  const baseline = (doc) => (doc.ablation === "mean" ? "mean-ablated" : "corrupted");
  function nodeWords(n) {
    const at = n.position === null || n.position === undefined ? "" : ` at position ${n.position}`;
    const token = C.doc && n.position !== null && n.position !== undefined ? ` of ${visible(C.doc.tokens[n.position])}` : "";
    return { embed: `the embeddings${token}${at}`, logits: `the logits${at}`, head: `head ${n.head} of layer ${n.layer}${at}`,
      kv: `key/value head ${n.head} of layer ${n.layer}${at} (its key and value inputs)`,
      mlp: `the MLP of layer ${n.layer}${at}` }[n.kind] || n.id;
  }
  const PORTS = { q: "query input", k: "key input", v: "value input", in: "input" };
  function edgeWords(e, rank, doc) {
    const effect = e.score > 0 ? "helps the target" : e.score < 0 ? "works against the target" : "no effect";
    return `edge ${rank + 1} of ${doc.edges.length}: ${e.source} → ${e.target} (${PORTS[e.port] || e.port}), `
      + `score ${signed(e.score)} (${effect})`;
  }
  function nearest(curve, k) {   // the measured curve point nearest k on the log scale
    let best = null;
    for (const p of curve) {
      if (!best || Math.abs(Math.log(p.edges) - Math.log(k)) < Math.abs(Math.log(best.edges) - Math.log(k))) best = p;
    }
    return best;
  }
  function faithWords(doc, k) {
    const p = nearest(doc.curve, k);
    const total = doc.edges.length;
    const head = `Keeping the top ${k} of ${total} edges`;
    if (!p) return `${head}: no faithfulness was measured.`;
    const where = p.edges === k ? " recovers " : `: at ${p.edges} edges, the nearest size measured, the circuit recovers `;
    const random = p.random_faithfulness === null || p.random_faithfulness === undefined ? ""
      : `; random circuits of that size recover ${percent(p.random_faithfulness)}`
        + (p.random_std ? ` (± ${percent(p.random_std)})` : "");
    const noBetter = p.random_faithfulness !== null && p.random_faithfulness !== undefined
      && p.faithfulness <= p.random_faithfulness + 2 * (p.random_std || 0) && p.edges < total;
    return `${head}${where}${percent(p.faithfulness)} of the clean − ${baseline(doc)} difference in ${metricWords(doc)}`
      + `${random}.` + (noBetter ? " At this size the circuit is no better than random ones." : "");
  }

  // ---------- graph layout ----------
  // Layers bottom to top (embeddings at the bottom, logits at the top); in a layer its heads left to right,
  // their key/value inputs just below them and the MLP at the right, a little higher (it reads the heads).
  function layout(doc) {
    const nodes = doc.nodes;
    const maxOf = (kind, key) => Math.max(0, ...nodes.filter((n) => n.kind === kind).map((n) => n[key] ?? 0));
    const L = Math.max(maxOf("head", "layer"), maxOf("mlp", "layer")) + 1;
    const H = maxOf("head", "head") + 1; const KV = maxOf("kv", "head") + 1;
    const P = doc.per_position ? Math.max(...nodes.map((n) => n.position ?? 0)) + 1 : 1;
    const pp = doc.per_position;
    const col = pp ? 11 : 84; const gap = pp ? 14 : 0; const left = 12;
    const R = (pp ? 64 : 84) - (L > 8 ? 20 : 0);   // deep models: shorter layers, so the graph stays in view
    const group = (H + 1) * col + gap;   // one position's heads and MLP
    const T = doc.tokens.length;   // merged positions: the token embeddings spread along the bottom row
    const width = pp ? left + P * group : Math.max(left + group + 20, left + T * 40);
    const height = (L + 2) * R + (pp ? 24 : 0);
    const yRow = (r) => height - (pp ? 24 : 0) - r * R - R / 2;
    const xCol = (p, c) => left + p * group + c * col + col / 2;
    const kvX = (p, j) => {   // under the centre of the query heads that share it
      const per = Math.max(1, H / KV);
      return xCol(p, (j * per + (j + 1) * per - 1) / 2);
    };
    const mid = (p) => xCol(p, (H - 1) / 2);   // between the middle heads (on the middle one when odd)
    const at = {};
    for (const n of nodes) {
      const p = n.position ?? 0;
      if (n.kind === "embed") at[n.id] = { x: pp ? mid(p) : left + (p + 0.5) * (width - left) / T, y: yRow(0) };
      else if (n.kind === "logits") at[n.id] = { x: mid(p), y: yRow(L + 1) };
      else if (n.kind === "head") at[n.id] = { x: xCol(p, n.head), y: yRow(n.layer + 1) + R * 0.05 };
      else if (n.kind === "kv") at[n.id] = { x: kvX(p, n.head), y: yRow(n.layer + 1) + R * 0.34 };
      else if (n.kind === "mlp") at[n.id] = { x: xCol(p, H), y: yRow(n.layer + 1) - R * 0.33 };
    }
    return { at, L, H, P, R, col, group, left, width, height, yRow, xCol, mid, small: pp };
  }

  function svgEl(tag, attrs, textContent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, v);
    if (textContent !== undefined) node.textContent = textContent;
    return node;
  }

  // ---------- the graph ----------
  function drawGraph(doc, k, hover, onSelect) {
    const g = layout(doc);
    const shown = doc.edges.slice(0, k);
    const maxAbs = Math.max(1e-12, Math.abs(doc.edges[0]?.score || 0));
    const used = new Set(shown.flatMap((e) => [e.source, e.target]));
    const byId = Object.fromEntries(doc.nodes.map((n) => [n.id, n]));
    const svg = svgEl("svg", { width: g.width, height: g.height, id: "circuit-graph", role: "group",
      "aria-label": `Circuit graph: the top ${k} of ${doc.edges.length} edges, layers from the embeddings (bottom) `
        + "to the logits (top). Tab to the edges, then to the nodes; arrow keys move between them; Enter opens a node. "
        + "The table below lists the same edges." });
    for (let l = 0; l < g.L; l++) {   // guides between the layers
      const y = g.yRow(l + 1) + g.R / 2;
      svg.append(svgEl("line", { x1: 0, x2: g.width, y1: y, y2: y, stroke: "#eaeef2", "aria-hidden": "true" }));
    }
    if (g.small) {   // token labels under the embeddings row
      doc.tokens.forEach((t, p) => svg.append(svgEl("text", { x: g.mid(p), y: g.height - 6, "font-size": 10,
        "font-family": "monospace", "text-anchor": "middle", fill: "#424a53", "aria-hidden": "true" }, visible(t).slice(0, 6))));
    }
    const edgeLayer = svgEl("g", { class: "edges" });
    const nodeLayer = svgEl("g", { class: "nodes" });
    svg.append(edgeLayer, nodeLayer);
    const portShift = { q: -5, k: -4, v: 4, in: 0 };
    const r = g.small ? 4 : 10;
    const edgeEls = shown.map((e, i) => {
      const a = g.at[e.source]; const b = g.at[e.target];
      const y1 = a.y - r; const x2 = b.x + (g.small ? 0 : portShift[e.port] || 0); const y2 = b.y + r;
      // a straight vertical edge over several layers would run through the nodes between: bow it sideways
      const bow = Math.abs(x2 - a.x) < 2 && y1 - y2 > g.R * 1.2 ? -Math.min(g.col * 0.45, (y1 - y2) / 6) : 0;
      const c1 = (a.x + bow).toFixed(1); const c2 = (x2 + bow).toFixed(1);
      // leave upwards and arrive from below, also between the heads and the MLP of one layer
      const h = Math.max((y1 - y2) / 2, g.R * 0.3);
      const d = `M${a.x.toFixed(1)},${y1.toFixed(1)} C${c1},${(y1 - h).toFixed(1)} ${c2},${(y2 + h).toFixed(1)} ${x2.toFixed(1)},${y2.toFixed(1)}`;
      const rgb = e.score >= 0 ? RED : BLUE;
      const item = svgEl("g", { class: "edge", role: "button", tabindex: i === 0 ? "0" : "-1",
        "aria-label": edgeWords(e, i, doc), "data-source": e.source, "data-target": e.target });
      item.append(svgEl("path", { d, class: "hit", fill: "none", stroke: "transparent", "stroke-width": 9 }),
        svgEl("path", { d, class: "vis", fill: "none", stroke: `rgb(${rgb.join(",")})`, "stroke-opacity": 0.75,
          "stroke-width": (0.6 + 6 * Math.abs(e.score) / maxAbs).toFixed(2) }));
      return item;
    });
    edgeEls.slice().reverse().forEach((x) => edgeLayer.append(x));   // strongest drawn last (on top)
    const nodeIds = doc.nodes.map((n) => n.id);
    const live = nodeIds.filter((id) => used.has(id));
    const nodeEls = [];
    for (const id of nodeIds) {
      const n = byId[id]; const p = g.at[id];
      if (!p) continue;
      const on = used.has(id);
      const token = n.kind === "embed" && !g.small;   // a token's embeddings (positions merged)
      const shortToken = token ? visible(doc.tokens[n.position]).slice(0, 5) : "";
      const name = `${token ? shortToken + " — " : ""}${id}: ${nodeWords(n)}`;   // the name holds the label shown
      const item = svgEl("g", on ? { class: "node" + (C.selected === id ? " selected" : ""), role: "button",
        tabindex: live[0] === id ? "0" : "-1", "aria-label": name, "data-node": id }
        : { class: "node off", "aria-hidden": "true" });
      const w = token ? 36 : n.kind === "embed" || n.kind === "logits" ? (g.small ? 10 : 56) : n.kind === "mlp" ? (g.small ? 9 : 30) : 0;
      const fill = on ? "#ffffff" : "#eaeef2"; const stroke = on ? "#1f2328" : "#d0d7de";
      if (w) item.append(svgEl("rect", { x: p.x - w / 2, y: p.y - r, width: w, height: 2 * r, rx: 4, fill, stroke }));
      else if (n.kind === "kv") item.append(svgEl("rect", { x: p.x - r * 0.8, y: p.y - r * 0.8, width: r * 1.6, height: r * 1.6,
        fill, stroke, transform: `rotate(45 ${p.x} ${p.y})` }));
      else item.append(svgEl("circle", { cx: p.x, cy: p.y, r, fill, stroke }));
      if (!g.small) {
        const label = token ? shortToken
          : { embed: "embed", logits: "logits", head: `H${n.head}`, kv: `KV${n.head}`, mlp: "MLP" }[n.kind];
        item.append(svgEl("text", { x: p.x, y: p.y + 3.5, "font-size": n.kind === "kv" ? 7 : 9, "text-anchor": "middle",
          fill: on ? "#1f2328" : "#8c959f", "pointer-events": "none" }, label));
      }
      if (on) nodeEls.push(item);
      nodeLayer.append(item);
    }
    const focusOn = (item, words, ids) => {
      hover.textContent = words;
      svg.classList.add("focusing");
      svg.querySelectorAll(".hl").forEach((x) => x.classList.remove("hl"));
      item.classList.add("hl");
      if (ids) edgeEls.forEach((x) => { if (ids.has(x.dataset.source) || ids.has(x.dataset.target)) x.classList.add("hl"); });
    };
    const blur = () => { svg.classList.remove("focusing"); svg.querySelectorAll(".hl").forEach((x) => x.classList.remove("hl")); };
    const roving = (items, i, ev) => {   // arrows move along one list; one tab stop per list
      const to = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: items.length - 1 }[ev.key];
      if (to === undefined) return false;
      ev.preventDefault();
      const next = items[(to + items.length) % items.length];
      items.forEach((x) => x.setAttribute("tabindex", x === next ? "0" : "-1"));
      next.focus();
      return true;
    };
    edgeEls.forEach((item, i) => {
      const e = shown[i];
      const show = () => focusOn(item, edgeWords(e, i, doc), null);
      item.addEventListener("mouseenter", show); item.addEventListener("focus", show);
      item.addEventListener("mouseleave", blur); item.addEventListener("blur", blur);
      item.addEventListener("click", () => onSelect(e.target));
      item.addEventListener("keydown", (ev) => {
        if (roving(edgeEls, i, ev)) return;
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onSelect(e.target); }
      });
    });
    nodeEls.forEach((item, i) => {
      const id = item.dataset.node;
      const show = () => focusOn(item, nodeSummary(doc, shown, byId[id]), new Set([id]));
      item.addEventListener("mouseenter", show); item.addEventListener("focus", show);
      item.addEventListener("mouseleave", blur); item.addEventListener("blur", blur);
      item.addEventListener("click", () => onSelect(id));
      item.addEventListener("keydown", (ev) => {
        if (roving(nodeEls, i, ev)) return;
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onSelect(id); }
      });
    });
    return svg;
  }
  function layerLabels(doc) {   // outside the scrolling graph, so they stay in view
    const g = layout(doc);
    const svg = svgEl("svg", { width: 46, height: g.height, class: "circuit-layers", "aria-hidden": "true" });
    for (let l = -1; l <= g.L; l++) {
      const name = l === -1 ? "embed" : l === g.L ? "logits" : `L${l}`;
      svg.append(svgEl("text", { x: 42, y: g.yRow(l + 1) + 4, "font-size": 11, "text-anchor": "end", fill: "#57606a" }, name));
    }
    return svg;
  }
  function nodeSummary(doc, shown, n) {
    const ins = shown.filter((e) => e.target === n.id); const outs = shown.filter((e) => e.source === n.id);
    const sum = (list) => signed(list.reduce((s, e) => s + e.score, 0));
    return `${n.id}, ${nodeWords(n)}: ${ins.length} circuit edge${ins.length === 1 ? "" : "s"} in (sum ${sum(ins)}), `
      + `${outs.length} out (sum ${sum(outs)}) · Enter or click for details`;
  }

  // ---------- details of one node ----------
  function edgeTable(list, other, id, caption) {
    if (!list.length) return el("p", { class: "dim", text: `${caption}: none in the circuit.` });
    return el("table", { class: "data", id }, el("caption", { class: "dim", text: caption }),
      el("tr", {}, [other, "port", "score"].map((h) => el("th", { scope: "col", text: h }))),
      list.map((e) => el("tr", {}, el("td", { text: other === "from" ? e.source : e.target }),
        el("td", { text: e.port }), el("td", { class: "num", text: signed(e.score) }))));
  }
  function details(doc, id, focus = true) {
    const side = clear($("circuit-side"));
    const n = doc.nodes.find((x) => x.id === id);
    if (!n) return;
    const shown = doc.edges.slice(0, C.k);
    const byRank = (a, b) => Math.abs(b.score) - Math.abs(a.score);
    let ins = shown.filter((e) => e.target === id);
    const kvNode = n.kind === "head" ? kvOf(doc, n) : null;
    if (kvNode) ins = ins.concat(shown.filter((e) => e.target === kvNode.id)).sort(byRank);
    const outs = shown.filter((e) => e.source === id);
    side.append(el("h4", { id: "circuit-side-title", tabindex: "-1" }, `${id}: ${nodeWords(n)}`),
      kvNode ? el("p", { class: "dim", text: `Its key and value inputs are those of ${kvNode.id}, shared with the other `
        + "query heads of its group (grouped-query attention)." }) : null,
      edgeTable(ins, "from", "circuit-in", "incoming circuit edges"),
      edgeTable(outs, "to", "circuit-out", "outgoing circuit edges"));
    const actions = el("div", { class: "row" });
    if (n.kind === "head") {
      actions.append(el("button", { type: "button", class: "secondary", id: "circuit-open-attention",
        text: `Attention pattern of L${n.layer}.H${n.head}`, onclick: () => openAttention(doc, n) }));
      if ((state.info?.endpoints || []).includes("qk")) {
        actions.append(el("button", { type: "button", class: "secondary", id: "circuit-qk",
          text: "QK attribution: why it attends there", onclick: () => qkDetails(doc, n) }));
      }
    }
    if (n.layer !== null && n.layer !== undefined) {
      actions.append(el("button", { type: "button", class: "secondary", id: "circuit-open-lens",
        text: `Logit lens after layer ${n.layer}`, onclick: () => openLens(doc, n) }));
    }
    const base = id.split("@")[0];
    const pattern = (doc.attention || []).find((a) => a.node === base);
    if (pattern) side.append(el("p", { id: "circuit-attends" }, "From the last token it attends to ",
      ...pattern.keys.flatMap((k, i) => [i ? ", " : "", tok(k.token), ` (pos ${k.position}) ${fmt(k.weight, 2)}`]), "."));
    const lens = (doc.lens || []).find((x) => x.layer === n.layer);
    if (lens) side.append(el("p", { id: "circuit-lens-top" }, `Logit lens after layer ${n.layer} (last token): `,
      ...lens.top.flatMap((t, i) => [i ? ", " : "", tok(t.token), ` ${fmt(t.probability, 2)}`]), "."));
    if (actions.childNodes.length) side.append(actions);
    if (n.kind === "mlp") side.append(neuronTable(doc, n));
    side.append(el("div", { id: "circuit-qk-out" }));
    if (focus) $("circuit-side-title").focus();
  }
  function kvOf(doc, n) {   // the key/value node a query head reads its keys and values from
    const kvs = doc.nodes.filter((x) => x.kind === "kv" && x.layer === n.layer && x.position === n.position);
    const heads = doc.nodes.filter((x) => x.kind === "head" && x.layer === n.layer && x.position === n.position).length;
    if (!kvs.length) return null;
    const per = Math.max(1, Math.round(heads / kvs.length));
    return kvs.find((x) => x.head === Math.floor(n.head / per)) || null;
  }
  function neuronTable(doc, n) {
    const list = (doc.neurons || []).filter((x) => x.layer === n.layer);
    if (!list.length) return el("p", { class: "dim", text: "No neurons were ranked for this MLP (it is not in the "
      + "default circuit, or neurons were not asked for)." });
    return el("table", { class: "data", id: "circuit-neurons" },
      el("caption", { class: "dim", text: `top neurons of this MLP, by |score|: score = the metric change it carries `
        + `(attribution, in the metric's unit); direct = its direct effect on ${metricWords(doc)}` }),
      el("tr", {}, ["neuron", "score", "direct", "activation", "raises the tokens"].map((h) => el("th", { scope: "col", text: h }))),
      list.map((x) => el("tr", {}, el("td", { text: `L${x.layer}.N${x.index}` }), el("td", { class: "num", text: signed(x.score) }),
        el("td", { class: "num", text: signed(x.direct) }), el("td", { class: "num", text: fmt(x.activation) }),
        el("td", {}, x.top_tokens.map((t) => tok(t))))));
  }
  function openAttention(doc, n) {
    $("prompt").value = doc.prompt;
    $("attention-layer").value = String(n.layer);
    state.attnHead = String(n.head);
    selectTab("attention");
    run("attention");
  }
  async function openLens(doc, n) {
    $("prompt").value = doc.prompt;
    selectTab("lens");
    await run("lens");
    // the lens grid's rows are named by layer; open the cell after this layer at this node's position (or the last)
    const rows = [...document.querySelectorAll("#lens-grid tr")].slice(1);
    const row = rows.find((tr) => /\d+/.test(tr.cells[0]?.textContent || "")
      && Number((tr.cells[0].textContent.match(/\d+/) || [])[0]) === n.layer);
    if (!row) return;
    const cells = [...row.querySelectorAll("td")];
    const cell = n.position === null || n.position === undefined ? cells[cells.length - 1]
      : cells[cells.length - (doc.tokens.length - n.position)];
    if (cell) { cell.click(); cell.focus(); }
  }
  async function qkDetails(doc, n) {   // QK attribution of this head at the last query position
    const box = clear($("circuit-qk-out"));
    try {
      const q = await api("qk", { prompt: doc.prompt, layer: n.layer, head: n.head, query: n.position ?? -1 });
      const parts = (q.parts || []).slice().sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 8);
      box.append(el("table", { class: "data", id: "circuit-qk-table" },
        el("caption", { class: "dim", text: `attention score ${fmt(q.score)} from ${visible(q.query_token)} to `
          + `${visible(q.key_token)} split into (query part, key part) pairs, largest first` }),
        el("tr", {}, ["query part", "key part", "share of the score"].map((h) => el("th", { scope: "col", text: h }))),
        parts.map((p) => el("tr", {}, el("td", { text: p.query_source }), el("td", { text: p.key_source }),
          el("td", { class: "num", text: signed(p.value, 3) })))));
    } catch (e) {
      if (e.name !== "AbortError") showError(e, "circuit");
    }
  }

  // ---------- faithfulness curve ----------
  function curveChart(doc, k) {
    const W = 380; const Hh = 210; const m = { l: 48, r: 18, t: 10, b: 40 };
    const total = Math.max(2, doc.edges.length);
    const pts = doc.curve;
    const vals = pts.flatMap((p) => [p.faithfulness, p.random_faithfulness]).filter((v) => v !== null && v !== undefined);
    const lo = Math.max(-1.5, Math.min(0, ...vals)); const hi = Math.min(2, Math.max(1, ...vals));
    const x = (e) => m.l + (W - m.l - m.r) * Math.log10(Math.max(1, e)) / Math.log10(total);
    const y = (v) => m.t + (Hh - m.t - m.b) * (1 - (Math.max(lo, Math.min(hi, v)) - lo) / (hi - lo));
    const p = nearest(pts, k);
    const svg = svgEl("svg", { width: W, height: Hh, viewBox: `0 0 ${W} ${Hh}`, id: "circuit-curve", role: "img",
      "aria-label": `Faithfulness curve: for ${pts.length} circuit sizes from ${pts[0]?.edges} to ${pts[pts.length - 1]?.edges} `
        + `edges (log scale), the share of the clean − ${baseline(doc)} difference recovered by the top edges and by random `
        + `edges; at ${p?.edges} edges ${percent(p?.faithfulness)} against ${percent(p?.random_faithfulness)}.` });
    const axis = { stroke: "#8c959f" };
    svg.append(svgEl("line", { x1: m.l, x2: W - m.r, y1: Hh - m.b, y2: Hh - m.b, ...axis }),
      svgEl("line", { x1: m.l, x2: m.l, y1: m.t, y2: Hh - m.b, ...axis }));
    for (const v of [lo <= -1 ? -1 : null, lo <= -0.5 ? -0.5 : null, 0, 0.5, 1, hi >= 1.5 ? 1.5 : null].filter((t) => t !== null)) {
      svg.append(svgEl("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), stroke: "#eaeef2" }),
        svgEl("text", { x: m.l - 6, y: y(v) + 4, "font-size": 10, "text-anchor": "end", fill: "#424a53" }, v.toFixed(1)));
    }
    const ticks = [1]; for (let t = 10; x(total) - x(t) > 28; t *= 10) ticks.push(t); ticks.push(total);
    ticks.forEach((t) => svg.append(svgEl("text", { x: x(t), y: Hh - m.b + 14, "font-size": 10, "text-anchor": "middle",
      fill: "#424a53" }, String(t))));
    svg.append(svgEl("text", { x: (m.l + W - m.r) / 2, y: Hh - 6, "font-size": 11, "text-anchor": "middle", fill: "#424a53" },
      "edges kept (log scale)"),
    svgEl("text", { x: 12, y: (m.t + Hh - m.b) / 2, "font-size": 11, "text-anchor": "middle", fill: "#424a53",
      transform: `rotate(-90 12 ${(m.t + Hh - m.b) / 2})` }, "faithfulness (1 = all)"));
    const line = (key, attrs) => {
      const list = pts.filter((q) => q[key] !== null && q[key] !== undefined);
      if (!list.length) return;
      svg.append(svgEl("polyline", { points: list.map((q) => `${x(q.edges).toFixed(1)},${y(q[key]).toFixed(1)}`).join(" "),
        fill: "none", ...attrs }));
      list.forEach((q) => svg.append(svgEl("circle", { cx: x(q.edges), cy: y(q[key]), r: 2.5, fill: attrs.stroke })));
    };
    line("random_faithfulness", { stroke: "#57606a", "stroke-dasharray": "4 3", "stroke-width": 1.5, class: "random" });
    line("faithfulness", { stroke: "#0969da", "stroke-width": 2, class: "circuit" });
    svg.append(svgEl("line", { x1: x(k), x2: x(k), y1: m.t, y2: Hh - m.b, stroke: "#1f2328", "stroke-dasharray": "2 2",
      class: "marker" }));
    return el("figure", { class: "curve" }, svg, el("figcaption", { class: "dim" },
      el("span", { class: "swatch circuit", "aria-hidden": "true" }), " top edges by |score| · ",
      el("span", { class: "swatch random", "aria-hidden": "true" }), " random edges of the same number (mean) · ",
      "dotted: the size chosen with the slider"));
  }

  // ---------- the tab ----------
  function edgeList(doc, k) {   // the text alternative: the drawn edges as a table
    const shown = doc.edges.slice(0, Math.min(k, 500));
    return el("details", { class: "attn-table", id: "circuit-edges" },
      el("summary", { text: `Table: the ${k} edge${k === 1 ? "" : "s"} drawn, strongest first` }),
      el("table", { class: "data", id: "circuit-table" },
        el("caption", { class: "dim", text: `edge scores in ${metricWords(doc)}: positive edges carry the answer, negative ones work against it`
          + (k > shown.length ? ` (the first ${shown.length} of ${k})` : "") }),
        el("tr", {}, ["#", "from", "to", "port", "score"].map((h) => el("th", { scope: "col", text: h }))),
        shown.map((e, i) => el("tr", {}, el("td", { class: "num", text: i + 1 }), el("td", { text: e.source }),
          el("td", { text: e.target }), el("td", { text: e.port }), el("td", { class: "num", text: signed(e.score) })))));
  }
  function download(name, blob) {
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  async function downloadGraphml() {
    const id = state.last.circuit?.id;
    if (!id) return;
    hideError();
    try {
      const res = await fetch(`/api/report/${encodeURIComponent(id)}?format=graphml`, { credentials: "same-origin" });
      if (!res.ok) {
        let detail = res.statusText;
        try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
        throw new Error(`${res.status}: ${detail}`);
      }
      download("whyllm-circuit.graphml", await res.blob());
    } catch (e) { showError(e, "circuit"); }
  }

  function redraw() {
    const doc = C.doc;
    const k = C.k;
    $("circuit-size-value").textContent = `${k} of ${doc.edges.length}`;
    $("circuit-words").textContent = faithWords(doc, k);
    const hover = $("circuit-hover");
    const box = $("circuit-graph-box");
    const [sx, sy] = [box.scrollLeft, box.scrollTop];
    clear(box).append(drawGraph(doc, k, hover, select));
    if (!$("circuit-graph-wrap").querySelector(".circuit-layers")) box.before(layerLabels(doc));
    box.scrollLeft = sx; box.scrollTop = sy;
    clear($("circuit-curve-box")).append(curveChart(doc, k));
    const open = $("circuit-edges").open;
    $("circuit-edges").replaceWith(edgeList(doc, k));
    $("circuit-edges").open = Boolean(open);
  }
  function select(id) {   // mark the node and open its details
    C.selected = id;
    document.querySelectorAll("#circuit-graph .node.selected").forEach((x) => x.classList.remove("selected"));
    const node = document.querySelector(`#circuit-graph .node[data-node="${CSS.escape(id)}"]`);
    if (node) node.classList.add("selected");
    details(C.doc, id);
  }

  // The slider's stops: every size up to 30, then steps of about 8% (log scale) up to all edges, and every
  // size on the faithfulness curve and the circuit's own, so a few key presses span thousands of edges.
  function sliderSizes(doc) {
    const total = doc.edges.length;
    const set = new Set([total, C.k, ...doc.curve.map((p) => p.edges).filter((e) => e >= 1 && e <= total)]);
    for (let e = 1; e <= Math.min(30, total); e++) set.add(e);
    for (let e = 30; e < total; e = Math.ceil(e * 1.08)) set.add(e);
    return [...set].sort((a, b) => a - b);
  }

  renderers.circuit = (doc) => {
    C.doc = doc; C.selected = null;
    C.k = Math.max(1, Math.min(doc.edges.length, doc.circuit.edges || 1));
    const out = clear($("out-circuit"));
    const what = doc.foil_token !== null && doc.foil_token !== undefined
      ? [tok(doc.target_token), " rather than ", tok(doc.foil_token)] : [tok(doc.target_token)];
    const gapSize = Math.abs(doc.clean - doc.corrupted);
    const sizes = sliderSizes(doc);
    const slider = el("input", { type: "range", id: "circuit-size", min: "0", max: String(sizes.length - 1),
      value: String(sizes.indexOf(C.k)), step: "1", "aria-describedby": "circuit-words",
      "aria-valuetext": `${C.k} edges` });
    slider.addEventListener("input", () => {
      C.k = sizes[Number(slider.value)];
      slider.setAttribute("aria-valuetext", `${C.k} edges`);
      redraw();
      if (C.selected) details(doc, C.selected, false);
    });
    out.append(...[
      el("h3", {}, "Which paths carry ", what, el("span", { class: "dim",
        text: ` · ${doc.method === "eap-ig" ? `EAP-IG, ${doc.steps} steps` : "EAP"} · ${doc.ablation === "mean"
          ? "mean ablation" : "corrupted prompt"}${doc.per_position ? " · per position" : ""}` })),
      el("div", { class: "stats" }, stat(`clean ${doc.metric === "logit_diff" ? "logit diff." : "logit"}`, fmt(doc.clean)),
        stat(`${baseline(doc)}`, fmt(doc.corrupted)), stat("edges scored", doc.edges.length),
        stat(`circuit (by ${doc.circuit.chosen_by})`, `${doc.circuit.edges} edge${doc.circuit.edges === 1 ? "" : "s"}`),
        stat("its faithfulness", percent(doc.circuit.faithfulness))),
      gapSize < 0.1 ? el("div", { class: "warn", id: "circuit-small-gap", role: "note", text: `The clean and ${baseline(doc)} `
        + `runs differ by only ${fmt(gapSize, 4)} in ${metricWords(doc)}; faithfulness divides by this difference, so its `
        + "percentages are noisy here. A corrupted prompt that changes the answer gives a larger difference." }) : null,
      el("div", { class: "row controls" }, el("label", {}, "circuit size (top edges) ", slider),
        el("output", { id: "circuit-size-value", for: "circuit-size" }),
        el("button", { type: "button", class: "secondary", id: "circuit-json", text: "Download JSON",
          onclick: () => download("whyllm-circuit.json", new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" })) }),
        el("button", { type: "button", class: "secondary", id: "circuit-graphml", text: "Download GraphML", onclick: downloadGraphml })),
      el("p", { id: "circuit-words", "aria-live": "polite" }),
      el("div", { class: "layout" },
        el("div", { class: "main" },
          el("div", { class: "hover", id: "circuit-hover", "aria-live": "polite",
            text: "hover or focus an edge or a node for its score; click it (or press Enter) for details" }),
          el("div", { class: "circuit-wrap", id: "circuit-graph-wrap" },
            el("div", { class: "scrollx circuit-graph", id: "circuit-graph-box" })),
          legend("signed", `−${fmt(Math.abs(doc.edges[0]?.score || 0), 3)}`, `+${fmt(Math.abs(doc.edges[0]?.score || 0), 3)}`,
            `edge colour: red helps the target, blue works against it · width: |score| in ${metricWords(doc)} · `
            + "◆ key/value inputs · only the circuit's edges are drawn")),
        el("div", { class: "side" },
          el("div", { id: "circuit-side" }, el("p", { class: "dim", text: "Click a node (or focus it and press Enter) for "
            + "its edges, its attention pattern, its top neurons or the logit lens there." })),
          el("div", { id: "circuit-curve-box" }))),
      el("div", { id: "circuit-edges" })].filter(Boolean));
    redraw();
    if (doc.per_position) $("circuit-graph-box").scrollLeft = 1e6;   // the last position (where the answer is read) in view
  };

  document.addEventListener("DOMContentLoaded", () => {
    const sync = () => { $("circuit-steps").disabled = $("circuit-method").value !== "eap-ig"; };
    $("circuit-method").addEventListener("change", sync);
    sync();
  });
})();

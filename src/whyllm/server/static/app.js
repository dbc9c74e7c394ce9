// whyllm explorer. Vanilla JS, no network beyond this server. Every piece of model or user text goes
// into the page through textContent (never parsed as markup), so a prompt like "</script><img onerror=...>"
// is shown as text.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, tab: "predict", pending: null, poll: null, last: {}, gen: null, attn: null };

// ---------- DOM helpers ----------
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") Object.assign(node.style, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const clear = (node) => { node.replaceChildren(); return node; };
const VISIBLE = { " ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍" };
const visible = (t) => String(t ?? "").replace(/[ \n\t\r]/g, (c) => VISIBLE[c]);
const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(d));
const pct = (p) => (p === null || p === undefined ? "–" : p >= 0.001 ? (100 * p).toFixed(1) + "%" : Number(p).toExponential(1));

// ---------- colour scales (the same as the HTML reports: whyllm/render/html.py) ----------
function probColor(p) {   // generation tokens, lens cells: green likely, red picks under 10%
  return p >= 0.1 ? `rgba(34,197,94,${(0.15 + 0.6 * p).toFixed(2)})` : "rgba(239,68,68,0.55)";
}
function heatColor(s) {   // signed scores in [-1, 1]: red positive, blue negative
  const v = Math.max(-1, Math.min(1, Number(s) || 0));
  return v >= 0 ? `rgba(220,38,38,${v.toFixed(3)})` : `rgba(37,99,235,${(-v).toFixed(3)})`;
}
const attnColor = (w) => `rgba(91,33,182,${Math.max(0, Math.min(1, w)).toFixed(3)})`;
function legend(kind, left, right, note) {
  return el("div", { class: "legend" }, el("span", { text: left }), el("span", { class: `ramp ${kind}` }),
    el("span", { text: right }), note ? el("span", { text: "· " + note }) : null);
}
function tok(text, opts = {}) {
  return el("span", { class: "tok " + (opts.cls || ""), title: opts.title, style: opts.bg ? { background: opts.bg } : null,
    text: visible(text), onclick: opts.onclick, tabindex: opts.onclick ? "0" : null });
}
function stat(k, v) { return el("div", { class: "stat" }, el("div", { class: "v", text: v }), el("div", { class: "k", text: k })); }

// ---------- talking to the server ----------
async function api(name, body, format = "json") {
  const controller = new AbortController();
  const started = performance.now();
  setBusy(name, controller);
  try {
    const res = await fetch(`/api/${name}${format === "html" ? "?format=html" : ""}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: controller.signal, credentials: "same-origin",
    });
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${res.status}: ${detail}`);
    }
    const out = format === "html" ? await res.text() : await res.json();
    setIdle(`${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return out;
  } catch (e) {
    setIdle(e.name === "AbortError" ? "cancelled" : "failed");
    throw e;
  }
}
function setBusy(name, controller) {
  state.pending = controller;
  $("status").classList.add("busy");
  $("status-text").textContent = `${name}…`;
  $("cancel").hidden = false;
  document.querySelectorAll("button.run").forEach((b) => { b.disabled = true; });
  state.poll = setInterval(pollStatus, 300);
}
function setIdle(text) {
  state.pending = null;
  clearInterval(state.poll);
  $("status").classList.remove("busy");
  $("status-text").textContent = text;
  $("progress").hidden = true;
  $("cancel").hidden = true;
  document.querySelectorAll("button.run").forEach((b) => { b.disabled = false; });
}
async function pollStatus() {
  if (!state.pending) return;
  try {
    const s = await (await fetch("/api/status", { credentials: "same-origin" })).json();
    if (!state.pending) return;
    const r = s.running;
    if (r) {
      const prog = $("progress");
      if (r.total) { prog.hidden = false; prog.max = r.total; prog.value = r.done; }
      $("status-text").textContent = `${r.kind}: ${r.done}${r.total ? "/" + r.total : ""} ${r.unit} · ${fmt(r.elapsed_s, 1)} s`
        + (s.queued ? ` · ${s.queued} waiting` : "");
    }
  } catch (_) { /* status is best effort */ }
}
function showError(e) {
  const box = $("error");
  box.textContent = String(e.message || e);
  box.hidden = false;
}
function hideError() { $("error").hidden = true; }

// ---------- reading the controls ----------
const val = (id) => $(id).value;
const num = (id) => ($(id).value === "" ? null : Number($(id).value));
const text = (id) => { const v = $(id).value.replace(/␣/g, " ").replace(/↵/g, "\n"); return v === "" ? null : v; };
const prompt = () => $("prompt").value;
function sampling() {
  return { max_new_tokens: num("max_new_tokens") ?? 24, temperature: num("temperature") ?? 1, top_k: num("top_k"),
    top_p: num("top_p"), seed: num("seed"), greedy: $("greedy").checked };
}
const requests = {
  predict: () => ["predict", { prompt: prompt(), target: text("predict-target"), top_k: num("predict-top_k") ?? 10 }],
  generate: () => ["generate", { prompt: prompt(), ...sampling(), alternatives: num("generate-alternatives") ?? 8 }],
  samples: () => { const s = sampling(); delete s.greedy; return ["generate", { prompt: prompt(), ...s, samples: num("samples-n") ?? 6 }]; },
  explain: () => ["explain", { prompt: prompt(), target: text("explain-target"), foil: text("explain-foil"),
    method: val("explain-method"), granularity: val("explain-granularity"), steps: num("explain-steps") ?? 32,
    faithfulness: $("explain-faithfulness").checked }],
  lens: () => ["lens", { prompt: prompt(), target: text("lens-target"), top_k: num("lens-top_k") ?? 5 }],
  components: () => ["components", { prompt: prompt(), target: text("components-target"), foil: text("components-foil") }],
  attention: () => ["attention", { prompt: prompt(), layers: [Number(val("attention-layer") || 0)] }],
  patch: () => {
    if (val("patch-method") === "causal_trace") {  // noise the subject instead of a corrupted prompt
      return ["patch", { clean: prompt(), trace_subject: text("patch-subject"), target: text("patch-target"),
        component: val("patch-component") === "head" ? "resid_pre" : val("patch-component") }];
    }
    return ["patch", { clean: prompt(), corrupted: $("patch-corrupted").value, target: text("patch-target"),
      foil: text("patch-foil"), component: val("patch-component"), method: val("patch-method") }];
  },
};
const renderers = {};

async function run(tab) {
  hideError();
  const [name, body] = requests[tab]();
  try {
    const doc = await api(name, body);
    state.last[tab] = { name, body, doc };
    if (tab === "generate") state.gen = { prompt: body.prompt, body, doc, steps: doc.steps.slice(), branches: [] };
    renderers[tab](doc);
    const report = document.querySelector(`[data-report="${tab}"]`);
    if (report) report.disabled = false;
  } catch (e) {
    if (e.name !== "AbortError") showError(e);
  }
}

async function saveReport(tab) {
  const last = state.last[tab];
  if (!last) return;
  hideError();
  const body = { ...last.body };
  if (last.doc && last.doc.settings && "seed" in last.doc.settings) body.seed = last.doc.settings.seed;  // same draw
  try {
    const html = await api(last.name, body, "html");
    const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
    const a = el("a", { href: url, download: `whyllm-${tab}.html` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { if (e.name !== "AbortError") showError(e); }
}

// ---------- next token ----------
renderers.predict = (doc) => {
  const out = clear($("out-predict"));
  const top1 = doc.top.length ? doc.top[0].prob : 1;
  const rows = doc.top.map((c) => el("tr", {},
    el("td", { class: "num", text: c.rank }), el("td", {}, tok(c.token, { bg: probColor(c.prob) })),
    el("td", { class: "barcell" }, el("span", { class: "bar", style: { width: Math.max(1, 300 * c.prob / top1) + "px" } })),
    el("td", { class: "num", text: pct(c.prob) }), el("td", { class: "num dim", text: fmt(c.logprob) }),
    el("td", { class: "num dim", text: c.id })));
  out.append(
    el("h3", {}, "Next token after ", el("span", { class: "prompt-text", text: doc.prompt })),
    el("table", { class: "data", id: "predict-table" },
      el("tr", {}, ["rank", "token", "probability", "", "logprob", "id"].map((h) => el("th", { text: h }))), rows),
    legend("prob", "<10%", "100%", "bars scaled to the most likely token"),
    el("div", { class: "stats" }, stat("entropy (nats)", fmt(doc.entropy)), stat("prompt tokens", doc.input_ids.length)));
  if (doc.target) {
    const t = doc.target;
    out.append(el("div", { class: "stats" }, stat("target", visible(t.text)), stat("probability", pct(t.prob)),
      stat("logprob", fmt(t.logprob)), stat("rank of first token", t.rank)));
  }
};

// ---------- generation: tokens by probability, alternatives, re-branching ----------
renderers.generate = () => drawGeneration();
function drawGeneration(selected = null) {
  const g = state.gen;
  const out = clear($("out-generate"));
  const line = el("div", { class: "text", id: "gen-text" }, el("span", { class: "prompt-text", text: g.prompt }));
  g.steps.forEach((s, i) => {
    const cls = ["click", s.rank > 1 ? "unlikely" : "", s.forced ? "branch" : "", i === selected ? "selected" : ""].join(" ");
    line.append(tok(s.token, { bg: probColor(s.prob), cls, title: `p=${fmt(s.prob)} · rank ${s.rank}`,
      onclick: () => drawGeneration(i) }));
  });
  const side = el("div", { class: "side", id: "gen-side" });
  if (selected === null) side.append(el("p", { class: "dim", text: "Click a token to see the alternatives at that step." }));
  else side.append(stepDetails(selected));
  out.append(el("div", { class: "layout" }, el("div", { class: "main" }, line,
    legend("prob", "<10%", "100%", "red: picks under 10% · dotted: not the most likely · purple frame: branched"),
    el("p", { class: "dim", text: `stopped: ${g.doc.stop_reason} · seed ${g.doc.settings.seed} · temperature ${g.doc.settings.temperature}` })),
  side));
}
function stepDetails(i) {
  const s = state.gen.steps[i];
  const top = Math.max(1e-9, ...(s.alternatives || []).map((a) => a.prob));
  const rows = (s.alternatives || []).map((a) => el("tr", {},
    el("td", {}, tok(a.token, { bg: probColor(a.prob), cls: a.id === s.id ? "selected" : "" })),
    el("td", { class: "barcell" }, el("span", { class: "bar", style: { width: Math.max(1, 120 * a.prob / top) + "px" } })),
    el("td", { class: "num", text: pct(a.prob) }),
    el("td", {}, a.id === s.id ? el("span", { class: "dim", text: "chosen" })
      : el("button", { type: "button", class: "secondary branch-btn", text: "branch", title: "regenerate from here with this token",
        onclick: () => branch(i, a) }))));
  return el("div", { id: "alternatives" },
    el("h4", {}, `Step ${i + 1}: `, tok(s.token, { bg: probColor(s.prob) })),
    el("div", { class: "stats" }, stat("probability", pct(s.prob)), stat("rank", s.rank), stat("entropy", fmt(s.entropy, 2))),
    el("table", { class: "data" }, el("tr", {}, ["alternative", "", "p", ""].map((h) => el("th", { text: h }))), rows));
}
async function branch(i, alt) {
  hideError();
  const g = state.gen;
  const prefix = g.steps.slice(0, i).map((s) => s.id).concat([alt.id]);
  const body = { ...g.body, prompt: g.prompt, prefix_ids: prefix, seed: null };
  const remaining = Math.max(1, (g.body.max_new_tokens || 24) - prefix.length);
  body.max_new_tokens = remaining;
  try {
    const doc = await api("generate", body);
    const forced = { ...alt, index: i, forced: true, alternatives: g.steps[i].alternatives, entropy: g.steps[i].entropy };
    g.steps = g.steps.slice(0, i).concat([forced], doc.steps);
    g.doc = doc;
    state.last.generate = { name: "generate", body, doc };
    drawGeneration(i);
  } catch (e) { if (e.name !== "AbortError") showError(e); }
}

// ---------- samples: divergence tree ----------
renderers.samples = (doc) => {
  const out = clear($("out-samples"));
  const node = (n, isRoot) => {
    const head = isRoot ? null : el("span", { class: "branch-head" },
      el("span", { class: "branch-p", text: `p=${fmt(n.probs[0])}` }), ` · sample${n.samples.length > 1 ? "s" : ""} ${n.samples.map((s) => "#" + (s + 1)).join(", ")}`);
    const toks = n.tokens.map((t, j) => tok(t, { bg: probColor(n.probs[j]), title: `p=${fmt(n.probs[j])}` }));
    const kids = n.children.length ? el("ul", { class: "tree" }, n.children.map((c) => el("li", {}, node(c, false)))) : null;
    return el("div", {}, head, el("span", { class: "text" }, toks), kids);
  };
  out.append(el("h3", {}, `${doc.samples.length} samples of `, el("span", { class: "prompt-text", text: doc.prompt })),
    el("div", { id: "tree" }, node(doc.tree, true)),
    legend("prob", "<10%", "100%", "p: the model's probability of the draw that starts each branch"),
    el("h3", { text: "Samples" }),
    el("ol", {}, doc.samples.map((s) => el("li", {}, el("span", { class: "text" },
      s.steps.map((st) => tok(st.token, { bg: probColor(st.prob) })))))));
};

// ---------- attribution ----------
renderers.explain = (doc) => {
  const out = clear($("out-explain"));
  const units = (doc.units || []).map((u) => ({ text: u.text, score: Number(u.score) }));
  const maxAbs = Math.max(1e-12, ...units.map((u) => Math.abs(u.score)));
  const title = el("h3", {}, "Why ", tok(doc.target ?? "?"), doc.foil ? [" rather than ", tok(doc.foil)] : null, "?",
    el("span", { class: "dim", text: ` · ${(doc.method || "").replace(/_/g, " ")} · ${doc.granularity || ""}` }));
  const heat = el("div", { class: "text", id: "explain-heatmap" },
    units.map((u) => tok(u.text, { bg: heatColor(u.score / maxAbs), title: `score ${fmt(u.score, 4)}` })));
  const ranked = units.slice().sort((a, b) => b.score - a.score).slice(0, 10);
  const table = el("table", { class: "data" }, el("tr", {}, ["#", "unit", "score", ""].map((h) => el("th", { text: h }))),
    ranked.map((u, r) => el("tr", {}, el("td", { class: "num", text: r + 1 }), el("td", {}, tok(u.text)),
      el("td", { class: "num", text: fmt(u.score, 4) }), el("td", {}, signedBar(u.score / maxAbs)))));
  out.append(title, el("div", { class: "layout" }, el("div", { class: "main" }, heat,
    legend("signed", `−${fmt(maxAbs, 3)}`, `+${fmt(maxAbs, 3)}`, "red pushes towards the target, blue against"), table),
  faithPanel(doc)));
};
function faithPanel(doc) {
  const side = el("div", { class: "side", id: "faithfulness" }, el("h4", { text: "Faithfulness" }));
  const f = doc.faithfulness;
  if (!f) side.append(el("p", { class: "dim", text: "not computed (turned off)" }));
  else {
    side.append(el("div", { class: "stats" }, stat("comprehensiveness ↑", fmt(f.comprehensiveness)),
      stat("sufficiency ↓", fmt(f.sufficiency)), stat("deletion AUC ↓", fmt(f.deletion_auc))));
    if (Array.isArray(f.fractions)) {
      side.append(el("table", { class: "data" }, el("tr", {}, ["top units", "comprehensiveness", "sufficiency"].map((h) => el("th", { text: h }))),
        f.fractions.map((x, i) => el("tr", {}, el("td", { text: pct(x) }), el("td", { class: "num", text: fmt(f.comprehensiveness_at[i]) }),
          el("td", { class: "num", text: fmt(f.sufficiency_at[i]) })))));
    }
    if (f.replacement) side.append(el("p", { class: "dim", text: `removed units replaced by: ${f.replacement}` }));
  }
  const extra = [stat("score f(x)", fmt(doc.score))];
  if (doc.completeness_error !== undefined && doc.completeness_error !== null) extra.push(stat("completeness error", pct(doc.completeness_error)));
  if (doc.steps) extra.push(stat("steps", doc.steps));
  side.append(el("div", { class: "stats" }, extra), el("p", { class: "dim", text: "Comprehensiveness: how much the "
    + "score drops when the top units are removed (higher is more faithful). Sufficiency: how much it drops when only "
    + "they are kept (lower is better). Values in nats." }));
  return side;
}
function signedBar(v) {
  const w = Math.round(Math.min(1, Math.abs(v)) * 170);
  return el("div", { class: "signed" },
    el("div", { class: "half left" }, v < 0 ? el("span", { class: "bar neg", style: { width: w + "px" } }) : null),
    el("div", { class: "half" }, v >= 0 ? el("span", { class: "bar pos", style: { width: w + "px" } }) : null));
}

// ---------- logit lens ----------
renderers.lens = (doc) => {
  const out = clear($("out-lens"));
  const hasTarget = doc.target_id !== null && doc.target_id !== undefined;
  const mode = el("select", { id: "lens-colour" }, el("option", { value: "top", text: "probability of the top token" }),
    hasTarget ? el("option", { value: "target", text: `probability of ${visible(doc.target_token)}` }) : null);
  const holder = el("div", { class: "scrollx" });
  const draw = () => clear(holder).append(lensTable(doc, mode.value === "target"));
  mode.addEventListener("change", draw);
  draw();
  out.append(el("h3", {}, "Logit lens of ", el("span", { class: "prompt-text", text: doc.prompt })),
    el("div", { class: "row controls" }, el("label", {}, "colour: ", mode)), holder,
    legend("prob", "<10%", "100%", "cell: the top token decoded after that layer (hover for the top-k); last row = the model's output"));
};
function lensTable(doc, byTarget) {
  const tokens = doc.positions.map((p) => doc.input_tokens[p]);
  const table = el("table", { class: "heat", id: "lens-grid" }, el("tr", {}, el("th", {}), tokens.map((t) => el("th", { text: visible(t) }))));
  doc.layers.forEach((layer) => table.append(el("tr", {}, el("th", { class: "rowh", text: layer.name }),
    layer.positions.map((cell) => {
      const top = cell.top[0];
      const title = cell.top.map((c) => `${visible(c.token)} ${pct(c.prob)}`).join("\n")
        + (cell.target_prob !== undefined ? `\ntarget ${pct(cell.target_prob)} (rank ${cell.target_rank})` : "");
      return el("td", { style: { background: probColor(byTarget ? cell.target_prob : top.prob) }, title, text: visible(top.token) });
    }))));
  return table;
}

// ---------- direct logit attribution ----------
renderers.components = (doc) => {
  const out = clear($("out-components"));
  const parts = doc.parts;
  const maxAbs = Math.max(1e-12, ...parts.map((p) => Math.abs(p.value)));
  const top = parts.slice().sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 20);
  const bars = el("table", { class: "data", id: "components-bars" },
    el("tr", {}, ["component", "contribution", ""].map((h) => el("th", { text: h }))),
    top.map((p) => el("tr", {}, el("td", { text: p.name }), el("td", { class: "num", text: fmt(p.value) }),
      el("td", {}, signedBar(p.value / maxAbs)))));
  const cell = (v) => el("td", { style: { background: heatColor(v / maxAbs) }, title: fmt(v, 4), text: fmt(v, 2) });
  const heads = Array.from({ length: doc.n_heads }, (_, h) => h);
  const value = (kind, l, h) => { const p = parts.find((x) => x.kind === kind && x.layer === l && (h === undefined || x.head === h)); return p ? p.value : 0; };
  const grid = el("table", { class: "heat", id: "components-grid" },
    el("tr", {}, el("th", {}), heads.map((h) => el("th", { text: `H${h}` })), el("th", { text: "MLP" })),
    Array.from({ length: doc.n_layers }, (_, l) => el("tr", {}, el("th", { class: "rowh", text: `L${l}` }),
      heads.map((h) => cell(value("head", l, h))), cell(value("mlp", l)))));
  const neurons = (doc.neurons || []).slice(0, 10);
  const what = doc.foil_token ? [tok(doc.target_token), " − ", tok(doc.foil_token)] : [tok(doc.target_token)];
  out.append(el("h3", {}, "Direct logit attribution to ", what),
    el("div", { class: "stats" }, stat("total (parts sum)", fmt(doc.total)), stat("model logit", fmt(doc.logit)), stat("error", Number(doc.error).toExponential(1))),
    el("div", { class: "layout" }, el("div", { class: "main" }, bars),
      el("div", { class: "side scrollx" }, el("h4", { text: "Heads and MLPs by layer" }), grid,
        neurons.length ? [el("h4", { text: "Top neurons" }), el("table", { class: "data" },
          el("tr", {}, ["neuron", "activation", "contribution"].map((h) => el("th", { text: h }))),
          neurons.map((n) => el("tr", {}, el("td", { text: `L${n.layer}.N${n.index}` }), el("td", { class: "num", text: fmt(n.activation) }),
            el("td", { class: "num", text: fmt(n.value) }))))] : null)),
    legend("signed", `−${fmt(maxAbs, 2)}`, `+${fmt(maxAbs, 2)}`, "red raises the target logit, blue lowers it"));
};

// ---------- attention ----------
renderers.attention = (doc) => {
  state.attn = doc;
  const sel = $("attention-head");
  const keep = sel.value;
  clear(sel).append(el("option", { value: "all", text: "all heads" }),
    ...doc.heads.map((h, i) => el("option", { value: String(i), text: h.name })));
  sel.value = [...sel.options].some((o) => o.value === keep) ? keep : "all";
  drawAttention();
};
function drawAttention() {
  const doc = state.attn;
  if (!doc) return;
  const out = clear($("out-attention"));
  const tokens = doc.input_tokens.slice(doc.offset);
  const choice = $("attention-head").value;
  const shown = choice === "all" ? doc.heads : [doc.heads[Number(choice)]];
  const hover = el("div", { class: "hover", id: "attn-hover", text: "hover a cell: query → key" });
  const px = shown.length === 1 ? 520 : 180;
  const figs = shown.map((h) => el("figure", {}, attnCanvas(h.pattern, tokens, px, hover),
    el("figcaption", { text: h.name + (h.importance === null || h.importance === undefined ? "" : ` · DLA ${fmt(h.importance)}`) })));
  out.append(el("h3", {}, "Attention patterns", el("span", { class: "dim",
    text: ` · ${tokens.length} positions${doc.offset ? ` (the last ${tokens.length}; earlier keys cut)` : ""}` })),
  hover, el("div", { class: "heads", id: "attention-heads" }, figs), legend("attn", "0", "1", "row: query position · column: key position"));
}
function attnCanvas(m, tokens, px, hover) {
  const n = m.length;
  const c = el("canvas", { class: "attn", width: n, height: n });
  c.style.width = px + "px"; c.style.height = px + "px";
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(n, n);
  for (let q = 0; q < n; q++) {
    for (let k = 0; k < n; k++) {
      const w = Math.max(0, Math.min(1, m[q][k] || 0)); const o = 4 * (q * n + k);
      img.data[o] = 255 - 164 * w; img.data[o + 1] = 255 - 222 * w; img.data[o + 2] = 255 - 73 * w; img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  c.addEventListener("mousemove", (ev) => {
    const r = c.getBoundingClientRect();
    const q = Math.floor((ev.clientY - r.top) / r.height * n); const k = Math.floor((ev.clientX - r.left) / r.width * n);
    if (q >= 0 && q < n && k >= 0 && k < n) hover.textContent = `${visible(tokens[q])} → ${visible(tokens[k])}: ${fmt(m[q][k])}`;
  });
  return c;
}

// ---------- activation patching ----------
renderers.patch = (doc) => {
  const out = clear($("out-patch"));
  const names = { layer: doc.layers.map((l) => `L${l}`), head: doc.heads.map((h) => `H${h}`),
    pos: doc.positions.map((p) => visible(doc.tokens[p])) };
  let grid = doc.grid; let rows = names[doc.axes[0]]; let cols = names[doc.axes[1]];
  if (doc.axes.length === 3) {  // (layer, head, pos): one row per layer.head
    rows = names[doc.axes[0]].flatMap((a) => names[doc.axes[1]].map((b) => `${a}.${b}`));
    grid = grid.flat(); cols = names[doc.axes[2]];
  }
  const maxAbs = Math.max(1, ...grid.flat().map((v) => Math.abs(v)));
  const table = el("table", { class: "heat", id: "patch-grid" }, el("tr", {}, el("th", {}), cols.map((c) => el("th", { text: c }))),
    grid.map((row, i) => el("tr", {}, el("th", { class: "rowh", text: rows[i] }),
      row.map((v) => el("td", { style: { background: heatColor(v / maxAbs) }, title: fmt(v, 4), text: fmt(v, 2) })))));
  const what = doc.foil_token ? [tok(doc.target_token), " − ", tok(doc.foil_token)] : [tok(doc.target_token)];
  const how = doc.method === "causal_trace" ? `causal tracing (restoring ${doc.component})` : `${doc.method} patching of ${doc.component}`;
  out.append(el("h3", {}, `${how} · ${doc.metric} of `, what),
    el("div", { class: "stats" }, stat("clean", fmt(doc.clean)), stat("corrupted", fmt(doc.corrupted)),
      doc.spearman !== null && doc.spearman !== undefined ? stat("rank corr. with activation patching", fmt(doc.spearman)) : null),
    el("div", { class: "scrollx" }, table),
    legend("signed", `−${fmt(maxAbs, 1)}`, `+${fmt(maxAbs, 1)}`, "share of the clean − corrupted difference restored (1 = all)"));
};

// ---------- page setup ----------
function selectTab(tab) {
  state.tab = tab;
  document.querySelectorAll("#tabs button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.tab === tab)));
  document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.id !== `panel-${tab}`; });
  $("sampling").style.display = tab === "generate" || tab === "samples" ? "" : "none";
}
async function init() {
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  document.querySelectorAll("button.run").forEach((b) => b.addEventListener("click", () => run(b.dataset.run)));
  document.querySelectorAll("button.report").forEach((b) => b.addEventListener("click", () => saveReport(b.dataset.report)));
  $("cancel").addEventListener("click", () => { if (state.pending) state.pending.abort(); });
  $("attention-head").addEventListener("change", drawAttention);
  const count = () => { $("prompt-count").textContent = `${$("prompt").value.length} characters`; };
  $("prompt").addEventListener("input", count); count();
  $("prompt").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(state.tab); } });
  selectTab("predict");
  try {
    const info = await (await fetch("/api/info", { credentials: "same-origin" })).json();
    state.info = info;
    $("model-info").textContent = `${info.model} · ${info.n_layers} layers · ${info.n_heads} heads · context ${info.n_ctx} tokens`;
    $("prompt").maxLength = info.limits.prompt_chars;
    const layerSel = $("attention-layer");
    for (let l = 0; l < info.n_layers; l++) layerSel.append(el("option", { value: String(l), text: `L${l}` }));
    const methods = info.explain_methods && info.explain_methods.length ? info.explain_methods : ["integrated_gradients"];
    methods.forEach((m) => $("explain-method").append(el("option", { value: m, text: m.replace(/_/g, " ") })));
  } catch (e) { showError(e); }
  document.body.dataset.ready = "1";
}
document.addEventListener("DOMContentLoaded", init);

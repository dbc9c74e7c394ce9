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
// the SVG namespace name (an identifier, never fetched; split so no address appears in the source)
const SVG_NS = ["http:", "", "www.w3.org", "2000", "svg"].join("/");
const clear = (node) => { node.replaceChildren(); return node; };
const VISIBLE = { " ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍" };
// an empty token (e.g. part of a multi-byte character) is shown as ∅ so it can still be seen and clicked
const visible = (t) => (String(t ?? "") === "" ? "∅" : String(t ?? "").replace(/[ \n\t\r]/g, (c) => VISIBLE[c]));
const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(d));
const pct = (p) => (p === null || p === undefined ? "–" : p >= 0.001 ? (100 * p).toFixed(1) + "%" : Number(p).toExponential(1));

// ---------- colour scales ----------
// Probability: one continuous single-hue scale on log10(p) from 0.01% to 100% (the legend shows the ticks).
// Red is kept for one meaning only: a generated token sampled although the model found it unlikely.
const PROB_RGB = [45, 164, 78];
const probT = (p) => Math.max(0, Math.min(1, (Math.log10(Math.max(Number(p) || 0, 1e-12)) + 4) / 4));
const probRgba = (p) => [...PROB_RGB, 0.05 + 0.55 * probT(p)];
function signedRgba(s) {   // signed scores in [-1, 1]: red positive, blue negative
  const v = Math.max(-1, Math.min(1, Number(s) || 0));
  return v >= 0 ? [220, 38, 38, v] : [37, 99, 235, -v];
}
// Background and a text colour that stays readable on it (WCAG AA: black or white, whichever passes).
function paint(rgba) {
  const [r, g, b, a] = rgba;
  const mix = [r, g, b].map((c) => (c * a + 255 * (1 - a)) / 255);
  const lin = mix.map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  return { background: `rgba(${r},${g},${b},${a.toFixed(3)})`, color: lum >= 0.18 ? "#000" : "#fff" };
}
const probPaint = (p) => paint(probRgba(p));
const heatPaint = (s) => paint(signedRgba(s));
const probColor = (p) => probPaint(p).background;
const heatColor = (s) => heatPaint(s).background;
function legend(kind, left, right, note) {
  return el("div", { class: "legend" }, el("span", { text: left }), el("span", { class: `ramp ${kind}`, "aria-hidden": "true" }),
    el("span", { text: right }), note ? el("span", { text: "· " + note }) : null);
}
function probLegend(note) {   // numeric ticks under the log scale
  const ticks = ["0.01%", "0.1%", "1%", "10%", "100%"];
  return el("div", { class: "legend prob-legend" }, el("span", { text: "probability (log scale):" }),
    el("span", { class: "ramp-ticks" }, el("span", { class: "ramp prob", "aria-hidden": "true" }),
      el("span", { class: "ticks" }, ticks.map((t) => el("span", { text: t })))),
    note ? el("span", { text: "· " + note }) : null);
}
function tok(text, opts = {}) {
  const style = opts.paint ? { background: opts.paint.background, color: opts.paint.color } : opts.bg ? { background: opts.bg } : null;
  const node = el("span", { class: "tok " + (opts.cls || ""), title: opts.title, style, text: visible(text),
    onclick: opts.onclick, tabindex: opts.onclick ? "0" : null, role: opts.onclick ? "button" : null,
    "aria-label": opts.label });
  if (opts.onclick) {   // keyboard: Enter and Space act like a click
    node.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); opts.onclick(ev); }
    });
  }
  return node;
}
function stat(k, v) { return el("div", { class: "stat" }, el("div", { class: "v", text: v }), el("div", { class: "k", text: k })); }
function actionable(node, fn) {   // a non-button element that mouse and keyboard users can both activate
  node.setAttribute("tabindex", "0"); node.setAttribute("role", "button");
  node.addEventListener("click", fn);
  node.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); fn(ev); } });
  return node;
}

// ---------- talking to the server ----------
// One request at a time: while one runs, Run buttons are disabled and Ctrl+Enter is ignored (the status says
// so), so the page never shows "done" while the server is still working on a second request.
async function api(name, body) {
  const controller = new AbortController();
  const started = performance.now();
  setBusy(name, controller);
  try {
    const res = await fetch(`/api/${name}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: controller.signal, credentials: "same-origin",
    });
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${res.status}: ${detail}`);
    }
    const out = await res.json();
    Object.defineProperty(out, "_resultId", { value: res.headers.get("x-whyllm-result"), enumerable: false });
    setIdle(`${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return out;
  } catch (e) {
    setIdle(e.name === "AbortError" ? "cancelled" : "failed");
    throw e;
  }
}
async function quiet(name, body) {   // a small side request (hints): no busy state, errors ignored
  try {
    const res = await fetch(`/api/${name}`, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), credentials: "same-origin" });
    return res.ok ? await res.json() : null;
  } catch (_) { return null; }
}
function setBusy(name, controller) {
  state.pending = controller;
  $("status").classList.add("busy");
  $("status-text").textContent = `${name}…`;
  $("cancel").hidden = false;
  document.querySelectorAll("button.run, button.branch-btn").forEach((b) => { b.disabled = true; });
  state.poll = setInterval(pollStatus, 300);
}
function setIdle(text) {
  state.pending = null;
  clearInterval(state.poll);
  $("status").classList.remove("busy");
  $("status-text").textContent = text;
  $("progress").hidden = true;
  $("cancel").hidden = true;
  document.querySelectorAll("button.run, button.branch-btn").forEach((b) => { b.disabled = false; });
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
// Errors show at the top of the current tab, scrolled into view; the result below (if any) is marked as
// out of date rather than left looking current.
function showError(e, tab = state.tab) {
  const box = $("error");
  box.replaceChildren(el("strong", { text: "Request failed: " }), String(e.message || e));
  box.hidden = false;
  const out = $(`out-${tab}`);
  if (out && state.last[tab] && !out.classList.contains("stale")) {
    out.classList.add("stale");
    out.prepend(el("p", { class: "stale-note", text: "Out of date: this is the previous result; the last request "
      + "failed (see the message above)." }));
  }
  box.scrollIntoView({ block: "nearest" });
}
function hideError() { $("error").hidden = true; }
function fresh(tab) {   // a new result replaces any out-of-date marking
  const out = $(`out-${tab}`);
  out.classList.remove("stale");
}

// ---------- reading the controls ----------
const val = (id) => $(id).value;
const num = (id) => ($(id).value === "" ? null : Number($(id).value));
const text = (id) => { const v = $(id).value.replace(/␣/g, " ").replace(/↵/g, "\n"); return v === "" ? null : v; };
const prompt = () => $("prompt").value;
function sampling() {
  return { max_new_tokens: num("max_new_tokens") ?? 24, temperature: num("temperature") ?? 1, top_k: num("top_k"),
    top_p: num("top_p"), seed: num("seed"), greedy: $("greedy").checked };
}
function methodInfo(name) {
  const info = state.info && state.info.explain_method_info;
  return (info && info[name]) || { uses_target: true, summary: "" };
}
function explainSteps() {
  const v = $("explain-steps").value.trim().toLowerCase();
  return v === "auto" ? "auto" : Number(v) || 32;
}
const requests = {
  predict: () => ["predict", { prompt: prompt(), target: text("predict-target"), top_k: num("predict-top_k") ?? 10 }],
  generate: () => ["generate", { prompt: prompt(), ...sampling(), alternatives: num("generate-alternatives") ?? 8 }],
  samples: () => { const s = sampling(); delete s.greedy; return ["generate", { prompt: prompt(), ...s, samples: num("samples-n") ?? 6 }]; },
  explain: () => {
    const method = val("explain-method");
    const usesTarget = methodInfo(method).uses_target;
    const body = { prompt: prompt(), target: text("explain-target"), foil: usesTarget ? text("explain-foil") : null,
      method, granularity: val("explain-granularity"), faithfulness: $("explain-faithfulness").checked };
    if (method === "integrated_gradients") body.steps = explainSteps();
    return ["explain", body];
  },
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
requests.training = () => ["emerge", { run: val("training-run"), prompt: text("training-prompt"),
  target: text("training-target"), ablate: $("training-ablate").checked }];
requests.tuning = () => ["diff", { prompts: $("tuning-prompts").value.split("\n").map((x) => x.trim()).filter(Boolean)
  .concat($("tuning-prompts").value.trim() ? [] : [prompt()]), feedback: $("tuning-feedback").checked }];
const renderers = {};

async function run(tab) {
  if (state.pending) {   // one request at a time (Ctrl+Enter while a job runs does nothing but say so)
    $("status-text").textContent = "still working: wait, or Cancel first";
    return;
  }
  hideError();
  const [name, body] = requests[tab]();
  if (tab === "generate") { await streamGenerate(body); return; }
  try {
    const doc = await api(name, body);
    state.last[tab] = { name, body, doc, id: doc._resultId };
    if (tab === "generate") {
      state.gen = { prompt: body.prompt, body, doc, steps: doc.steps.slice(), history: [] };
    }
    fresh(tab);
    renderers[tab](doc);
    const report = document.querySelector(`[data-report="${tab}"]`);
    if (report) report.disabled = false;
    if (["predict", "explain", "lens", "components"].includes(tab)) targetHint(tab, body.prompt, body.target);
  } catch (e) {
    if (e.name !== "AbortError") showError(e, tab);
  }
}

// Generation streams token by token (server-sent events over fetch); Cancel keeps the tokens already made.
async function streamGenerate(body) {
  const controller = new AbortController();
  const started = performance.now();
  setBusy("generate", controller);
  const g = { prompt: body.prompt, body, steps: [], history: [],
    doc: { stop_reason: "running…", settings: { seed: body.seed, temperature: body.temperature } } };
  state.gen = g;
  state.last.generate = null;
  document.querySelector('[data-report="generate"]').disabled = true;
  fresh("generate");
  let finished = false;
  try {
    const res = await fetch("/api/generate/stream", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: controller.signal, credentials: "same-origin" });
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${res.status}: ${detail}`);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const event = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "null");
        if (event === "step") { g.steps.push(data); drawGeneration(); }
        else if (event === "result") {
          g.doc = data.doc; g.steps = data.doc.steps.slice(); finished = true;
          state.last.generate = { name: "generate", body, doc: data.doc, id: data.id };
          document.querySelector('[data-report="generate"]').disabled = false;
          drawGeneration();
        } else if (event === "error") throw new Error(`${data.error}: ${data.detail}`);
      }
    }
    if (!finished) throw new Error("the stream ended without a result");
    setIdle(`generate done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (e) {
    const cancelled = e.name === "AbortError";
    setIdle(cancelled ? `cancelled: kept the ${g.steps.length} tokens made` : "failed");
    g.doc = { ...g.doc, stop_reason: cancelled ? `cancelled by you after ${g.steps.length} tokens` : "failed" };
    if (g.steps.length) drawGeneration();
    if (!cancelled) showError(e, "generate");
  }
}

// "Save report" writes the result already on screen (kept by the server for a while), not a new run.
async function saveReport(tab) {
  const last = state.last[tab];
  if (!last) return;
  hideError();
  try {
    const res = await fetch(`/api/report/${encodeURIComponent(last.id)}`, { credentials: "same-origin" });
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${res.status}: ${detail}`);
    }
    const html = await res.text();
    const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
    const a = el("a", { href: url, download: `whyllm-${tab}.html` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { showError(e, tab); }
}

// ---------- target hints: tokenisation made visible ----------
// "Paris" and " Paris" are different tokens; when the other spelling ranks far better, say so.
async function targetHint(tab, promptText, target) {
  const box = $(`hint-${tab}`);
  if (!box) return;
  clear(box);
  if (!target) return;
  const other = /^\s/.test(target) ? target.replace(/^\s+/, "") : " " + target;
  if (!other) return;
  const [mine, theirs] = [await quiet("predict", { prompt: promptText, target, top_k: 1 }),
    await quiet("predict", { prompt: promptText, target: other, top_k: 1 })];
  if (!mine || !theirs || !mine.target || !theirs.target) return;
  const a = mine.target; const b = theirs.target;
  box.append(el("div", { class: "tokline" }, "target ", tok(target), " is ", a.tokens.length, " token",
    a.tokens.length === 1 ? "" : "s", ": ", a.tokens.flatMap((t, i) => [tok(t), el("span", { class: "dim", text: ` id ${a.ids[i]} ` })]),
    ` · rank of its first token ${a.rank}`));
  if (b.rank * 5 <= a.rank) {
    const use = el("button", { type: "button", class: "secondary", text: `use ${visible(other)}`,
      onclick: () => { setShared("target", visible(other)); run(tab); } });
    box.append(el("div", { class: "hint", role: "note" }, "Did you mean ", tok(other), ` (rank ${b.rank})? `,
      tok(target), ` ranks ${a.rank}: a leading space makes a different token. `, use));
  }
}
function setShared(kind, value) {
  document.querySelectorAll(`input[data-shared="${kind}"]`).forEach((i) => { i.value = value; });
}

// ---------- next token ----------
function promptTokens(ids, tokens) {   // the prompt as the model sees it: tokens with positions and ids
  return el("details", { class: "tokens-view" }, el("summary", { text: `prompt as ${ids.length} tokens (position · id)` }),
    el("div", { class: "text" }, ids.map((id, i) => el("span", { class: "tokbox" },
      tok(tokens ? tokens[i] : String(id)), el("span", { class: "sub", text: `${i} · ${id}` })))));
}
function explainThis(promptText, target) {   // drill-down: attribution of this token
  $("prompt").value = promptText;
  setShared("target", visible(target));
  selectTab("explain");
  run("explain");
}
renderers.predict = (doc) => {
  const out = clear($("out-predict"));
  const top1 = doc.top.length ? doc.top[0].prob : 1;
  const rows = doc.top.map((c) => el("tr", {},
    el("td", { class: "num", text: c.rank }), el("td", {}, tok(c.token, { paint: probPaint(c.prob) })),
    el("td", { class: "barcell" }, el("span", { class: "bar", style: { width: Math.max(1, 300 * c.prob / top1) + "px" } })),
    el("td", { class: "num", text: pct(c.prob) }), el("td", { class: "num", text: fmt(c.logprob) }),
    el("td", { class: "num", text: c.id }),
    el("td", {}, el("button", { type: "button", class: "link explain-btn", text: "explain this",
      "aria-label": `explain this: ${visible(c.token)}`, onclick: () => explainThis(doc.prompt, c.token) }))));
  out.append(
    el("h3", {}, "Next token after ", el("span", { class: "prompt-text", text: doc.prompt })),
    el("table", { class: "data", id: "predict-table" },
      el("tr", {}, ["rank", "token", "probability", "", "logprob", "id", ""].map((h) => el("th", { text: h }))), rows),
    probLegend("bars scaled to the most likely token"),
    el("div", { class: "stats" }, stat("entropy (nats)", fmt(doc.entropy)), stat("prompt tokens", doc.input_ids.length)),
    promptTokens(doc.input_ids, doc.input_tokens));
  if (doc.target) {
    const t = doc.target;
    out.append(el("div", { class: "stats" }, stat("target", visible(t.text)), stat("probability", pct(t.prob)),
      stat("logprob", fmt(t.logprob)), stat("rank of first token", t.rank)));
  }
};

// ---------- tuning: base vs tuned (whyllm diff) ----------
renderers.tuning = (doc) => {
  const out = clear($("out-tuning"));
  const tokens = (list) => list.map((t) => `${visible(t.token)} ${pct(t.base_prob)} → ${pct(t.tuned_prob)}`).join(", ");
  out.append(el("table", { class: "data", id: "tuning-table" },
    el("caption", { class: "dim", text: "KL(tuned ‖ base) of the next-token distributions, in nats" }),
    el("tr", {}, ["prompt", "KL", "gained", "lost", "generations part at", "feedback most responsible"].map((h) => el("th", { text: h }))),
    doc.prompts.map((p) => el("tr", {},
      el("td", { text: p.prompt }), el("td", { class: "num", text: fmt(p.kl) }),
      el("td", { text: tokens(p.gained.slice(0, 3)) }), el("td", { text: tokens(p.lost.slice(0, 3)) }),
      el("td", { text: p.first_divergence ? `step ${p.first_divergence.step + 1}: ${visible(p.first_divergence.base_token ?? "∅")} → ${visible(p.first_divergence.tuned_token ?? "∅")}` : "same text" }),
      el("td", { text: (p.feedback || []).slice(0, 3).map((f) => `#${f.id} (${fmt(f.score, 2)})`).join(", ") || "–" })))));
};

// ---------- training: a prediction over the checkpoints of a run ----------
renderers.training = (doc) => {
  const out = clear($("out-training"));
  const phases = new Set(doc.phase_changes.map((p) => p.step));
  const rows = doc.checkpoints.map((c) => el("tr", phases.has(c.step) ? { class: "phase" } : {},
    el("td", { class: "num", text: c.step }), el("td", { class: "num", text: fmt(c.loss) }),
    el("td", { class: "num", text: fmt(c.in_context_loss) }), el("td", { class: "num", text: pct(c.target_prob) }),
    el("td", {}, el("span", { class: "bar", style: { width: Math.max(1, 200 * c.target_prob) + "px" } })),
    el("td", { text: phases.has(c.step) ? "phase change" : "" })));
  out.append(
    el("h3", {}, "How ", el("span", { class: "prompt-text", text: visible(doc.target_token) }),
      ` emerged after “${doc.prompt}” (${doc.task}, ${doc.checkpoints.length} checkpoints)`),
    el("table", { class: "data", id: "training-table" },
      el("caption", { class: "dim", text: "held-out losses in nats (in-context: the second half of each sequence); "
        + "target probability after the prompt" }),
      el("tr", {}, ["step", "loss", "in-context loss", "p(target)", "", ""].map((h) => el("th", { text: h }))), rows));
  if (!doc.phase_changes.length) {
    out.append(el("p", { class: "dim", text: "No phase change: the in-context loss never fell at least twice as "
      + "steeply as just before." }));
  }
  doc.phase_changes.forEach((p) => out.append(el("p", {},
    `Phase change between steps ${p.from_step} and ${p.to_step}: in-context loss ${fmt(p.before)} → ${fmt(p.after)} nats. `
    + (p.heads.length ? "Heads that formed there: " + p.heads.map((h) => `L${h.layer}.H${h.head} (${h.role}, +${fmt(h.rise)})`).join(", ")
      : "No head's score rose with it."))));
  if (doc.ablation && doc.ablation.length) {
    const worst = doc.ablation.slice().sort((a, b) => a.in_context_accuracy - b.in_context_accuracy).slice(0, 5);
    out.append(el("table", { class: "data", id: "training-ablation" },
      el("caption", { class: "dim", text: "each head zeroed at the last checkpoint, most harmful first" }),
      el("tr", {}, ["head", "in-context accuracy", "in-context loss"].map((h) => el("th", { text: h }))),
      worst.map((a) => el("tr", {}, el("td", { text: `L${a.layer}.H${a.head}` }),
        el("td", { class: "num", text: pct(a.in_context_accuracy) }), el("td", { class: "num", text: fmt(a.in_context_loss) })))));
  }
};

// ---------- generation: tokens by probability, alternatives, re-branching ----------
renderers.generate = () => drawGeneration();
function drawGeneration(selected = state.gen.selected ?? null) {   // streaming redraws keep the selection
  const g = state.gen;
  g.selected = selected;
  const out = clear($("out-generate"));
  const line = el("div", { class: "text", id: "gen-text" }, el("span", { class: "prompt-text", text: g.prompt }));
  g.steps.forEach((s, i) => {
    const cls = ["click", s.prob < 0.1 ? "unlikely" : "", s.forced ? "branch" : "", i === selected ? "selected" : ""].join(" ");
    line.append(tok(s.token, { paint: probPaint(s.prob), cls, title: `p=${fmt(s.prob)} · rank ${s.rank}`,
      label: `step ${i + 1}: ${visible(s.token)}, probability ${pct(s.prob)}`, onclick: () => drawGeneration(i) }));
  });
  const side = el("div", { class: "side", id: "gen-side" });
  if (selected === null) side.append(el("p", { class: "dim", text: "Click a token (or focus it and press Enter) to see the alternatives at that step." }));
  else side.append(stepDetails(selected));
  const history = g.history.length ? el("div", { class: "history", id: "gen-history" },
    el("span", { class: "dim", text: `${g.history.length} earlier version${g.history.length > 1 ? "s" : ""} · ` }),
    el("button", { type: "button", class: "secondary", id: "gen-back", text: "← back to the previous continuation",
      onclick: () => { const prev = g.history.pop(); Object.assign(g, prev); drawGeneration(prev.selected ?? null); } }))
    : null;
  out.append(el("div", { class: "layout" }, el("div", { class: "main" }, line, history,
    probLegend("red underline: sampled although under 10% likely · purple frame: chosen by you (branch)"),
    el("p", { class: "dim", text: `stopped: ${g.doc.stop_reason} · seed ${g.doc.settings.seed} · temperature ${g.doc.settings.temperature}` }),
    g.doc.text === undefined ? null : feedbackBar(g.prompt, g.steps, g.doc.settings)),
  side));
}
// Human feedback on a finished continuation: good / bad, or a corrected text (stored by POST /api/feedback;
// `whyllm tune` trains on it).
function feedbackBar(promptText, steps, settings, key = "") {
  const id = (name) => `feedback-${name}${key}`;
  const status = el("span", { class: "dim", id: id("status"), role: "status", "aria-live": "polite" });
  const completion = steps.map((s) => s.token).join("");
  const send = async (verdict, correction) => {
    const body = { prompt: promptText, completion, verdict, correction: correction || null,
      completion_ids: steps.map((s) => s.id), settings };
    try {
      const res = await fetch("/api/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body), credentials: "same-origin" });
      const out = await res.json();
      if (!res.ok) throw new Error(`${res.status}: ${out.detail || res.statusText}`);
      status.textContent = `saved as feedback #${out.id} (${verdict}${correction ? ", corrected" : ""})`;
    } catch (e) { showError(e, state.tab); }
  };
  const box = el("textarea", { id: id("correction"), rows: "3", cols: "60" });
  const editor = el("div", { class: "correction", hidden: "" },
    el("label", {}, "what the model should have said ", box),
    el("button", { type: "button", id: id("save"), text: "Save correction", onclick: () => {
      if (!box.value.trim()) { status.textContent = "the correction is empty"; return; }
      send("bad", box.value);
    } }));
  return el("div", { class: "feedback", id: id("bar") },
    el("span", { text: "Was this continuation good? " }),
    el("button", { type: "button", class: "secondary", id: id("good"), text: "👍 good", "aria-label": `good continuation${key}`, onclick: () => send("good") }),
    el("button", { type: "button", class: "secondary", id: id("bad"), text: "👎 bad", "aria-label": `bad continuation${key}`, onclick: () => send("bad") }),
    el("button", { type: "button", class: "secondary", id: id("correct"), text: "✎ correct it", onclick: () => {
      editor.hidden = false; box.value = completion; box.focus();
    } }),
    status, editor);
}
function stepDetails(i) {
  const g = state.gen;
  const s = g.steps[i];
  const top = Math.max(1e-9, ...(s.alternatives || []).map((a) => a.prob));
  const rows = (s.alternatives || []).map((a) => el("tr", {},
    el("td", {}, tok(a.token, { paint: probPaint(a.prob), cls: a.id === s.id ? "selected" : "" })),
    el("td", { class: "barcell" }, el("span", { class: "bar", style: { width: Math.max(1, 120 * a.prob / top) + "px" } })),
    el("td", { class: "num", text: pct(a.prob) }),
    el("td", {}, a.id === s.id ? el("span", { class: "dim", text: "chosen" })
      : el("button", { type: "button", class: "secondary branch-btn", text: "branch",
        "aria-label": `branch with ${visible(a.token)}`, title: "regenerate from here with this token",
        onclick: () => branch(i, a) }))));
  const before = g.prompt + g.steps.slice(0, i).map((x) => x.token).join("");
  return el("div", { id: "alternatives" },
    el("h4", {}, `Step ${i + 1}: `, tok(s.token, { paint: probPaint(s.prob) })),
    el("div", { class: "stats" }, stat("probability", pct(s.prob)), stat("rank", s.rank), stat("entropy", fmt(s.entropy, 2))),
    el("table", { class: "data" }, el("tr", {}, ["alternative", "", "p", ""].map((h) => el("th", { text: h }))), rows),
    el("button", { type: "button", class: "link explain-btn", text: "explain this token",
      onclick: () => explainThis(before, s.token) }));
}
async function branch(i, alt) {
  if (state.pending) return;
  hideError();
  const g = state.gen;
  const prefix = g.steps.slice(0, i).map((s) => s.id).concat([alt.id]);
  // the user's seed is kept (null only when they asked for a random one)
  const body = { ...g.body, prompt: g.prompt, prefix_ids: prefix, seed: g.body.seed ?? null };
  body.max_new_tokens = Math.max(1, (g.body.max_new_tokens || 24) - prefix.length);
  try {
    const doc = await api("generate", body);
    g.history.push({ steps: g.steps, doc: g.doc, selected: i });
    const forced = { ...alt, index: i, forced: true, alternatives: g.steps[i].alternatives, entropy: g.steps[i].entropy };
    g.steps = g.steps.slice(0, i).concat([forced], doc.steps);
    g.doc = doc;
    g.lastBody = body;
    state.last.generate = { name: "generate", body, doc, id: doc._resultId };
    drawGeneration(i);
  } catch (e) { if (e.name !== "AbortError") showError(e, "generate"); }
}

// ---------- samples: divergence tree ----------
renderers.samples = (doc) => {
  const out = clear($("out-samples"));
  const node = (n, isRoot) => {
    const head = isRoot ? null : el("span", { class: "branch-head" },
      el("span", { class: "branch-p", text: `p=${fmt(n.probs[0])}` }), ` · sample${n.samples.length > 1 ? "s" : ""} ${n.samples.map((s) => "#" + (s + 1)).join(", ")}`);
    const toks = n.tokens.map((t, j) => tok(t, { paint: probPaint(n.probs[j]), title: `p=${fmt(n.probs[j])}` }));
    const kids = n.children.length ? el("ul", { class: "tree" }, n.children.map((c) => el("li", {}, node(c, false)))) : null;
    return el("div", {}, head, el("span", { class: "text" }, toks), kids);
  };
  out.append(el("h3", {}, `${doc.samples.length} samples of `, el("span", { class: "prompt-text", text: doc.prompt })),
    el("div", { id: "tree" }, node(doc.tree, true)),
    probLegend("p: the model's probability of the draw that starts each branch"),
    el("h3", { text: "Samples" }),
    el("ol", {}, doc.samples.map((s, i) => el("li", {}, el("span", { class: "text" },
      s.steps.map((st) => tok(st.token, { paint: probPaint(st.prob) }))),
      feedbackBar(doc.prompt, s.steps, s.settings, `-s${i + 1}`)))));
};

// ---------- attribution ----------
const METHOD_NAMES = { integrated_gradients: "integrated gradients", input_x_gradient: "input × gradient",
  saliency: "saliency (gradient norm)", occlusion: "occlusion", attention: "attention (last layer)",
  attention_rollout: "attention rollout", context_ablation: "context ablation" };
const methodName = (m) => METHOD_NAMES[m] || String(m || "").replace(/_/g, " ");
const position = (u) => (u.end - u.start <= 1 ? String(u.start) : `${u.start}-${u.end - 1}`);
function syncExplainControls() {   // foil and steps only for the methods that use them
  const m = val("explain-method");
  const usesTarget = methodInfo(m).uses_target;
  for (const id of ["explain-target", "explain-foil"]) $(id).disabled = !usesTarget;
  $("explain-steps").disabled = m !== "integrated_gradients";
  $("explain-method-note").textContent = (usesTarget ? "" : "This method ignores the target and foil: it shows where "
    + "the model looks, not why it prefers one answer. ") + (methodInfo(m).summary || "");
}
function fLabel(doc) {   // what the score f is, in words
  return doc.foil ? `log p(${visible(doc.target)}) − log p(${visible(doc.foil)})` : `log p(${visible(doc.target)})`;
}
renderers.explain = (doc) => {
  const out = clear($("out-explain"));
  const usesTarget = methodInfo(doc.method).uses_target;
  const units = (doc.units || []).map((u) => ({ ...u, score: Number(u.score) }));
  const maxAbs = Math.max(1e-12, ...units.map((u) => Math.abs(u.score)));
  const how = el("span", { class: "dim", text: ` · ${methodName(doc.method)} · by ${doc.granularity || "token"}` });
  const title = usesTarget
    ? el("h3", {}, "Why ", tok(doc.target ?? "?"), doc.foil ? [" rather than ", tok(doc.foil)] : null, "?", how)
    : el("h3", {}, "Where the model looks from the last position", how,
      el("span", { class: "dim", text: " · independent of the target and foil" }));
  const warn = [];
  if (doc.completeness_error !== undefined && doc.completeness_error !== null && doc.completeness_error > 0.01) {
    warn.push(el("div", { class: "warn", id: "completeness-warning", role: "note" },
      el("strong", { text: "These scores do not add up. " }),
      `Integrated gradients with ${doc.steps} steps leaves a completeness error of ${pct(doc.completeness_error)} `
      + "(the scores should sum to f(input) − f(baseline); above 1% they are unreliable). ",
      el("button", { type: "button", class: "secondary", id: "rerun-auto", text: "Rerun with steps = auto",
        onclick: () => { $("explain-steps").value = "auto"; run("explain"); } })));
  }
  const heat = el("div", { class: "text", id: "explain-heatmap" },
    units.map((u) => tok(u.text, { paint: heatPaint(u.score / maxAbs), title: `score ${fmt(u.score, 4)} · position ${position(u)}` })));
  const all = units.slice().sort((a, b) => Math.abs(b.score) - Math.abs(a.score) || a.start - b.start);
  const holder = el("div", {});
  const drawTable = (n) => {
    clear(holder).append(el("table", { class: "data", id: "explain-table" },
      el("caption", { class: "dim", text: `strongest evidence either way, ranked by |score| (${Math.min(n, all.length)} of ${all.length})` }),
      el("tr", {}, ["#", "unit", "position", "score", "against | for"].map((h) => el("th", { text: h }))),
      all.slice(0, n).map((u, r) => el("tr", {}, el("td", { class: "num", text: r + 1 }), el("td", {}, tok(u.text)),
        el("td", { class: "num", text: position(u) }),
        el("td", { class: "num", text: (u.score >= 0 ? "+" : "") + fmt(u.score, 4) }), el("td", {}, signedBar(u.score / maxAbs))))));
    if (all.length > n) holder.append(el("button", { type: "button", class: "link", id: "explain-all", text: `show all ${all.length}`, onclick: () => drawTable(all.length) }));
  };
  drawTable(10);
  out.append(title, ...warn, el("div", { class: "layout" }, el("div", { class: "main" }, heat,
    legend("signed", `−${fmt(maxAbs, 3)}`, `+${fmt(maxAbs, 3)}`, usesTarget ? "red pushes towards the target, blue against" : "attention weight"),
    holder), faithPanel(doc, units)));
};
function faithPanel(doc, units) {
  const side = el("div", { class: "side", id: "faithfulness" }, el("h4", { text: "Does the explanation hold up?" }));
  const f = doc.faithfulness;
  if (!f) side.append(el("p", { class: "dim", text: "Faithfulness not computed (turned off)." }));
  else {
    const order = units.map((u, k) => [u, k]).sort((a, b) => b[0].score - a[0].score || a[1] - b[1]).map((x) => x[0]);
    const xs = f.deletion_curve.fraction; const ys = f.deletion_curve.score;
    const n = units.length;
    const j = xs.findIndex((x) => x > 0);
    const words = [];
    if (j > 0) {
      const c = Math.round(xs[j] * n);
      const removed = order.slice(0, c).map((u) => visible(u.text)).join(", ");
      const flips = doc.foil && Math.sign(ys[0]) !== Math.sign(ys[j]) && ys[j] !== 0;
      words.push(el("p", { id: "faith-words" }, `Removing ${c === 1 ? "" : `the top ${c} units `}`, el("code", { text: removed }),
        `${c === 1 ? " alone" : ""} ${flips ? "flips the answer" : "moves the score"}: f = ${fLabel(doc)} `
        + `goes from ${fmt(ys[0], 2)} to ${fmt(ys[j], 2)}.`));
    }
    words.push(el("p", {}, `With every unit removed (replaced by the ${f.replacement || "mean"} embedding), f is ${fmt(f.empty_score, 2)}. `
      + `Removing the top ${pct(f.fractions[0])} of units lowers f by ${fmt(f.comprehensiveness_at[0], 2)} nats `
      + `(comprehensiveness; a faithful ranking lowers it a lot); keeping only them lowers it by ${fmt(f.sufficiency_at[0], 2)} `
      + "(sufficiency; a faithful ranking keeps it, so lower is better)."));
    const rd = f.random_deletion;
    if (rd) words.push(randomWords(doc, f.deletion_auc, rd));
    side.append(...words, deletionCurve(xs, ys, rd, f.deletion_auc),
      el("div", { class: "stats" }, stat("comprehensiveness ↑", fmt(f.comprehensiveness)),
        stat("sufficiency ↓", fmt(f.sufficiency)), stat("deletion AUC ↓", fmt(f.deletion_auc))));
    if (Array.isArray(f.fractions)) {
      side.append(el("table", { class: "data" }, el("tr", {}, ["top units", "comprehensiveness", "sufficiency"].map((h) => el("th", { text: h }))),
        f.fractions.map((x, i) => el("tr", {}, el("td", { text: pct(x) }), el("td", { class: "num", text: fmt(f.comprehensiveness_at[i]) }),
          el("td", { class: "num", text: fmt(f.sufficiency_at[i]) })))));
    }
  }
  const extra = [stat("score f(x)", fmt(doc.score))];
  if (doc.completeness_error !== undefined && doc.completeness_error !== null) extra.push(stat("completeness error", pct(doc.completeness_error)));
  if (doc.steps) extra.push(stat("steps", doc.steps));
  side.append(el("div", { class: "stats" }, extra), el("p", { class: "dim", text: `f = ${fLabel(doc)}, in nats. `
    + "Deletion AUC: the area under f(x without the top t) − f(x); below 0 when the ranking is right." }));
  return side;
}
function randomWords(doc, auc, rd) {   // the deletion curve against its random-order baseline, in words
  const what = doc.foil ? "the margin" : "the target's log-probability";
  return el("p", { id: "random-words" }, `Deleting in the method's order lowers ${what} `
    + `${auc < rd.auc ? "faster than" : "no faster than"} random order: deletion AUC ${fmt(auc, 2)} vs ${fmt(rd.auc, 2)} `
    + `(mean of ${rd.orders} random orders; lower is faster).`);
}
function deletionCurve(xs, ys, rd, auc) {   // f as the top units are removed, against the random-order baseline
  const W = 280; const H = 150; const L = 36; const B = 24;
  const rs = rd ? rd.score : [];
  const lo = Math.min(...ys, ...rs, 0); const hi = Math.max(...ys, ...rs, 0); const span = hi - lo || 1;
  const X = (x) => L + x * (W - L - 8); const Y = (y) => 8 + (hi - y) / span * (H - B - 8);
  const NS = SVG_NS;
  const svg = document.createElementNS(NS, "svg");
  const add = (tag, attrs, textContent) => { const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (textContent) n.textContent = textContent; svg.append(n); return n; };
  const points = (vs) => xs.map((x, i) => `${X(x)},${Y(vs[i])}`).join(" ");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("role", "img"); svg.setAttribute("id", "deletion-curve");
  svg.setAttribute("aria-label", `Deletion curve: f falls from ${fmt(ys[0], 2)} to ${fmt(ys[ys.length - 1], 2)} as the top-ranked units are removed`
    + (rd ? `; deletion AUC ${fmt(auc, 2)} against ${fmt(rd.auc, 2)} for random order.` : "."));
  add("line", { x1: L, x2: W - 8, y1: Y(0), y2: Y(0), stroke: "#8c959f", "stroke-width": 1 });
  if (rd) add("polyline", { id: "random-curve", points: points(rs), fill: "none", stroke: "#bc4c00", "stroke-width": 2, "stroke-dasharray": "5 3" });
  else add("line", { x1: X(0), x2: X(1), y1: Y(ys[0]), y2: Y(ys[ys.length - 1]), stroke: "#57606a", "stroke-dasharray": "4 3" });
  add("polyline", { points: points(ys), fill: "none", stroke: "#0969da", "stroke-width": 2 });
  add("text", { x: 2, y: Y(hi) + 4, "font-size": 10, fill: "#1f2328" }, fmt(hi, 1));
  add("text", { x: 2, y: Y(lo), "font-size": 10, fill: "#1f2328" }, fmt(lo, 1));
  add("text", { x: L, y: H - 6, "font-size": 10, fill: "#1f2328" }, "0%");
  add("text", { x: W - 30, y: H - 6, "font-size": 10, fill: "#1f2328" }, "100%");
  add("text", { x: L + 28, y: H - 6, "font-size": 10, fill: "#1f2328" }, "share of units removed");
  return el("figure", { class: "curve" }, svg, el("figcaption", { class: "dim",
    text: "f (nats) as units are removed. Blue: in the method's order (top first). " + (rd
      ? `Orange dashed: in random order (mean of ${rd.orders}); a faithful ranking falls below it.`
      : "Dashed: the straight line between no unit and all units removed; a faithful ranking falls below it early.") }));
}
function signedBar(v) {
  const w = Math.round(Math.min(1, Math.abs(v)) * 85);
  return el("div", { class: "signed", title: `${v >= 0 ? "+" : "−"}${fmt(Math.abs(v), 2)} of the largest` },
    el("div", { class: "half left" }, v < 0 ? el("span", { class: "bar neg", style: { width: w + "px" } }) : null),
    el("div", { class: "half" }, v >= 0 ? el("span", { class: "bar pos", style: { width: w + "px" } }) : null));
}

// ---------- logit lens ----------
renderers.lens = (doc) => {
  const out = clear($("out-lens"));
  const hasTarget = doc.target_id !== null && doc.target_id !== undefined;
  const mode = el("select", { id: "lens-colour" }, el("option", { value: "top", text: "probability of the top token" }),
    hasTarget ? el("option", { value: "target", text: `probability of ${visible(doc.target_token)}` }) : null);
  const holder = el("div", { class: "scrollx lens-scroll" });
  const detail = el("div", { class: "side", id: "lens-detail" }, el("p", { class: "dim", text: "Click a cell (or focus it and press Enter) for its top tokens." }));
  const draw = () => clear(holder).append(lensTable(doc, mode.value === "target", detail));
  mode.addEventListener("change", draw);
  draw();
  const cut = doc.input_tokens.length - doc.positions.length;
  out.append(...[el("h3", {}, "Logit lens of ", el("span", { class: "prompt-text", text: doc.prompt })),
    cut > 0 ? el("div", { class: "warn", id: "lens-cut", role: "note", text: `Showing the last ${doc.positions.length} of `
      + `${doc.input_tokens.length} positions (positions ${doc.positions[0]}–${doc.positions[doc.positions.length - 1]}); `
      + `the first ${cut} are not decoded (the limit per request).` }) : null,
    el("div", { class: "row controls" }, el("label", {}, "colour: ", mode)),
    el("div", { class: "layout" }, el("div", { class: "main" }, holder), detail),
    probLegend("cell: the top token decoded after that layer; last row = the model's output; last column (kept in view) = the prediction")]
    .filter(Boolean));
};
function lensTable(doc, byTarget, detail) {
  const tokens = doc.positions.map((p) => doc.input_tokens[p]);
  const table = el("table", { class: "heat sticky", id: "lens-grid" },
    el("tr", {}, el("th", { class: "rowh", text: "layer \\ position" }),
      tokens.map((t, i) => el("th", { scope: "col", text: visible(t), title: `position ${doc.positions[i]}` }))));
  doc.layers.forEach((layer) => table.append(el("tr", {}, el("th", { class: "rowh", scope: "row", text: layer.name }),
    layer.positions.map((cell, i) => {
      const top = cell.top[0];
      const title = cell.top.map((c) => `${visible(c.token)} ${pct(c.prob)}`).join("\n")
        + (cell.target_prob !== undefined ? `\ntarget ${pct(cell.target_prob)} (rank ${cell.target_rank})` : "");
      const p = probPaint(byTarget ? cell.target_prob : top.prob);
      // opaque (colour over white), so the sticky prediction column hides the cells scrolling under it
      const td = el("td", { style: { backgroundColor: "#fff", backgroundImage: `linear-gradient(${p.background},${p.background})`,
        color: p.color }, title, text: visible(top.token) });
      return actionable(td, () => {
        table.querySelectorAll("td.sel").forEach((x) => x.classList.remove("sel"));
        td.classList.add("sel");
        clear(detail).append(el("h4", {}, `${layer.name} · position ${doc.positions[i]} `, tok(tokens[i])),
          el("table", { class: "data", id: "lens-topk" }, el("tr", {}, ["token", "probability"].map((h) => el("th", { text: h }))),
            cell.top.map((c) => el("tr", {}, el("td", {}, tok(c.token, { paint: probPaint(c.prob) })), el("td", { class: "num", text: pct(c.prob) })))),
          cell.target_prob !== undefined ? el("p", { text: `target ${visible(doc.target_token)}: ${pct(cell.target_prob)} (rank ${cell.target_rank})` }) : null);
      });
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
    el("caption", { class: "dim", text: "ranked by |contribution|" }),
    el("tr", {}, ["component", "contribution", "lowers | raises"].map((h) => el("th", { text: h }))),
    top.map((p) => el("tr", {}, el("td", { text: p.name }), el("td", { class: "num", text: (p.value >= 0 ? "+" : "") + fmt(p.value) }),
      el("td", {}, signedBar(p.value / maxAbs)))));
  const cell = (v, open) => {
    const p = heatPaint(v / maxAbs);
    const td = el("td", { style: { background: p.background, color: p.color }, title: fmt(v, 4), text: fmt(v, 2) });
    return open ? actionable(td, open) : td;
  };
  const heads = Array.from({ length: doc.n_heads }, (_, h) => h);
  const value = (kind, l, h) => { const p = parts.find((x) => x.kind === kind && x.layer === l && (h === undefined || x.head === h)); return p ? p.value : 0; };
  const openHead = (l, h) => () => { $("attention-layer").value = String(l); state.attnHead = String(h); selectTab("attention"); run("attention"); };
  const grid = el("table", { class: "heat", id: "components-grid" },
    el("tr", {}, el("th", {}), heads.map((h) => el("th", { scope: "col", text: `H${h}` })), el("th", { scope: "col", text: "MLP" })),
    Array.from({ length: doc.n_layers }, (_, l) => el("tr", {}, el("th", { class: "rowh", scope: "row", text: `L${l}` }),
      heads.map((h) => cell(value("head", l, h), openHead(l, h))), cell(value("mlp", l)))));
  const neurons = (doc.neurons || []).slice(0, 10);
  const what = doc.foil_token ? [tok(doc.target_token), " − ", tok(doc.foil_token)] : [tok(doc.target_token)];
  out.append(el("h3", {}, "Direct logit attribution to ", what),
    el("div", { class: "stats" }, stat("total (parts sum)", fmt(doc.total)), stat("model logit", fmt(doc.logit)), stat("error", Number(doc.error).toExponential(1))),
    el("div", { class: "layout" }, el("div", { class: "main" }, bars),
      el("div", { class: "side scrollx" }, el("h4", { text: "Heads and MLPs by layer" }),
        el("p", { class: "dim", text: "Click a head to open its attention pattern and why it attends there." }), grid,
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
  const keep = state.attnHead ?? sel.value;
  state.attnHead = null;
  clear(sel).append(el("option", { value: "all", text: "all heads" }),
    ...doc.heads.map((h, i) => el("option", { value: String(i), text: h.name })));
  sel.value = [...sel.options].some((o) => o.value === keep) ? keep : "all";
  drawAttention();
};
function attnMatrix(m, hideSink) {   // hiding the first-token sink: drop column 0, rescale each row to its max
  if (!hideSink) return m;
  return m.map((row) => { const r = row.map((w, k) => (k === 0 ? 0 : w)); const mx = Math.max(1e-12, ...r); return r.map((w) => w / mx); });
}
function drawAttention() {
  const doc = state.attn;
  if (!doc) return;
  const out = clear($("out-attention"));
  const tokens = doc.input_tokens.slice(doc.offset);
  const choice = $("attention-head").value;
  const hideSink = $("attention-sink").checked;
  const shown = choice === "all" ? doc.heads.map((h, i) => [h, i]) : [[doc.heads[Number(choice)], Number(choice)]];
  const hover = el("div", { class: "hover", id: "attn-hover", "aria-live": "polite", text: "hover a cell: query → key" });
  const single = shown.length === 1;
  const figs = shown.map(([h, i]) => {
    const m = attnMatrix(h.pattern, hideSink);
    const canvas = attnCanvas(m, tokens, single ? Math.min(640, Math.max(320, tokens.length * 14)) : 180, hover, single, h.name);
    const fig = el("figure", {}, canvas, el("figcaption", { text: h.name + (h.importance === null || h.importance === undefined ? "" : ` · DLA ${fmt(h.importance)}`) }));
    if (!single) actionable(fig, () => { $("attention-head").value = String(i); drawAttention(); }).setAttribute("aria-label", `open ${h.name}`);
    return fig;
  });
  const heads = el("div", { class: "heads", id: "attention-heads" }, figs);
  const m = single ? attnMatrix(shown[0][0].pattern, hideSink) : null;
  const parts = [el("h3", {}, "Attention patterns", el("span", { class: "dim",
    text: ` · ${tokens.length} positions${doc.offset ? ` (the last ${tokens.length}; earlier keys cut)` : ""}` })),
  hover];
  const key = legend("attn", "0", hideSink ? "row max" : "1", "row: query position · column: key position" + (single ? "" : " · click a head to enlarge it"));
  if (single) parts.push(el("div", { class: "qk-layout" }, el("div", {}, heads, key), qkPanel(shown[0][0], m, tokens, doc.offset)));
  else parts.push(heads, key, el("p", { class: "dim", id: "attn-lines-hint", text: "Choose one head (the head menu above, or click a "
    + "thumbnail) for its line view, its QK attribution and its table of each query's strongest keys." }));
  if (single) parts.push(lineView(m, tokens, shown[0][0].name), attnTable(m, tokens, shown[0][0].name));
  out.append(...parts);
  if (single) qkOpen(shown[0][0]);   // beside the pattern: why the head attends where it does
}
function attnCanvas(m, tokens, px, hover, labelled, name) {
  const n = m.length;
  const margin = labelled ? 90 : 0;
  const cell = labelled ? Math.max(2, Math.floor(px / n)) : 1;
  const size = margin + n * cell;
  const c = el("canvas", { class: "attn", width: size * (labelled ? 2 : 1), height: size * (labelled ? 2 : 1), role: "img",
    "aria-label": `Attention of ${name}: ${n} query rows by ${n} key columns. The table below lists the strongest keys of each query.` });
  c.style.width = (labelled ? size : px) + "px"; c.style.height = (labelled ? size : px) + "px";
  const ctx = c.getContext("2d");
  if (labelled) ctx.scale(2, 2);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, size, size);
  for (let q = 0; q < n; q++) {
    for (let k = 0; k < n; k++) {
      const w = Math.max(0, Math.min(1, m[q][k] || 0));
      ctx.fillStyle = `rgb(${255 - 164 * w},${255 - 222 * w},${255 - 73 * w})`;
      ctx.fillRect(margin + k * cell, margin + q * cell, cell, cell);
    }
  }
  if (labelled && cell >= 7) {   // token labels on both axes (queries left, keys on top)
    ctx.fillStyle = "#1f2328"; ctx.font = `${Math.min(12, cell)}px monospace`; ctx.textBaseline = "middle";
    tokens.forEach((t, i) => {
      const label = visible(t).slice(0, 10);
      ctx.textAlign = "right"; ctx.fillText(label, margin - 4, margin + i * cell + cell / 2);
      ctx.save(); ctx.translate(margin + i * cell + cell / 2, margin - 4); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left"; ctx.fillText(label, 0, 0); ctx.restore();
    });
  }
  c.addEventListener("mousemove", (ev) => {
    const r = c.getBoundingClientRect();
    const scale = r.width / size;
    const q = Math.floor(((ev.clientY - r.top) / scale - margin) / cell); const k = Math.floor(((ev.clientX - r.left) / scale - margin) / cell);
    if (q >= 0 && q < n && k >= 0 && k < n) hover.textContent = `${visible(tokens[q])} (${q}) → ${visible(tokens[k])} (${k}): ${fmt(m[q][k])}`;
  });
  return c;
}
// ---------- attention line view ----------
// BertViz-style: queries in the left column, keys in the right, one line per (query, key) whose opacity is
// the attention weight. Hover or focus a token to keep only its lines; the arrow keys move between tokens
// (one tab stop for the whole view), and a live region reads the focused token's strongest links.
const LINE_MIN = 0.005;   // lighter links are not drawn
const LINE_MAX_PER_QUERY = 12;   // the strongest keys of each query only: long prompts stay light
function lineLinks(m) {   // [q, k, w] for each drawn line, strongest keys of each query first
  const links = [];
  m.forEach((row, q) => row.map((w, k) => [q, k, w]).filter((x) => x[2] >= LINE_MIN)
    .sort((a, b) => b[2] - a[2]).slice(0, LINE_MAX_PER_QUERY).forEach((x) => links.push(x)));
  return links;
}
function lineView(m, tokens, name) {
  const n = tokens.length;
  const row = n > 120 ? 12 : n > 48 ? 14 : 18; const font = row > 14 ? 12 : row - 3;
  const W = 460; const H = row * n + 6; const xq = 150; const xk = W - 150;
  const links = lineLinks(m);
  const NS = SVG_NS;
  const svg = document.createElementNS(NS, "svg");
  const add = (parent, tag, attrs, t) => { const x = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) x.setAttribute(k, v); if (t !== undefined) x.textContent = t; parent.append(x); return x; };
  for (const [k, v] of Object.entries({ width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "group",
    "aria-label": `Line view of ${name}: ${n} query tokens on the left, ${n} key tokens on the right; use the arrow keys to move between tokens, Enter to explain the score with QK attribution`,
    "aria-describedby": "attn-line-detail" })) svg.setAttribute(k, v);
  const mark = add(svg, "rect", { class: "line-mark", x: 0, y: 0, width: 0, height: row, rx: 3 });
  const g = add(svg, "g", { "aria-hidden": "true" });
  const lines = links.map(([q, k, w]) => add(g, "line", { x1: xq + 4, y1: q * row + row / 2 + 3, x2: xk - 4, y2: k * row + row / 2 + 3,
    stroke: "#5b21b6", "stroke-width": 1.6, "stroke-opacity": Math.min(1, w).toFixed(3), style: `--w:${Math.min(1, w).toFixed(3)}`,
    "data-q": q, "data-k": k }));
  const labels = { q: [], k: [] };
  tokens.forEach((t, i) => {
    const label = visible(t).slice(0, 14);
    for (const col of ["q", "k"]) {
      labels[col].push(add(svg, "text", { x: col === "q" ? xq : xk, y: i * row + row / 2 + 3 + font / 3, "font-size": font,
        "font-family": "monospace", "text-anchor": col === "q" ? "end" : "start", fill: "#1f2328", tabindex: "-1", role: "button",
        "aria-label": `${col === "q" ? "query" : "key"} ${i}: ${visible(t)}`, "data-col": col, "data-i": i }, label));
    }
  });
  const detail = el("p", { class: "hover", id: "attn-line-detail", "aria-live": "polite",
    text: `The ${LINE_MAX_PER_QUERY} strongest keys of each query (weights from ${LINE_MIN}). Hover or focus a token to keep only its lines.` });
  let active = state.attnLine && state.attnLine.i < n ? state.attnLine : { col: "q", i: n - 1 };
  labels[active.col][active.i].setAttribute("tabindex", "0");
  const show = (col, i) => {   // keep only the lines of one token, and say its strongest links in words
    active = { col, i }; state.attnLine = active;
    svg.classList.add("focusing");
    lines.forEach((ln) => ln.classList.toggle("on", Number(ln.dataset[col]) === i));
    for (const c of ["q", "k"]) labels[c].forEach((x, j) => { x.setAttribute("tabindex", c === col && j === i ? "0" : "-1"); x.classList.toggle("act", c === col && j === i); });
    const box = labels[col][i].getBBox();
    for (const [k, v] of Object.entries({ x: box.x - 3, y: box.y - 1, width: box.width + 6, height: box.height + 2 })) mark.setAttribute(k, v);
    const mine = col === "q" ? m[i].map((w, k) => [w, k]) : m.map((r, q) => [r[i] || 0, q]);
    const best = mine.filter((x) => x[0] > 0).sort((a, b) => b[0] - a[0]).slice(0, 3)
      .map(([w, j]) => `${j}: ${visible(tokens[j])} ${fmt(w, 2)}`).join(", ");
    detail.textContent = col === "q" ? `Query ${i} (${visible(tokens[i])}) attends most to ${best || "nothing drawn"}.`
      : `Key ${i} (${visible(tokens[i])}) is attended most by ${best || "no query"}.`;
  };
  const reset = () => { svg.classList.remove("focusing"); lines.forEach((ln) => ln.classList.remove("on"));
    mark.setAttribute("width", 0); Object.values(labels).flat().forEach((x) => x.classList.remove("act")); };
  svg.addEventListener("mouseover", (ev) => { const t = ev.target.closest("text"); if (t) show(t.dataset.col, Number(t.dataset.i)); });
  svg.addEventListener("mouseleave", () => { if (!svg.contains(document.activeElement)) reset(); });
  svg.addEventListener("click", (ev) => { const t = ev.target.closest("text");   // the same as Enter
    if (t) { t.focus(); t.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true })); } });
  svg.addEventListener("focusin", (ev) => { const t = ev.target.closest("text"); if (t) show(t.dataset.col, Number(t.dataset.i)); });
  svg.addEventListener("focusout", (ev) => { if (!svg.contains(ev.relatedTarget)) reset(); });
  svg.addEventListener("keydown", (ev) => {   // arrows move within a column, left/right switch columns
    const { col, i } = active;
    const to = { ArrowUp: [col, i - 1], ArrowDown: [col, i + 1], Home: [col, 0], End: [col, n - 1],
      ArrowLeft: ["q", i], ArrowRight: ["k", i], PageUp: [col, i - 10], PageDown: [col, i + 10] }[ev.key];
    if (ev.key === "Escape") { reset(); return; }
    if ((ev.key === "Enter" || ev.key === " ") && $("qk-query")) {   // explain this query's (or key's) score
      ev.preventDefault();
      const off = state.attn?.offset || 0; const qSel = $("qk-query"); const kSel = $("qk-key");
      if (col === "q") { qSel.value = String(off + i); qSel.dispatchEvent(new Event("change")); }
      else if (i <= Number(qSel.value) - off) kSel.value = String(off + i);
      $("qk-run").click();
      return;
    }
    if (!to) return;
    ev.preventDefault();
    const j = Math.max(0, Math.min(n - 1, to[1]));
    labels[to[0]][j].focus();
    show(to[0], j);
  });
  return el("div", { class: "lineview", id: "attn-lines" },
    el("h4", { text: `Line view of ${name}` }),
    el("p", { class: "dim", text: "Left: each query token (the position attending); right: each key token (attended to). "
      + "A line's opacity is the attention weight (a focused token's lines are drawn stronger). Hover a token, or Tab into the view and use the arrow keys "
      + "(← queries, → keys, Esc shows all), to keep only its lines; Enter (or a click) on a query explains its score "
      + "to its most attended key with QK attribution, on a key the score of the chosen query to it." }),
    el("div", { class: "lineview-cols dim", "aria-hidden": "true" }, el("span", { text: "queries" }), el("span", { text: "keys" })),
    el("div", { class: "lineview-scroll" }, svg), detail);
}
function attnTable(m, tokens, name) {   // the text alternative: each query's three strongest keys
  return el("details", { class: "attn-table" }, el("summary", { text: `Table: the strongest keys of each query (${name})` }),
    el("table", { class: "data", id: "attn-table" }, el("caption", { class: "dim", text: `attention of ${name}` }),
      el("tr", {}, ["query", "1st key", "2nd key", "3rd key"].map((h) => el("th", { scope: "col", text: h }))),
      tokens.map((t, q) => {
        const best = m[q].map((w, k) => [w, k]).sort((a, b) => b[0] - a[0]).slice(0, 3);
        return el("tr", {}, el("th", { scope: "row", text: `${q}: ${visible(t)}` }),
          best.map(([w, k]) => el("td", { text: `${k}: ${visible(tokens[k])} ${fmt(w, 2)}` })));
      })));
}

// ---------- QK attribution: why a head attends where it does ----------
// Opened below a single head's pattern: the query defaults to the last position and the key to the one the
// head attends to most from there (as drawn: with the sink hidden, the first token is left out).
function qkPanel(h, m, tokens, offset) {
  const qSel = el("select", { id: "qk-query" },
    tokens.map((t, i) => el("option", { value: String(offset + i), text: `${offset + i}: ${visible(t)}` })));
  const kSel = el("select", { id: "qk-key" });
  const fillKeys = () => {
    const q = Number(qSel.value) - offset;
    let best = 0;
    for (let k = 0; k <= q; k++) if ((m[q][k] || 0) > (m[q][best] || 0)) best = k;
    clear(kSel).append(...tokens.slice(0, q + 1).map((t, k) => el("option", { value: String(offset + k),
      text: `${offset + k}: ${visible(t)} · ${fmt(m[q][k], 2)}` })));
    kSel.value = String(offset + best);
  };
  qSel.value = String(offset + tokens.length - 1);
  fillKeys();
  qSel.addEventListener("change", fillKeys);
  const go = el("button", { type: "button", class: "run", id: "qk-run", text: "Explain the score" });
  go.addEventListener("click", () => runQK(h, Number(qSel.value), Number(kSel.value)));
  const out = el("div", { id: "qk-out", "aria-live": "polite" },
    el("p", { class: "dim", text: "Choose a query and a key, then explain the score." }));
  const last = state.qk;
  if (last && qkSame(last.body, h)) {   // redrawn (e.g. the sink toggle): keep the result on screen
    qSel.value = String(last.body.query); fillKeys(); kSel.value = String(last.body.key);
    drawQK(last.doc, out);
  }
  return el("section", { class: "qk", id: "qk-panel", "aria-labelledby": "qk-title" },
    el("h4", { id: "qk-title", text: `Why does ${h.name} attend there? QK attribution` }),
    el("p", { class: "dim", text: "The pre-softmax score split into pairs of upstream parts: one at the query "
      + "position, one at the key position (embeddings, earlier heads and MLPs, constant biases)." }),
    el("div", { class: "row controls" }, el("label", {}, "query ", qSel), el("label", {}, "key ", kSel), go), out);
}
const qkPrompt = () => (state.last.attention ? state.last.attention.body.prompt : prompt());
const qkSame = (body, h) => body.prompt === qkPrompt() && body.layer === h.layer && body.head === h.head;
function qkOpen(h) {   // a newly opened head: explain its default query and key at once
  if (state.qk && qkSame(state.qk.body, h)) return;
  if (state.pending) return;   // the button stays there to run it later
  $("qk-run").click();
}
async function runQK(h, query, key) {
  if (state.pending) { $("status-text").textContent = "still working: wait, or Cancel first"; return; }
  hideError();
  const body = { prompt: qkPrompt(), layer: h.layer, head: h.head, query, key };
  try {
    const doc = await api("qk", body);
    state.qk = { body, doc };
    if ($("qk-out")) drawQK(doc, $("qk-out"));
  } catch (e) {
    if (e.name !== "AbortError") showError(e, "attention");
  }
}
function qkTop(doc, side, n) {   // the n sources with the largest pairs on one side, in model order
  const best = new Map();
  for (const p of doc.parts) {
    const s = p[side];
    best.set(s, Math.max(best.get(s) || 0, Math.abs(p.value)));
  }
  const keep = new Set([...best.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([s]) => s));
  return doc.sources.filter((s) => keep.has(s));
}
function drawQK(doc, out) {
  const at = (p) => `${visible(doc.tokens[p])} (pos ${p})`;
  const top = doc.parts[0];
  const maxAbs = Math.max(1e-12, Math.abs(top.value));
  const value = new Map(doc.parts.map((p) => [`${p.query_source}|${p.key_source}`, p.value]));
  const rows = qkTop(doc, "query_source", 10); const cols = qkTop(doc, "key_source", 10);
  const cell = (v) => { const c = heatPaint(v / maxAbs); return el("td", { style: { background: c.background, color: c.color }, title: fmt(v, 4), text: fmt(v, 2) }); };
  const grid = el("table", { class: "heat", id: "qk-grid" },
    el("caption", { class: "dim", text: `rows: query sources at ${at(doc.query)} · columns: key sources at ${at(doc.key)}`
      + (doc.sources.length > rows.length ? ` · the ${rows.length} sources with the largest pairs on each side` : "") }),
    el("tr", {}, el("th", { scope: "col", text: "query \\ key" }), cols.map((c) => el("th", { scope: "col", text: c }))),
    rows.map((r) => el("tr", {}, el("th", { class: "rowh", scope: "row", text: r }), cols.map((c) => cell(value.get(`${r}|${c}`) || 0)))));
  const pairs = el("table", { class: "data", id: "qk-pairs" },
    el("caption", { class: "dim", text: "pairs ranked by |contribution|" }),
    el("tr", {}, ["#", "query source", "key source", "contribution", "lowers | raises"].map((t) => el("th", { scope: "col", text: t }))),
    doc.parts.slice(0, 12).map((p, i) => el("tr", {}, el("td", { class: "num", text: String(i + 1) }), el("td", { text: p.query_source }),
      el("td", { text: p.key_source }), el("td", { class: "num", text: (p.value >= 0 ? "+" : "") + fmt(p.value) }),
      el("td", {}, signedBar(p.value / maxAbs)))));
  const sides = el("table", { class: "data", id: "qk-sides" },
    el("caption", { class: "dim", text: "each side summed over the other" }),
    el("tr", {}, ["query source", "sum", "key source", "sum"].map((t) => el("th", { scope: "col", text: t }))),
    doc.query_marginals.slice(0, 6).map((a, i) => { const b = doc.key_marginals[i];
      return el("tr", {}, el("td", { text: a.source }), el("td", { class: "num", text: fmt(a.value) }),
        el("td", { text: b ? b.source : "" }), el("td", { class: "num", text: b ? fmt(b.value) : "" })); }));
  const capped = doc.softcap ? " (before soft-capping)" : "";
  clear(out).append(
    el("p", { class: "qk-headline", id: "qk-headline", text: `The score of L${doc.layer}.H${doc.head} attending from ${at(doc.query)} to `
      + `${at(doc.key)} is ${fmt(doc.score)}${capped} (attention weight ${fmt(doc.probability)}); the largest pair is `
      + `${top.query_source} at the query with ${top.key_source} at the key (${top.value >= 0 ? "+" : ""}${fmt(top.value)}).` }),
    el("div", { class: "stats" }, stat("score", fmt(doc.score)), stat("attention weight", fmt(doc.probability)),
      stat("error (parts − score)", Number(doc.error).toExponential(1))),
    doc.error > 1e-3 * Math.abs(doc.score) ? el("div", { class: "warn", id: "qk-warning", role: "note",
      text: `The pairs miss the real score by ${Number(doc.error).toExponential(1)}, more than float32 rounding: `
        + "the model runs in low precision (e.g. bfloat16), so read small pairs with care." }) : null,
    el("div", { class: "layout" }, el("div", { class: "main scrollx" }, grid), el("div", { class: "side" }, sides)),
    legend("signed", `−${fmt(maxAbs, 2)}`, `+${fmt(maxAbs, 2)}`, "red raises the score (more attention), blue lowers it"),
    pairs, el("p", { class: "dim", text: doc.linearisation }));
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
      row.map((v) => { const c = heatPaint(v / maxAbs); return el("td", { style: { background: c.background, color: c.color }, title: fmt(v, 4), text: fmt(v, 2) }); }))));
  const what = doc.foil_token ? [tok(doc.target_token), " − ", tok(doc.foil_token)] : [tok(doc.target_token)];
  const how = doc.method === "causal_trace" ? `causal tracing (restoring ${doc.component})` : `${doc.method} patching of ${doc.component}`;
  out.append(el("h3", {}, `${how} · ${doc.metric} of `, what),
    el("div", { class: "stats" }, stat("clean", fmt(doc.clean)), stat("corrupted", fmt(doc.corrupted)),
      doc.spearman !== null && doc.spearman !== undefined ? stat("rank corr. with activation patching", fmt(doc.spearman)) : null),
    el("div", { class: "scrollx" }, table),
    legend("signed", `−${fmt(maxAbs, 1)}`, `+${fmt(maxAbs, 1)}`, "share of the clean − corrupted difference restored (1 = all)"));
};

// ---------- page setup ----------
const TABS = () => [...document.querySelectorAll("#tabs [role=tab]")];
function selectTab(tab, focus = false) {
  state.tab = tab;
  TABS().forEach((b) => {
    const on = b.dataset.tab === tab;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
    if (on && focus) b.focus();
  });
  document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.id !== `panel-${tab}`; });
  $("sampling").style.display = tab === "generate" || tab === "samples" ? "" : "none";
  hideError();
}
function tabKeys(ev) {   // WAI-ARIA tabs: arrows, Home and End move between tabs
  const tabs = TABS();
  const i = tabs.findIndex((b) => b.dataset.tab === state.tab);
  const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
  if (to === undefined) return;
  ev.preventDefault();
  selectTab(tabs[(to + tabs.length) % tabs.length].dataset.tab, true);
}
async function init() {
  TABS().forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  $("tabs").addEventListener("keydown", tabKeys);
  document.querySelectorAll("button.run").forEach((b) => b.addEventListener("click", () => run(b.dataset.run)));
  document.querySelectorAll("button.report").forEach((b) => b.addEventListener("click", () => saveReport(b.dataset.report)));
  $("cancel").addEventListener("click", () => { if (state.pending) state.pending.abort(); });
  $("attention-head").addEventListener("change", drawAttention);
  $("attention-sink").addEventListener("change", drawAttention);
  // one target and one foil for the whole page: typing in any tab's field updates the others
  document.querySelectorAll("input[data-shared]").forEach((inp) => inp.addEventListener("input", () => {
    document.querySelectorAll(`input[data-shared="${inp.dataset.shared}"]`).forEach((o) => { if (o !== inp) o.value = inp.value; });
  }));
  const count = () => { $("prompt-count").textContent = `${$("prompt").value.length} characters`; };
  $("prompt").addEventListener("input", count); count();
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(state.tab); }
  });
  selectTab("predict");
  try {
    const info = await (await fetch("/api/info", { credentials: "same-origin" })).json();
    state.info = info;
    $("model-info").textContent = `${info.model} · ${info.n_layers} layers · ${info.n_heads} heads · context ${info.n_ctx} tokens`;
    $("prompt").maxLength = info.limits.prompt_chars;
    const layerSel = $("attention-layer");
    for (let l = 0; l < info.n_layers; l++) layerSel.append(el("option", { value: String(l), text: `L${l}` }));
    const methods = info.explain_methods && info.explain_methods.length ? info.explain_methods : ["integrated_gradients"];
    methods.forEach((m) => $("explain-method").append(el("option", { value: m, text: methodName(m) })));
    if (methods.includes("integrated_gradients")) $("explain-method").value = "integrated_gradients";
    (info.runs || []).forEach((r) => $("training-run").append(el("option", { value: r, text: r })));
    if (!(info.runs || []).length) document.querySelector('[data-run="training"]').disabled = true;
    if (!info.adapter) document.querySelector('[data-run="tuning"]').disabled = true;
  } catch (e) { showError(e); }
  $("explain-method").addEventListener("change", syncExplainControls);
  syncExplainControls();
  document.body.dataset.ready = "1";
}
document.addEventListener("DOMContentLoaded", init);

// outloop dashboard. Every piece of data reaches the page through textContent or an
// attribute set with setAttribute, never parsed as markup: run data is written by agents.
"use strict";

const ui = {
  csrf: null,
  runs: [],
  selected: null,
  detail: null,
  diffIteration: null,
  loading: false,
  reloadAgain: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function money(value) {
  if (value === null || value === undefined) return "–";
  return "$" + Number(value).toFixed(value < 1 ? 4 : 2);
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  const s = Number(value);
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}

function age(value) {
  if (value === null || value === undefined) return "–";
  const s = Number(value);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 129600) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function orDash(value) {
  return value === null || value === undefined || value === "" ? "–" : value;
}

function shortId(id) {
  // run ids are <date>-<time>-<random>: the time and the random part tell runs apart
  const parts = String(id).split("-");
  return parts.length === 3 ? parts[1] + "-" + parts[2] : String(id);
}

function baseName(path) {
  const parts = String(path || "").split("/").filter(Boolean);
  return parts.length ? parts[parts.length - 1] : "";
}

function stateCell(state) {
  return el("span", state, "state-" + String(state).replace(/[^a-z_]/g, ""));
}

function verdictCell(verdict) {
  if (!verdict) return el("span", "–", "muted");
  return el("span", verdict, verdict === "pass" ? "pass" : "fail");
}

// -- the run list -----------------------------------------------------------------

function renderRuns() {
  const body = $("run-list").querySelector("tbody");
  body.replaceChildren();
  $("no-runs").hidden = ui.runs.length > 0;
  for (const run of ui.runs) {
    const row = document.createElement("tr");
    row.dataset.runId = run.id;
    if (run.id === ui.selected) row.className = "selected";
    const idCell = el("td", shortId(run.id), "mono");
    idCell.title = (run.repo || "") + " — " + run.id;
    const repoCell = el("td", baseName(run.repo) + (run.workspace ? " · " + run.workspace : ""));
    repoCell.title = run.repo || "";
    row.append(idCell, repoCell, el("td", run.loop));
    const state = el("td");
    state.append(stateCell(run.state));
    if (run.stop_detail && (run.state === "gone" || run.state === "unreadable")) state.title = run.stop_detail;
    row.append(state);
    const iter = run.max_iterations ? run.iteration + "/" + run.max_iterations : run.iteration;
    row.append(el("td", orDash(iter)));
    const goal = el("td");
    goal.append(verdictCell(run.goal));
    row.append(goal, el("td", orDash(run.failing)), el("td", money(run.cost_usd)), el("td", age(run.age)));
    row.addEventListener("click", () => select(run.id));
    body.append(row);
  }
}

function select(runId) {
  if (ui.selected !== runId) {
    ui.selected = runId;
    ui.detail = null;
    ui.diffIteration = null;
    $("diff").hidden = true;
    $("action-result").textContent = "";
    history.replaceState(null, "", "#run=" + encodeURIComponent(runId));
  }
  renderRuns();
  loadDetail();
}

// -- one run ------------------------------------------------------------------------

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

async function loadDetail() {
  if (!ui.selected) return;
  if (ui.loading) {
    ui.reloadAgain = true;
    return;
  }
  ui.loading = true;
  try {
    const runId = ui.selected;
    const detail = await getJSON("/api/runs/" + encodeURIComponent(runId));
    if (runId === ui.selected) {
      ui.detail = detail;
      renderDetail();
      if (ui.diffIteration !== null) loadDiff(ui.diffIteration, false);
    }
  } catch (error) {
    $("action-result").textContent = "could not load the run: " + error.message;
  } finally {
    ui.loading = false;
    if (ui.reloadAgain) {
      ui.reloadAgain = false;
      loadDetail();
    }
  }
}

function fact(list, name, value) {
  list.append(el("dt", name), el("dd", orDash(value)));
}

function renderDetail() {
  const d = ui.detail;
  const s = d.summary;
  $("detail").hidden = false;
  $("detail").dataset.runId = s.id;
  $("detail").dataset.state = s.state;
  $("run-title").textContent = s.loop + " · " + s.id;
  const badge = $("run-state");
  badge.textContent = s.state + (s.phase ? " (" + s.phase + ")" : "");
  badge.className = "badge state-" + String(s.state).replace(/[^a-z_]/g, "");

  const facts = $("run-facts");
  facts.replaceChildren();
  fact(facts, "repository", s.repo);
  if (s.workspace) fact(facts, "workspace", s.workspace);
  fact(facts, "branch", s.branch);
  fact(facts, "agent", s.agent);
  fact(facts, "goal", s.goal_label);
  fact(facts, "iteration", s.max_iterations ? s.iteration + " of " + s.max_iterations : s.iteration);
  fact(facts, "cost", money(s.cost_usd));
  fact(facts, "tokens", s.tokens);
  fact(facts, "running for", seconds(s.duration));
  if (s.stop_reason) fact(facts, "stopped", s.stop_reason + (s.stop_detail ? ": " + s.stop_detail : ""));
  if (s.awaiting) {
    fact(facts, "waiting for", s.awaiting + (s.awaiting_gate ? " (gate: " + s.awaiting_gate + ")" : ""));
    fact(facts, "times out at", s.awaiting_until);
  }

  renderButtons(s);
  renderChart(d.iterations);
  renderIterations(d.iterations);
  $("final-message").textContent = d.final_message || "(no message yet)";
  $("goal-tail-title").textContent = d.goal_tail
    ? "Goal output (tail, iteration " + d.goal_tail.iteration + ")"
    : "Goal output (tail)";
  $("goal-tail").textContent = d.goal_tail ? d.goal_tail.text || "(empty)" : "(not run yet)";
  renderAudit(d.audit);
}

function setButton(id, enabled, why) {
  const button = $(id);
  button.disabled = !enabled;
  button.title = enabled ? "" : why || "";
}

function renderButtons(s) {
  const live = s.state === "running" || s.state === "waiting_approval";
  const waiting = s.state === "waiting_approval";
  const met = s.stop_reason === "goal_met";
  const readable = s.state !== "gone" && s.state !== "unreadable";
  const resumable = ["crashed", "stopped", "finished"].includes(s.state) && !met;
  setButton("btn-stop", live, "the run is not running");
  setButton("btn-resume", resumable, met ? "the run met its goal" : "only a stopped, finished or crashed run resumes");
  setButton("btn-approve", waiting, "the run is not waiting for an approval");
  setButton("btn-deny", waiting, "the run is not waiting for an approval");
  setButton("btn-say", readable && !met, met ? "the run met its goal and takes no more turns" : "the run cannot be read");
  $("deny-reason").disabled = $("btn-deny").disabled;
  $("steer-text").disabled = $("btn-say").disabled;
  $("deny-reason").title = $("btn-deny").title;
  $("steer-text").title = $("btn-say").title;
}

function renderIterations(iterations) {
  const body = $("iterations").querySelector("tbody");
  body.replaceChildren();
  for (const it of iterations) {
    const row = document.createElement("tr");
    row.dataset.n = it.n;
    if (it.n === ui.diffIteration) row.className = "selected";
    row.append(el("td", it.n === 0 ? "base" : it.n));
    row.append(el("td", it.commit ? it.commit.slice(0, 10) : "–", "mono"));
    const verdict = el("td");
    verdict.append(verdictCell(it.verdict));
    row.append(verdict);
    const failing = el("td", orDash(it.failing));
    if (it.failing_names && it.failing_names.length) failing.title = it.failing_names.join("\n");
    row.append(failing, el("td", it.changed_files), el("td", seconds(it.duration)));
    row.append(el("td", money(it.cost_usd)), el("td", orDash(it.tokens)));
    const note = !it.finished ? "in progress" : it.agent_error ? "agent: " + it.agent_error : it.goal_summary || "";
    const noteCell = el("td", note, "wrap muted");
    // a judged goal: each criterion the judge failed, with its reason
    for (const c of it.criteria || []) {
      if (!c.met) noteCell.append(el("div", "✗ " + c.criterion + ": " + c.reason, "criterion"));
    }
    row.append(noteCell);
    if (it.commit) {
      row.addEventListener("click", () => loadDiff(it.n, true));
      row.title = "show this iteration's diff";
    }
    body.append(row);
  }
}

// -- the chart: failing tests (left axis) and cumulative cost (right axis) ------------

function renderChart(iterations) {
  const chart = $("chart");
  chart.replaceChildren();
  const W = 640, H = 200, left = 44, right = 56, top = 16, bottom = 30;
  const points = [];
  let cost = 0;
  for (const it of iterations) {
    if (!it.finished) continue;
    if (it.cost_usd !== null && it.cost_usd !== undefined) cost += Number(it.cost_usd);
    points.push({ n: it.n, failing: it.failing, cost: cost });
  }
  chart.append(svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W - right, y2: H - bottom }));
  chart.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: H - bottom }));
  chart.append(svg("line", { class: "axis", x1: W - right, y1: top, x2: W - right, y2: H - bottom }));
  if (points.length === 0) {
    chart.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no iterations yet"));
    return;
  }
  const maxN = Math.max(1, ...points.map((p) => p.n));
  const maxFailing = Math.max(1, ...points.map((p) => p.failing || 0));
  const maxCost = Math.max(0.0001, ...points.map((p) => p.cost));
  const x = (n) => left + ((W - left - right) * n) / maxN;
  const yF = (v) => H - bottom - ((H - top - bottom) * v) / maxFailing;
  const yC = (v) => H - bottom - ((H - top - bottom) * v) / maxCost;
  for (const frac of [0.5, 1]) {
    const y = H - bottom - (H - top - bottom) * frac;
    chart.append(svg("line", { class: "grid", x1: left, y1: y, x2: W - right, y2: y }));
    chart.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, Math.round(maxFailing * frac)));
    chart.append(svg("text", { x: W - right + 6, y: y + 4 }, money(maxCost * frac)));
  }
  chart.append(svg("text", { x: left - 6, y: H - bottom + 4, "text-anchor": "end" }, "0"));
  const step = Math.max(1, Math.ceil(maxN / 12));
  for (let n = 0; n <= maxN; n += step) {
    chart.append(svg("text", { x: x(n), y: H - bottom + 16, "text-anchor": "middle" }, n));
  }
  chart.append(svg("text", { x: (W - right + left) / 2, y: H - 2, "text-anchor": "middle" }, "iteration"));
  const known = points.filter((p) => p.failing !== null && p.failing !== undefined);
  if (known.length) {
    chart.append(svg("polyline", { class: "failing", points: known.map((p) => x(p.n) + "," + yF(p.failing)).join(" ") }));
    for (const p of known) chart.append(svg("circle", { class: "dot-failing", cx: x(p.n), cy: yF(p.failing), r: 3 }));
  }
  chart.append(svg("polyline", { class: "cost", points: points.map((p) => x(p.n) + "," + yC(p.cost)).join(" ") }));
  for (const p of points) chart.append(svg("circle", { class: "dot-cost", cx: x(p.n), cy: yC(p.cost), r: 2.5 }));
  chart.append(svg("rect", { x: left + 8, y: top - 10, width: 10, height: 3, fill: "#cf222e" }));
  chart.append(svg("text", { x: left + 22, y: top - 5 }, "failing tests"));
  chart.append(svg("rect", { x: left + 118, y: top - 10, width: 10, height: 3, fill: "#0969da" }));
  chart.append(svg("text", { x: left + 132, y: top - 5 }, "cost so far"));
}

// -- an iteration's diff ------------------------------------------------------------

async function loadDiff(n, toggle) {
  if (toggle && ui.diffIteration === n && !$("diff").hidden) {
    ui.diffIteration = null;
    $("diff").hidden = true;
    renderIterations(ui.detail.iterations);
    return;
  }
  ui.diffIteration = n;
  renderIterations(ui.detail.iterations);
  try {
    const diff = await getJSON("/api/runs/" + encodeURIComponent(ui.selected) + "/iterations/" + n + "/diff");
    renderDiff(diff);
  } catch (error) {
    $("action-result").textContent = "could not load the diff: " + error.message;
  }
}

function renderDiff(diff) {
  $("diff").hidden = false;
  $("diff-title").textContent = "Iteration " + diff.n + (diff.commit ? " · " + diff.commit.slice(0, 12) : "");
  const files = $("diff-files");
  files.replaceChildren();
  for (const f of diff.files || []) {
    const item = el("li");
    item.append(el("span", f.status + " ", "mono"), el("span", f.path, "mono"));
    files.append(item);
  }
  const patch = $("diff-patch");
  patch.replaceChildren();
  if (diff.error) {
    patch.textContent = diff.error;
    return;
  }
  for (const line of (diff.patch || "").split("\n")) {
    let cls = "";
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ") || line.startsWith("index ")) cls = "meta";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    else if (line.startsWith("@@")) cls = "hunk";
    patch.append(el("span", line + "\n", cls));
  }
  if (diff.truncated) patch.append(el("span", "… (cut; `git show` has the rest)\n", "meta"));
}

// -- audit --------------------------------------------------------------------------

function renderAudit(events) {
  const body = $("audit").querySelector("tbody");
  body.replaceChildren();
  for (const e of (events || []).slice().reverse()) {
    const row = document.createElement("tr");
    const decision = Object.entries(e.fields || {}).map(([k, v]) => k + "=" + v).join("  ");
    row.append(el("td", orDash(e.seq)), el("td", orDash(e.time), "mono"), el("td", e.event), el("td", decision, "wrap"));
    body.append(row);
  }
}

// -- actions ------------------------------------------------------------------------

function awaitedRequest() {
  const s = ui.detail && ui.detail.summary;
  return s && s.awaiting_id ? s.awaiting_id : null;
}

async function act(action, text) {
  const runId = ui.selected;
  const result = $("action-result");
  result.textContent = action + "…";
  result.dataset.ok = "";
  try {
    const response = await fetch("/api/runs/" + encodeURIComponent(runId) + "/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Outloop-CSRF": ui.csrf },
      // approve and deny answer the request this page showed, never one that came after it
      body: JSON.stringify({ text: text || "", request: awaitedRequest() }),
    });
    let message = response.status + "";
    try {
      message = (await response.json()).message;
    } catch (ignored) {
      // a refusal from the guard is plain text
    }
    result.textContent = message;
    result.dataset.ok = response.ok ? "true" : "false";
    return response.ok;
  } catch (error) {
    result.textContent = action + " failed: " + error.message;
    result.dataset.ok = "false";
    return false;
  }
}

function wireButtons() {
  $("btn-stop").addEventListener("click", () => act("stop"));
  $("btn-resume").addEventListener("click", () => act("resume"));
  $("btn-approve").addEventListener("click", () => act("approve"));
  $("btn-deny").addEventListener("click", async () => {
    const reason = $("deny-reason").value.trim();
    if (!reason) {
      $("action-result").textContent = "a denial needs a reason";
      $("action-result").dataset.ok = "false";
      return;
    }
    if (await act("deny", reason)) $("deny-reason").value = "";
  });
  $("btn-say").addEventListener("click", async () => {
    const text = $("steer-text").value.trim();
    if (!text) return;
    if (await act("say", text)) $("steer-text").value = "";
  });
}

// -- live updates: one EventSource; the server says what changed --------------------

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    $("conn").textContent = "live";
    $("conn").dataset.state = "live";
  });
  source.addEventListener("error", () => {
    $("conn").textContent = "disconnected (retrying)";
    $("conn").dataset.state = "lost";
  });
  source.addEventListener("runs", (event) => {
    const data = JSON.parse(event.data);
    ui.runs = data.runs;
    if (!ui.selected && ui.runs.length) {
      const wanted = new URLSearchParams(location.hash.slice(1)).get("run");
      ui.selected = ui.runs.some((r) => r.id === wanted) ? wanted : ui.runs[0].id;
      ui.detail = null;
    }
    renderRuns();
    if (ui.selected && (ui.detail === null || data.changed.includes(ui.selected))) loadDetail();
  });
}

async function start() {
  wireButtons();
  const session = await getJSON("/api/session");
  ui.csrf = session.csrf;
  $("repos").textContent = session.repos && session.repos.length ? session.repos.join(" · ") : "every run on this machine";
  connect();
}

document.addEventListener("DOMContentLoaded", start);

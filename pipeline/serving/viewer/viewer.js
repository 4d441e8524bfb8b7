// omnistitch viewer: plain JavaScript over the profile API (no build step, no dependencies).
// The token stays in this tab's sessionStorage; a link may carry #token=…&q=… (tests, demos).
"use strict";

const state = { token: "", customer: null, cursor: null };
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function say(text) { $("status").textContent = text || ""; }

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, {
    ...(options || {}),
    headers: { Authorization: "Bearer " + state.token, "Content-Type": "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok && response.status !== 202) {
    throw new Error(body.error || ("HTTP " + response.status));
  }
  return body;
}

function when(value) { return value ? String(value).replace("T", " ").slice(0, 19) : ""; }

// ---- search -------------------------------------------------------------------------------
async function find(query) {
  query = query.trim();
  if (!query) return;
  say("");
  try {
    let profile;
    if (query.startsWith("cus-")) {
      profile = await api("/v1/customers/" + encodeURIComponent(query));
    } else {
      const at = query.indexOf(":");
      if (at < 1) throw new Error("type namespace:value (email:…, phone:…) or a customer id");
      const params = new URLSearchParams({ namespace: query.slice(0, at), value: query.slice(at + 1) });
      profile = await api("/v1/lookup?" + params);
    }
    await show(profile);
  } catch (error) {
    $("customer").hidden = true;
    say(error.message);
  }
}

async function show(profile) {
  state.customer = profile.customer_id;
  $("kpis").hidden = true;
  $("customer").hidden = false;
  renderProfile(profile);
  $("journey").replaceChildren();
  state.cursor = null;
  await Promise.all([loadGraph(), loadJourney(), loadMatches()]);
  document.body.setAttribute("data-loaded", profile.customer_id);
}

// ---- profile ------------------------------------------------------------------------------
function renderProfile(p) {
  $("customer-id").textContent = p.customer_id;
  $("summary").textContent =
    `${p.event_count} events · channels: ${(p.channels || []).join(", ")} · ` +
    `first seen ${when(p.first_seen)} · last seen ${when(p.last_seen)} · version ${p.version}`;
  const traits = $("traits").tBodies[0];
  traits.replaceChildren();
  for (const [name, value] of Object.entries(p.traits || {})) {
    if (value === null || value === "") continue;
    const origin = (p.trait_origins || {})[name] || {};
    const row = el("tr", { "data-trait": name });
    row.append(el("td", {}, name), el("td", {}, value), el("td", {}, origin.source || ""),
               el("td", {}, when(origin.observed_at)));
    traits.append(row);
  }
  const ids = $("identifiers");
  ids.replaceChildren();
  for (const [namespace, values] of Object.entries(p.identifiers || {})) {
    ids.append(el("dt", {}, namespace), el("dd", { "data-namespace": namespace }, values.join(", ")));
  }
  const consent = $("consent").tBodies[0];
  consent.replaceChildren();
  for (const [purpose, statement] of Object.entries(p.consent_statements || {})) {
    const row = el("tr", { "data-purpose": purpose });
    row.append(el("td", {}, purpose), el("td", {}, statement.granted ? "yes" : "no"),
               el("td", {}, statement.source), el("td", {}, when(statement.stated_at)));
    consent.append(row);
  }
  const totals = Object.entries(p.order_totals || {}).map(([c, v]) => `${v} ${c}`).join(", ");
  $("orders").textContent = `${p.order_count} orders` + (totals ? ` · ${totals}` : "");
  $("merged").textContent = (p.merged_ids || []).join(", ") || "none";
  renderActivity(p.computed);
}

function renderActivity(c) {
  const box = $("activity");
  box.replaceChildren();
  if (!c) { box.append(el("dd", {}, "not computed yet")); return; }
  const money = (m) => Object.entries(m || {}).map(([cur, v]) => `${v} ${cur}`).join(", ") || "–";
  const rows = [
    ["revenue to date", money(c.revenue)],
    ["average order", money(c.average_order_value)],
    ["last order", c.last_order_at ? when(c.last_order_at) : "–"],
    ["preferred channel", c.preferred_channel || "–"],
    ["preferred store", c.preferred_store || "–"],
    ["click & collect orders", c.click_and_collect_orders],
    ["open support cases", c.open_cases ? `${c.open_cases} since ${when(c.open_case_since)}` : "none"],
    ["recently viewed", (c.recently_viewed || []).join(", ") || "–"],
    ["abandoned cart", (c.abandoned_cart || []).join(", ") || "none"],
  ];
  for (const [label, value] of rows) {
    box.append(el("dt", {}, label), el("dd", { "data-activity": label }, value));
  }
}

// ---- identity graph -----------------------------------------------------------------------
async function loadGraph() {
  const graph = await api(`/v1/customers/${state.customer}/graph`);
  drawGraph(graph);
}

function drawGraph(graph) {
  const svg = $("graph");
  svg.replaceChildren();
  const cx = 320, cy = 240;
  const customers = graph.nodes.filter((n) => n.kind === "customer" && n.id !== graph.root);
  const identifiers = graph.nodes.filter((n) => n.kind === "identifier");
  identifiers.sort((a, b) => (a.namespace + a.label).localeCompare(b.namespace + b.label));
  const at = { [graph.root]: [cx, cy] };
  customers.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, customers.length);
    at[n.id] = [cx + 95 * Math.cos(a), cy + 95 * Math.sin(a)];
  });
  identifiers.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, identifiers.length) + 0.3;
    at[n.id] = [cx + 200 * Math.cos(a), cy + 200 * Math.sin(a)];
  });
  for (const edge of graph.edges) {
    const [x1, y1] = at[edge.source] || [cx, cy];
    const [x2, y2] = at[edge.target] || [cx, cy];
    const rule = edge.kind === "refused" || edge.kind === "possible_match" ? edge.kind : (edge.rule || edge.kind);
    const line = el("svg:line", {
      x1, y1, x2, y2, class: `edge ${rule}`, "data-kind": edge.kind, "data-rule": edge.rule || "",
    });
    line.append(el("svg:title", {}, `${edge.kind} (${edge.rule || ""})` + (edge.score !== null ? ` score ${edge.score}` : "")));
    line.addEventListener("click", () => {
      svg.querySelectorAll(".edge.selected").forEach((e) => e.classList.remove("selected"));
      line.classList.add("selected");
      $("evidence").textContent = JSON.stringify(
        { kind: edge.kind, rule: edge.rule, score: edge.score, count: edge.count, evidence: edge.evidence }, null, 2);
    });
    svg.append(line);
  }
  for (const node of graph.nodes) {
    const [x, y] = at[node.id] || [cx, cy];
    const classes = ["node", node.kind];
    if (node.quarantined) classes.push("quarantined");
    const g = el("svg:g", { class: classes.join(" "), "data-id": node.id, transform: `translate(${x},${y})` });
    g.append(el("svg:circle", { r: node.kind === "customer" ? 9 : 6 }));
    g.append(el("svg:text", { x: 10, y: 4 }, node.label));
    svg.append(g);
  }
}

// ---- journey ------------------------------------------------------------------------------
async function loadJourney() {
  const params = new URLSearchParams({ limit: "50" });
  if (state.cursor) params.set("before", state.cursor);
  const page = await api(`/v1/customers/${state.customer}/journey?` + params);
  const list = $("journey");
  for (const item of page.events) {
    const e = item.event;
    const li = el("li", { class: "journey-event" + (item.channel_switch ? " switch" : ""), "data-channel": e.channel });
    li.textContent = `${when(e.occurred_at)} · ${e.channel} · ${e.event_type} · ${e.source}` +
      (item.channel_switch ? ` (from ${item.previous_channel})` : "");
    list.append(li);
  }
  state.cursor = page.next;
  $("more").hidden = !page.next;
  drawTimeline();
}

function drawTimeline() {
  const items = [...document.querySelectorAll("#journey .journey-event")];
  const svg = $("timeline");
  svg.replaceChildren();
  const channels = [...new Set(items.map((li) => li.dataset.channel))].sort();
  svg.setAttribute("height", String(20 + 18 * channels.length));
  const times = items.map((li) => Date.parse(li.textContent.slice(0, 19).replace(" ", "T") + "Z"));
  const lo = Math.min(...times), hi = Math.max(...times);
  channels.forEach((channel, row) => {
    svg.append(el("svg:text", { x: 0, y: 14 + 18 * row, "font-size": 11 }, channel));
  });
  items.forEach((li, i) => {
    const row = channels.indexOf(li.dataset.channel);
    const x = 110 + (hi > lo ? ((times[i] - lo) / (hi - lo)) * 870 : 435);
    svg.append(el("svg:circle", { cx: x, cy: 10 + 18 * row, r: 4, class: "touch", fill: "#3a7be8" }));
  });
}

// ---- possible matches ---------------------------------------------------------------------
async function loadMatches() {
  const found = await api(`/v1/customers/${state.customer}/possible-matches`);
  const list = $("matches");
  list.replaceChildren();
  if (!found.possible_matches.length) list.append(el("li", {}, "none"));
  for (const match of found.possible_matches) {
    const t = match.traits || {};
    const li = el("li", { class: "match", "data-customer": match.customer_id },
      `${match.customer_id} · ${[t.first_name, t.last_name, t.city].filter(Boolean).join(" ")}` +
      ` · ${match.event_count || 0} events`);
    for (const kind of ["accept", "reject"]) {
      const button = el("button", { type: "button", "data-decision": kind }, kind);
      button.addEventListener("click", () => decide(kind, match.customer_id));
      li.append(button);
    }
    list.append(li);
  }
}

async function decide(kind, other) {
  try {
    const result = await api("/v1/operations", {
      method: "POST",
      body: JSON.stringify({ kind, left: state.customer, right: other, reason: "viewer review" }),
    });
    say(`${kind}: ${result.status}${result.detail ? " (" + result.detail + ")" : ""}`);
  } catch (error) {
    say(error.message);
  }
}

// ---- KPIs ---------------------------------------------------------------------------------
function bars(title, values, format) {
  const entries = Object.entries(values).sort((a, b) => b[1] - a[1]).slice(0, 10);
  const box = el("div", { class: "kpi-chart", "data-chart": title });
  box.append(el("h3", {}, title));
  const svg = el("svg:svg", { width: 420, height: 22 * entries.length + 4 });
  const top = Math.max(1e-9, ...entries.map(([, v]) => v));
  entries.forEach(([label, value], i) => {
    svg.append(el("svg:text", { x: 0, y: 15 + 22 * i, "font-size": 11 }, label.slice(0, 26)));
    svg.append(el("svg:rect", { x: 170, y: 4 + 22 * i, height: 15, width: Math.max(1, (value / top) * 180) }));
    svg.append(el("svg:text", { x: 355, y: 15 + 22 * i, "font-size": 11 }, format ? format(value) : value));
  });
  box.append(svg);
  return box;
}

async function showKpis() {
  say("");
  try {
    const k = await api("/v1/kpis");
    $("customer").hidden = true;
    $("kpis").hidden = false;
    const figures = $("kpi-figures");
    figures.replaceChildren();
    const pct = (v) => (100 * v).toFixed(1) + " %";
    const shown = [
      ["customers", k.customers], ["events", k.events],
      ["cross-channel orders", pct(k.cross_channel_conversion.share)],
      ["identified sessions", pct(k.identification.rate || 0)],
      ["NPS", k.nps.responses ? k.nps.score.toFixed(1) : "–"],
    ];
    if (k.stitching_accuracy && k.stitching_accuracy.f1 !== undefined) {
      shown.push(["stitching F1", k.stitching_accuracy.f1.toFixed(3)]);
    }
    for (const [label, value] of shown) {
      const box = el("div", { class: "figure", "data-figure": label });
      box.append(el("b", {}, value), document.createTextNode(label));
      figures.append(box);
    }
    const charts = $("kpi-charts");
    charts.replaceChildren();
    const attribution = k.attribution || {};
    const model = attribution.linear || Object.values(attribution)[0];
    if (model) charts.append(bars("revenue by channel (linear attribution)", model.revenue, (v) => v.toFixed(0)));
    charts.append(bars("conversion rate by channel mix", k.cross_channel_conversion.conversion_rate_by_mix, pct));
    charts.append(bars("lifetime value by first channel", k.clv_by_first_channel, (v) => v.toFixed(0)));
    const switches = {};
    for (const s of k.channel_switches || []) switches[`${s.from} → ${s.to}`] = s.count;
    charts.append(bars("channel switches", switches));
    document.body.setAttribute("data-kpis", "yes");
  } catch (error) {
    say(error.message);
  }
}

// ---- start --------------------------------------------------------------------------------
$("search").addEventListener("submit", (e) => { e.preventDefault(); find($("query").value); });
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value;
  sessionStorage.setItem("omnistitch-token", state.token);
  $("token").value = "";
  say("token set");
});
$("show-kpis").addEventListener("click", showKpis);
$("more").addEventListener("click", loadJourney);

(async () => {
  const params = new URLSearchParams(location.hash.slice(1));
  state.token = params.get("token") || sessionStorage.getItem("omnistitch-token") || "";
  if (params.get("token")) {
    sessionStorage.setItem("omnistitch-token", state.token);
    history.replaceState(null, "", location.pathname + (params.get("q") ? "#q=" + encodeURIComponent(params.get("q")) : ""));
  }
  if (params.get("q")) {
    $("query").value = params.get("q");
    await find(params.get("q"));
  } else if (params.get("view") === "kpis") {
    await showKpis();
  }
  document.body.setAttribute("data-ready", "yes");
})();

// dagger_wf dashboard: the tree, the history table, one state, a comparison.
// Read-only. Every value from the store goes through esc() (or textContent) before it
// reaches the page. Served, the data comes from /api/...; in a report file, from the
// embedded <script id="dagger-data">.
"use strict";

(function () {
  const STATUSES = ["done", "cached", "failed", "running", "superseded"];
  const ROW = 24; // px per leaf row in the tree
  const COLUMN = 400; // px per tree level
  const BOX = 360; // px of a node's box
  const CHARS = 49; // of a label that fit in a box (12px monospace)
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  const ui = {
    tree: null, // the tree view: {version, nodes, metrics, directory}
    byKey: new Map(),
    children: new Map(),
    collapsed: new Set(),
    showSuperseded: false,
    query: "",
    colourBy: "status",
    picked: [], // keys chosen for the comparison
    picking: false,
  };

  // ------------------------------------------------------------ data

  let bundle = null; // a report's embedded data; null when served

  async function api(path) {
    if (bundle) {
      const parts = path.split("/");
      if (path === "/api/tree") return bundle.tree;
      if (path === "/api/history") return bundle.history;
      if (parts[2] === "state") return bundle.states[parts[3]] || null;
      if (parts[2] === "snapshot") return (bundle.snapshots[parts[3]] || {})[parts[4]] || null;
      return null;
    }
    const response = await fetch(path, { cache: "no-store" });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return response.json();
  }

  function esc(value) {
    return String(value === null || value === undefined ? "" : value)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function setTree(tree) {
    ui.tree = tree;
    ui.byKey = new Map(tree.nodes.map((node) => [node.key, node]));
    ui.children = new Map();
    for (const node of tree.nodes) {
      const parent = ui.byKey.has(node.parent) ? node.parent : null;
      if (!ui.children.has(parent)) ui.children.set(parent, []);
      ui.children.get(parent).push(node);
    }
  }

  function shown(node) {
    return node.current || ui.showSuperseded;
  }

  // ------------------------------------------------------------ filters

  // The patterns of NodeSet.filter: a fnmatch glob on tags ("lr:*"), "!glob" for states
  // with no matching tag, combined with & (both) and | (either; & binds first).
  function globRegex(glob) {
    let out = "";
    for (let i = 0; i < glob.length; i++) {
      const c = glob[i];
      if (c === "*") out += ".*";
      else if (c === "?") out += ".";
      else if (c === "[") {
        const end = glob.indexOf("]", i + 2);
        if (end < 0) { out += "\\["; continue; }
        let set = glob.slice(i + 1, end).replace(/\\/g, "\\\\");
        if (set[0] === "!") set = "^" + set.slice(1);
        else if (set[0] === "^") set = "\\" + set;
        out += `[${set}]`;
        i = end;
      } else out += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
    }
    return new RegExp(`^${out}$`, "s");
  }

  function parseQuery(text) {
    return text.split("|").map((term) => term.split("&").map((raw) => {
      const pattern = raw.trim();
      if (!pattern || pattern === "!") {
        throw new Error(`an empty pattern in "${text}": write a tag or glob on each side of & and |`);
      }
      const negated = pattern.startsWith("!");
      return { negated, regex: globRegex(negated ? pattern.slice(1) : pattern) };
    }));
  }

  function matcher(text) {
    if (!text.trim()) return null;
    const terms = parseQuery(text);
    return (node) => terms.some((term) => term.every(({ negated, regex }) =>
      negated !== node.tags.some((tag) => regex.test(tag))));
  }

  // ------------------------------------------------------------ colours

  function viridis(t) {
    const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
    const f = x - i;
    const mix = VIRIDIS[i].map((c, j) => Math.round(c + f * (VIRIDIS[i + 1][j] - c)));
    return `rgb(${mix.join(",")})`;
  }

  function metricRange(name) {
    const values = ui.tree.nodes.map((node) => node.metrics[name])
      .filter((value) => typeof value === "number");
    return values.length ? [Math.min(...values), Math.max(...values)] : null;
  }

  // ------------------------------------------------------------ the tree

  function layout() {
    // Leaves take a row each, a parent sits at the middle of its visible children.
    const placed = [];
    let row = 0;
    const place = (node, depth) => {
      const kids = ui.collapsed.has(node.key) ? [] :
        (ui.children.get(node.key) || []).filter(shown);
      const item = { node, depth, y: 0, kids: [], hidden: 0 };
      placed.push(item);
      for (const child of kids) item.kids.push(place(child, depth + 1));
      item.hidden = (ui.children.get(node.key) || []).filter(shown).length - kids.length;
      if (item.kids.length) {
        item.y = (item.kids[0].y + item.kids[item.kids.length - 1].y) / 2;
      } else item.y = row++ * ROW;
      return item;
    };
    for (const root of (ui.children.get(null) || []).filter(shown)) place(root, 0);
    return { placed, rows: row };
  }

  function nodeTitle(node) {
    const properties = Object.entries(node.properties).map(([k, v]) => `${k}=${v}`).join(", ");
    const metrics = Object.entries(node.metrics).map(([k, v]) => `${k}=${v}`).join(", ");
    return [`${node.step}`, `status: ${node.status}`, `key: ${node.key}`,
      `recipe: ${node.recipe || "(root)"}`, `properties: ${properties || "-"}`,
      `tags: ${node.tags.join(", ") || "-"}`, `metrics: ${metrics || "-"}`].join("\n");
  }

  function nodeFill(node, range) {
    if (ui.colourBy === "status" || !range) return null;
    const value = node.metrics[ui.colourBy];
    if (typeof value !== "number") return "#ffffff";
    return viridis(range[1] > range[0] ? (value - range[0]) / (range[1] - range[0]) : 0.5);
  }

  function drawTree() {
    const holder = document.getElementById("tree");
    if (!holder) return;
    const { placed, rows } = layout();
    const range = ui.colourBy === "status" ? null : metricRange(ui.colourBy);
    const depth = placed.reduce((most, item) => Math.max(most, item.depth), 0);
    const width = (depth + 1) * COLUMN + 20;
    const height = Math.max(rows, 1) * ROW + 20;
    const edges = [];
    const boxes = [];
    for (const item of placed) {
      const x = item.depth * COLUMN + 10;
      const y = item.y + 10;
      for (const kid of item.kids) {
        const kx = kid.depth * COLUMN + 10;
        const ky = kid.y + 10;
        const mid = (x + BOX + 14 + kx) / 2;
        edges.push(`M${x + BOX + 14},${y + 9}C${mid},${y + 9} ${mid},${ky + 9} ${kx},${ky + 9}`);
      }
      const node = item.node;
      const status = node.current ? node.status : "superseded";
      const fill = nodeFill(node, range);
      const own = node.own_tags.length ? `  · ${node.own_tags.join(", ")}` : "";
      const label = `${node.short}  ${node.step}${own}`;
      const kids = (ui.children.get(node.key) || []).filter(shown).length;
      const toggle = kids ? `<g class="toggle" data-toggle="${esc(node.key)}" ` +
        `transform="translate(${x},${y})">` +
        `<circle cx="${BOX + 8}" cy="9" r="6"></circle>` +
        `<text x="${BOX + 8}" y="13" text-anchor="middle">${item.hidden ? "+" : "−"}</text></g>` : "";
      boxes.push(
        `<g class="node s-${status}" data-key="${esc(node.key)}" data-status="${status}" ` +
        `transform="translate(${x},${y})">` +
        `<rect width="${BOX}" height="18" rx="3"${fill ? ` fill="${fill}"` : ""}></rect>` +
        `<text x="5" y="13">${esc(label.length > CHARS ? label.slice(0, CHARS - 1) + "…" : label)}</text>` +
        `</g>${toggle}`);
    }
    const mode = ui.colourBy === "status" ? "by-status" : "by-metric";
    holder.innerHTML = `<svg id="tree-svg" class="${mode}" width="${width}" height="${height}" ` +
      `xmlns="http://www.w3.org/2000/svg"><path class="edges" d="${edges.join("")}"></path>` +
      `${boxes.join("")}</svg>`;
    applyFilter();
    markPicked();
  }

  function applyFilter() {
    const message = document.getElementById("filter-message");
    let match = null;
    try {
      match = matcher(ui.query);
      if (message) message.textContent = "";
    } catch (error) {
      if (message) message.textContent = error.message;
      return;
    }
    let count = 0;
    let total = 0;
    for (const element of document.querySelectorAll("#tree-svg .node")) {
      const node = ui.byKey.get(element.dataset.key);
      const hit = match ? match(node) : false;
      element.classList.toggle("match", Boolean(match) && hit);
      element.classList.toggle("dim", Boolean(match) && !hit);
    }
    if (match) {
      for (const node of ui.tree.nodes) {
        if (!shown(node)) continue;
        total += 1;
        if (match(node)) count += 1;
      }
    }
    const counter = document.getElementById("match-count");
    if (counter) counter.textContent = match ? `${count} of ${total} states match` : "";
  }

  function markPicked() {
    for (const element of document.querySelectorAll("#tree-svg .node")) {
      element.classList.toggle("picked", ui.picked.includes(element.dataset.key));
    }
    const link = document.getElementById("compare-link");
    link.textContent = `Compare (${ui.picked.length})`;
    link.href = `#/compare/${ui.picked.join(",")}`;
  }

  function pick(key) {
    ui.picked = ui.picked.includes(key) ? ui.picked.filter((k) => k !== key) : [...ui.picked, key];
    markPicked();
  }

  function legend() {
    if (ui.colourBy === "status") {
      return STATUSES.map((status) =>
        `<span class="legend-item"><svg width="14" height="14"><rect class="swatch s-${status}" ` +
        `width="14" height="14" rx="2"></rect></svg>${status}</span>`).join("");
    }
    const range = metricRange(ui.colourBy);
    if (!range) return "no state has this metric";
    const stops = [0, 0.25, 0.5, 0.75, 1].map((t) =>
      `<svg width="18" height="14"><rect width="18" height="14" fill="${viridis(t)}"></rect></svg>`);
    return `${esc(ui.colourBy)}: ${esc(range[0].toPrecision(4))} ${stops.join("")} ` +
      `${esc(range[1].toPrecision(4))}; white: not measured`;
  }

  function treeView(view) {
    const options = ["status", ...ui.tree.metrics].map((name) =>
      `<option value="${esc(name)}"${name === ui.colourBy ? " selected" : ""}>` +
      `${name === "status" ? "status" : "metric " + esc(name)}</option>`).join("");
    const counts = {};
    for (const node of ui.tree.nodes) {
      const status = node.current ? node.status : "superseded";
      counts[status] = (counts[status] || 0) + 1;
    }
    const summary = STATUSES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(", ");
    view.innerHTML = `
      <div class="toolbar">
        <label>Filter <input id="filter" size="34" spellcheck="false"
          placeholder="pruned & lr:* | !pruned" value="${esc(ui.query)}"></label>
        <span id="match-count"></span>
        <label>Colour by <select id="colour-by">${options}</select></label>
        <label><input type="checkbox" id="show-superseded"${ui.showSuperseded ? " checked" : ""}>
          show superseded</label>
        <label><input type="checkbox" id="picking"${ui.picking ? " checked" : ""}>
          click picks states to compare</label>
        <button id="expand-all">Expand all</button>
        <button id="collapse-all">Collapse to roots' children</button>
      </div>
      <div class="toolbar"><span id="legend">${legend()}</span>
        <span class="note" id="tree-summary">${esc(summary)}</span>
        <span class="error" id="filter-message"></span></div>
      <div id="tree"></div><div id="tip" class="tip" hidden></div>`;
    document.getElementById("filter").addEventListener("input", (event) => {
      ui.query = event.target.value;
      applyFilter();
    });
    document.getElementById("colour-by").addEventListener("change", (event) => {
      ui.colourBy = event.target.value;
      document.getElementById("legend").innerHTML = legend();
      drawTree();
    });
    document.getElementById("show-superseded").addEventListener("change", (event) => {
      ui.showSuperseded = event.target.checked;
      drawTree();
    });
    document.getElementById("picking").addEventListener("change", (event) => {
      ui.picking = event.target.checked;
    });
    document.getElementById("expand-all").addEventListener("click", () => {
      ui.collapsed.clear();
      drawTree();
    });
    document.getElementById("collapse-all").addEventListener("click", () => {
      for (const root of ui.children.get(null) || []) {
        for (const child of ui.children.get(root.key) || []) {
          if (ui.children.has(child.key)) ui.collapsed.add(child.key);
        }
      }
      drawTree();
    });
    // One tooltip for every node (a <title> each would double the tree's elements).
    const tip = document.getElementById("tip");
    document.getElementById("tree").addEventListener("mouseover", (event) => {
      const element = event.target.closest(".node");
      if (!element) { tip.hidden = true; return; }
      tip.textContent = nodeTitle(ui.byKey.get(element.dataset.key));
      tip.dataset.key = element.dataset.key;
      tip.hidden = false;
    });
    document.getElementById("tree").addEventListener("mousemove", (event) => {
      const right = event.clientX + 14 + tip.offsetWidth > window.innerWidth;
      const below = event.clientY + 14 + tip.offsetHeight > window.innerHeight;
      tip.style.left = `${right ? event.clientX - 14 - tip.offsetWidth : event.clientX + 14}px`;
      tip.style.top = `${below ? event.clientY - 14 - tip.offsetHeight : event.clientY + 14}px`;
    });
    document.getElementById("tree").addEventListener("mouseleave", () => { tip.hidden = true; });
    document.getElementById("tree").addEventListener("click", (event) => {
      const toggle = event.target.closest(".toggle");
      if (toggle) {
        const key = toggle.dataset.toggle;
        if (ui.collapsed.has(key)) ui.collapsed.delete(key); else ui.collapsed.add(key);
        drawTree();
        return;
      }
      const element = event.target.closest(".node");
      if (!element) return;
      if (ui.picking || event.shiftKey) pick(element.dataset.key);
      else location.hash = `#/state/${element.dataset.key}`;
    });
    drawTree();
  }

  // ------------------------------------------------------------ plots

  function niceTicks(low, high, count) {
    if (low === high) { low -= 1; high += 1; }
    const step0 = (high - low) / count;
    const power = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= step0);
    const ticks = [];
    for (let t = Math.ceil(low / step) * step; t <= high + step * 1e-9; t += step) {
      ticks.push(Number(t.toPrecision(12)));
    }
    return ticks;
  }

  // series: [{label, points: [[step, value], ...]}]; one SVG line per series.
  function lineChart(title, series) {
    const W = 560, H = 260, L = 60, R = 16, T = 26, B = 36;
    const points = series.flatMap((s) => s.points);
    if (!points.length) return `<p class="note">${esc(title)}: no values</p>`;
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]).filter((v) => typeof v === "number");
    const [x0, x1] = [Math.min(...xs), Math.max(...xs) === Math.min(...xs) ? Math.min(...xs) + 1 : Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const pad = (y1 - y0) * 0.05; // no point on the frame
    y0 -= pad; y1 += pad;
    const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
    const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
    const grid = niceTicks(y0, y1, 5).filter((t) => t >= y0 && t <= y1).map((t) =>
      `<line class="grid" x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}"></line>` +
      `<text class="tick" x="${L - 6}" y="${sy(t) + 4}" text-anchor="end">${esc(t)}</text>`).join("");
    const xticks = niceTicks(x0, x1, 6).filter((t) => t >= x0 && t <= x1).map((t) =>
      `<text class="tick" x="${sx(t)}" y="${H - B + 16}" text-anchor="middle">${esc(t)}</text>`).join("");
    const lines = series.map((s, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const valid = s.points.filter((p) => typeof p[1] === "number");
      const d = valid.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
      const dots = valid.length < 60 ? valid.map((p) =>
        `<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" fill="${colour}">` +
        `<title>${esc(s.label)}: step ${esc(p[0])}, ${esc(p[1])}</title></circle>`).join("") : "";
      return `<path class="series" d="${d}" stroke="${colour}"></path>${dots}`;
    }).join("");
    const keys = series.map((s, i) =>
      `<span class="legend-item"><svg width="18" height="10"><line x1="0" x2="18" y1="5" y2="5" ` +
      `stroke="${PALETTE[i % PALETTE.length]}" stroke-width="3"></line></svg>${esc(s.label)}</span>`);
    return `<figure class="chart"><svg class="plot" width="${W}" height="${H}" data-series="${series.length}">` +
      `<text class="chart-title" x="${L}" y="16">${esc(title)}</text>${grid}${xticks}` +
      `<text class="tick" x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle">step</text>` +
      `${lines}</svg><figcaption>${keys.join("")}</figcaption></figure>`;
  }

  // ------------------------------------------------------------ one state

  function table(rows) {
    return `<table class="facts">${rows.map(([name, value]) =>
      `<tr><th>${esc(name)}</th><td>${esc(value)}</td></tr>`).join("")}</table>`;
  }

  function stateFacts(state) {
    const facts = [["key", state.key], ["status", state.status], ["step", state.step],
      ["recipe", state.recipe ? `${state.module}.${state.recipe}` : "(root)"]];
    for (const [name, value] of Object.entries(state.recipe_properties)) {
      facts.push([`recipe ${name}`, JSON.stringify(value)]);
    }
    for (const [name, value] of Object.entries(state.properties)) {
      facts.push([`property ${name}`, JSON.stringify(value)]);
    }
    facts.push(["tags", state.tags.join(", ")], ["seed", state.seed], ["started", state.started],
      ["duration (s)", state.duration_s], ["host", state.host], ["runner", state.runner],
      ["run", state.run_id], ["payload bytes", state.payload_bytes]);
    for (const [name, series] of Object.entries(state.metrics)) {
      if (series.length) facts.push([`metric ${name}`, `${series[series.length - 1][1]} (${series.length} steps)`]);
    }
    return facts;
  }

  function link(key, withStep = true) {
    const node = ui.byKey.get(key);
    const text = node && withStep ? `${node.short} ${node.step}` : String(key).slice(0, 12);
    return `<a href="#/state/${esc(key)}" data-key="${esc(key)}">${esc(text)}</a>`;
  }

  async function stateView(view, key) {
    const full = resolveKey(key);
    const state = full ? await api(`/api/state/${full}`) : null;
    if (!state) {
      view.innerHTML = `<p class="error">No state has a key starting with ${esc(key)}.</p>`;
      return;
    }
    const [code, environment] = await Promise.all([
      state.code ? api(`/api/snapshot/code/${state.code}`) : null,
      state.environment ? api(`/api/snapshot/environments/${state.environment}`) : null,
    ]);
    const children = (ui.children.get(state.key) || []).map((node) => `<li>${link(node.key)}</li>`);
    const charts = Object.entries(state.metrics).filter(([, s]) => s.length)
      .map(([name, s]) => lineChart(name, [{ label: ui.byKey.get(state.key)?.short || state.key, points: s }]));
    const attempts = state.attempts.map((attempt, i) =>
      `<section class="attempt"><h4>Failed attempt ${i + 1}: ${esc(attempt.error_type)} ` +
      `<span class="note">${esc(attempt.started)} on ${esc(attempt.host)} (${esc(attempt.runner)})</span></h4>` +
      `<pre class="traceback">${esc(attempt.error)}</pre></section>`).join("");
    view.innerHTML = `
      <h2>State ${esc(state.key.slice(0, 12))} <span class="badge s-${esc(state.status)}">${esc(state.status)}</span></h2>
      <p><button id="pick-this">${ui.picked.includes(state.key) ? "Remove from" : "Add to"} comparison</button>
        <span class="note">dagger-wf show ${esc(ui.tree.directory)} ${esc(state.key.slice(0, 12))}</span></p>
      <div class="columns"><div>${table(stateFacts(state))}</div>
      <div><h3>Parent</h3><p>${state.parent ? link(state.parent) : "(a root)"}</p>
      <h3>Children</h3><ul>${children.join("") || "<li>none</li>"}</ul></div></div>
      <h3>Metrics</h3>${charts.join("") || '<p class="note">none recorded</p>'}
      ${attempts ? `<h3>Failures</h3>${attempts}` : ""}
      <h3>Code</h3>${code ? `<p class="note">${esc(code.recipe || "")}</p><pre class="code">${esc(code.recipe_source || "(no source)")}</pre>` : '<p class="note">not recorded</p>'}
      <h3>Environment</h3>${environment ? table(Object.entries(environment.rows)) : '<p class="note">not recorded</p>'}`;
    document.getElementById("pick-this").addEventListener("click", (event) => {
      pick(state.key);
      event.target.textContent = `${ui.picked.includes(state.key) ? "Remove from" : "Add to"} comparison`;
    });
  }

  function resolveKey(prefix) {
    if (ui.byKey.has(prefix)) return prefix;
    const matches = ui.tree.nodes.filter((node) => node.key.startsWith(prefix));
    return matches.length === 1 ? matches[0].key : null;
  }

  // ------------------------------------------------------------ compare

  function sideBySide(title, names, columns) {
    // columns: one {name: value} per state; rows whose values differ are marked.
    const rows = names.map((name) => {
      const values = columns.map((column) => column[name]);
      const differs = new Set(values.map((v) => JSON.stringify(v === undefined ? null : v))).size > 1;
      return `<tr class="${differs ? "differs" : "same"}"><th>${esc(name)}</th>${values.map((v) =>
        `<td>${esc(v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v))}</td>`).join("")}</tr>`;
    });
    return `<h3>${esc(title)}</h3><table class="compare">${rows.join("")}</table>`;
  }

  // The lines of one source, those no other source has marked (a diff at a glance).
  function markedLines(source, others) {
    const seen = new Set(others.flatMap((other) => other.split("\n")));
    return source.split("\n").map((line) =>
      `<span class="line${seen.has(line) ? "" : " changed"}">${esc(line)}</span>`).join("\n");
  }

  async function compareView(view, list) {
    const keys = list.split(",").filter(Boolean).map(resolveKey);
    if (keys.length < 2 || keys.some((key) => !key)) {
      view.innerHTML = `<p class="note">Pick two states or more to compare: tick "click picks states
        to compare" on the tree, or rows of the history table. The page's address names them,
        so a comparison can be linked.</p>`;
      return;
    }
    ui.picked = keys;
    markPicked();
    const states = await Promise.all(keys.map((key) => api(`/api/state/${key}`)));
    const codes = await Promise.all(states.map((s) => s.code ? api(`/api/snapshot/code/${s.code}`) : null));
    const environments = await Promise.all(states.map((s) =>
      s.environment ? api(`/api/snapshot/environments/${s.environment}`) : null));
    const label = (state) => `${state.key.slice(0, 12)} ${ui.byKey.get(state.key)?.step || ""}`;
    const metricNames = [...new Set(states.flatMap((s) => Object.keys(s.metrics)))].sort();
    const charts = metricNames.map((name) => lineChart(name, states
      .filter((s) => s.metrics[name] && s.metrics[name].length)
      .map((s) => ({ label: label(s), points: s.metrics[name] }))));
    const facts = states.map((s) => Object.fromEntries(stateFacts(s)));
    const factNames = [...new Set(facts.flatMap((f) => Object.keys(f)))];
    const envs = environments.map((e) => (e ? e.rows : {}));
    const envNames = [...new Set(envs.flatMap((e) => Object.keys(e)))].sort();
    const sources = codes.map((c) => (c ? c.recipe_source || "" : ""));
    const codeDiffers = new Set(sources).size > 1;
    view.innerHTML = `
      <h2>Comparing ${states.length} states</h2>
      <p>${states.map((s) => link(s.key)).join(" · ")}</p>
      <h3>Metrics</h3>${charts.join("") || '<p class="note">none recorded</p>'}
      ${sideBySide("Parameters", factNames, facts)}
      <h3>Code ${codeDiffers ? '<span class="badge differs">differs</span>' : '<span class="note">(same)</span>'}</h3>
      <div class="code-columns">${sources.map((source, i) =>
        `<div><p class="note">${esc(label(states[i]))}</p><pre class="code${codeDiffers ? " differs" : ""}">${
          source ? markedLines(source, sources.filter((_, j) => j !== i)) : "(not recorded)"}</pre></div>`).join("")}</div>
      ${sideBySide("Environment", envNames, envs)}`;
  }

  // ------------------------------------------------------------ history

  const history = { rows: null, sort: "started", descending: false, text: "" };

  async function historyView(view) {
    history.rows = await api("/api/history");
    const first = ["key", "parent", "recipe", "status", "current", "tags", "started", "finished",
      "duration_s", "host", "runner", "seed", "error_type"];
    const columns = [...new Set([...first, ...history.rows.flatMap((row) => Object.keys(row))])]
      .filter((name) => history.rows.some((row) => row[name] !== undefined && row[name] !== null));
    view.innerHTML = `
      <div class="toolbar"><label>Filter rows <input id="history-filter" size="30"
        placeholder="any text, e.g. failed or lr" value="${esc(history.text)}"></label>
        <button id="compare-rows">Compare ticked rows</button>
        <span class="note" id="row-count"></span></div>
      <div class="scroll"><table id="history" class="history"><thead><tr><th></th>${columns.map((name) =>
        `<th data-column="${esc(name)}">${esc(name)}</th>`).join("")}</tr></thead><tbody></tbody></table></div>`;
    const render = () => {
      const text = history.text.toLowerCase();
      const rows = history.rows.filter((row) =>
        !text || columns.some((name) => String(row[name] ?? "").toLowerCase().includes(text)));
      const sign = history.descending ? -1 : 1;
      rows.sort((a, b) => {
        const x = a[history.sort], y = b[history.sort];
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * sign;
      });
      view.querySelector("tbody").innerHTML = rows.map((row) => `<tr class="s-${esc(row.status)}">` +
        `<td><input type="checkbox" data-key="${esc(row.key)}"${ui.picked.includes(row.key) ? " checked" : ""}></td>` +
        columns.map((name) => name === "key" || name === "parent"
          ? `<td>${row[name] ? link(row[name], false) : ""}</td>`
          : `<td>${esc(row[name] ?? "")}</td>`).join("") + "</tr>").join("");
      for (const th of view.querySelectorAll("th[data-column]")) {
        th.classList.toggle("sorted", th.dataset.column === history.sort);
        th.classList.toggle("descending", th.dataset.column === history.sort && history.descending);
      }
      document.getElementById("row-count").textContent = `${rows.length} of ${history.rows.length} attempts`;
    };
    view.querySelector("thead").addEventListener("click", (event) => {
      const th = event.target.closest("th[data-column]");
      if (!th) return;
      history.descending = history.sort === th.dataset.column ? !history.descending : false;
      history.sort = th.dataset.column;
      render();
    });
    document.getElementById("history-filter").addEventListener("input", (event) => {
      history.text = event.target.value;
      render();
    });
    view.querySelector("tbody").addEventListener("change", (event) => {
      if (event.target.dataset.key) pick(event.target.dataset.key);
    });
    document.getElementById("compare-rows").addEventListener("click", () => {
      location.hash = `#/compare/${ui.picked.join(",")}`;
    });
    render();
  }

  // ------------------------------------------------------------ routing and live updates

  async function route() {
    const view = document.getElementById("view");
    const [, name = "", argument = ""] = location.hash.replace(/^#/, "").split("/");
    for (const a of document.querySelectorAll("nav a")) {
      a.classList.toggle("active", a.dataset.view === (name || "tree"));
    }
    try {
      if (name === "state") await stateView(view, decodeURIComponent(argument));
      else if (name === "compare") await compareView(view, decodeURIComponent(argument));
      else if (name === "history") await historyView(view);
      else treeView(view);
    } catch (error) {
      view.innerHTML = `<p class="error">${esc(error.message)}</p>`;
    }
    document.body.dataset.ready = "true";
  }

  async function poll() {
    try {
      const { version } = await api("/api/version");
      if (version === ui.tree.version) return;
      const tree = await api("/api/tree");
      const sameShape = tree.nodes.length === ui.tree.nodes.length &&
        tree.nodes.every((node) => ui.byKey.has(node.key));
      setTree(tree);
      document.getElementById("live").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      if (!document.getElementById("tree")) return;
      if (!sameShape) { drawTree(); return; }
      for (const element of document.querySelectorAll("#tree-svg .node")) {
        const node = ui.byKey.get(element.dataset.key);
        const status = node.current ? node.status : "superseded";
        if (element.dataset.status !== status) {
          element.classList.remove(`s-${element.dataset.status}`);
          element.classList.add(`s-${status}`);
          element.dataset.status = status;
        }
      }
    } catch (error) {
      document.getElementById("live").textContent = "server unreachable";
    }
  }

  async function start() {
    const embedded = document.getElementById("dagger-data");
    bundle = embedded ? JSON.parse(embedded.textContent) : null;
    setTree(await api("/api/tree"));
    document.getElementById("directory").textContent = ui.tree.directory;
    document.getElementById("live").textContent = bundle ? "report (a snapshot)" : "live";
    window.addEventListener("hashchange", route);
    await route();
    if (!bundle) setInterval(poll, 1000);
  }

  document.addEventListener("DOMContentLoaded", start);
})();

// The leaderboard site of bench (bench site): one page, routed by the URL's hash, drawn from
// window.BENCH_SITE (data.js). Text from the records is only ever set as text (never as HTML), so a
// method name or note holding markup is shown, not run.
"use strict";
(function () {
  const DATA = window.BENCH_SITE || { rows: [], compare: {} };
  const ROWS = DATA.rows;
  const BY_ID = new Map(ROWS.map((r) => [r.id, r]));
  const ATTACK_LABELS = { clean: "Clean", fgsm: "FGSM", pgd20: "PGD-20", cw: "CW", aa: "AutoAttack" };
  const METRICS = [
    ["clean", "Clean", 1], ["pgd20", "PGD-20", 1], ["aa", "AutoAttack", 1],
    ["worst_class", "Worst class", 1], ["corruptions", "Corruptions", 1], ["cost", "Train GFLOP/img", 2],
  ];
  const FILTERS = [["dataset", "Data set"], ["threat", "Threat model"], ["protocol", "Protocol"],
                   ["arch", "Student"], ["teacher", "Teacher"]];
  const main = document.getElementById("main");
  const show = (...kids) => main.replaceChildren(...kids.filter((k) => k !== null && k !== undefined));

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined) e.append(kid);
    return e;
  }
  const fmt = (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const swatch = (row) => { const s = el("span", { class: "swatch" }); s.style.background = row.colour; return s; };

  function numCell(m, digits) {
    const td = el("td", { class: "num" });
    if (!m || m.mean === null || m.mean === undefined) { td.append("–"); return td; }
    td.append(fmt(m.mean, digits));
    if (m.n > 1 && m.low !== null && m.high !== null && fmt(m.low, digits) !== fmt(m.high, digits))
      td.append(el("span", { class: "ci" }, `[${fmt(m.low, digits)}, ${fmt(m.high, digits)}]`));
    return td;
  }

  function publishedCell(row) {
    const td = el("td", { class: "num" });
    const key = ["aa", "pgd20", "clean"].find((k) => row.published[k]);
    if (!key) { td.append("–"); return td; }
    const p = row.published[key], ours = row.metrics[key] && row.metrics[key].mean;
    td.append(`${ATTACK_LABELS[key]} ${fmt(p.value)}`);
    if (ours !== null && ours !== undefined) {
      const d = ours - p.value;
      td.append(el("span", { class: "ci" }, `Δ ${d >= 0 ? "+" : "−"}${fmt(Math.abs(d))}` +
        (p.comparable ? "" : " (not comparable)")));
    }
    td.title = `${p.source} (${p.status})`;
    return td;
  }

  // ---------------------------------------------------------------- leaderboard
  function columns() {
    const has = (k) => ROWS.some((r) => r.metrics[k] && r.metrics[k].mean !== null && r.metrics[k].mean !== undefined);
    const cols = [
      { key: "rank", title: "Rank", num: true, get: (r) => r.rank,
        cell: (r) => el("td", { class: "num", title: `by ${ATTACK_LABELS[r.rank_by]}` }, (r.tied ? "=" : "") + r.rank) },
      { key: "method", title: "Method", get: (r) => r.label, cell: (r) => el("td", {},
          swatch(r), el("a", { href: `#/card/${r.id}` }, r.label),
          r.flags.length ? el("span", { class: "flag", title: r.flags.join(", ") }, ` ⚠ ${r.flags.length}`) : null) },
      { key: "teacher", title: "Teacher", get: (r) => r.teacher },
      { key: "arch", title: "Student", get: (r) => r.arch },
      { key: "protocol", title: "Protocol", get: (r) => `${r.protocol}, ${r.checkpoint}` },
    ];
    for (const [k, title, d] of METRICS)
      if (has(k)) cols.push({ key: k, title, num: true, get: (r) => (r.metrics[k] ? r.metrics[k].mean : null),
                             cell: (r) => numCell(r.metrics[k], d) });
    cols.push({ key: "n", title: "n", num: true, get: (r) => r.n, cell: (r) => el("td", { class: "num" }, String(r.n)) });
    if (ROWS.some((r) => Object.keys(r.published).length))
      cols.push({ key: "published", title: "Published", num: true, get: (r) => {
        const k = ["aa", "pgd20", "clean"].find((x) => r.published[x]); return k ? r.published[k].value : null; },
        cell: publishedCell });
    return cols;
  }

  function leaderboard() {
    const cols = columns();
    const selected = new Set();
    const filterState = {};
    const bar = el("div", { class: "filters" });
    for (const [key, title] of FILTERS) {
      const values = [...new Set(ROWS.map((r) => r[key]))].sort();
      if (values.length < 2) continue;
      const sel = el("select", { "data-filter": key, onchange: () => { filterState[key] = sel.value; applyFilters(); } },
        el("option", { value: "" }, "all"), values.map((v) => el("option", { value: v }, v)));
      bar.append(el("label", {}, title, sel));
    }
    const button = el("button", { id: "compare", disabled: "", onclick: () => {
      const [a, b] = [...selected]; location.hash = `#/compare/${a}/${b}`; } }, "Compare the two selected rows");
    const shown = el("span", { class: "muted", id: "shown" });
    const head = el("tr", {}, cols.map((c) => el("th", { class: "sortable", "data-key": c.key, scope: "col",
      onclick: () => sortBy(c) }, c.title)), el("th", {}, "Compare"));
    const items = ROWS.map((r) => {
      const box = el("input", { type: "checkbox", "aria-label": `compare ${r.label}`, onchange: () => {
        if (box.checked) selected.add(r.id); else selected.delete(r.id);
        if (selected.size > 2) { const first = selected.values().next().value; selected.delete(first);
          items.find((i) => i.row.id === first).box.checked = false; }
        button.disabled = selected.size !== 2; } });
      const tr = el("tr", { "data-id": r.id, class: r.role === "teacher" ? "teacher" : "" },
        cols.map((c) => (c.cell ? c.cell(r) : el("td", {}, String(c.get(r))))), el("td", {}, box));
      return { row: r, tr, box };
    });
    const tbody = el("tbody", {}, items.map((i) => i.tr));
    let state = { key: null, dir: 1 };

    function sortBy(col) {
      const t0 = performance.now();
      const dir = state.key === col.key ? -state.dir : (col.num && col.key !== "rank" && col.key !== "n" ? -1 : 1);
      state = { key: col.key, dir };
      const value = (i) => col.get(i.row);
      items.sort((a, b) => {
        const x = value(a), y = value(b);
        if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;   // missing last
        if (y === null || y === undefined) return -1;
        return (col.num ? x - y : String(x).localeCompare(String(y))) * dir;
      });
      tbody.replaceChildren(...items.map((i) => i.tr));   // one removal of all rows, then one insertion
      for (const th of head.querySelectorAll("th[data-key]"))
        if (th.dataset.key === col.key) th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        else th.removeAttribute("aria-sort");
      window.BENCH_LAST_SORT_MS = performance.now() - t0;
    }

    function applyFilters() {
      let n = 0;
      for (const i of items) {
        i.tr.hidden = !Object.entries(filterState).every(([k, v]) => !v || i.row[k] === v);
        n += i.tr.hidden ? 0 : 1;
      }
      shown.textContent = `${n} of ${items.length} rows`;
    }
    applyFilters();
    show(bar, el("div", { class: "toolbar" }, button, shown),
      el("table", { id: "board" }, el("thead", {}, head), tbody),
      el("p", { class: "muted" }, "Rank: within a data set and threat model, 1 + the rows whose interval on the " +
        "strongest attack lies wholly above this row's; =k marks rows tied within their intervals. ⚠: sanity " +
        "checks that fired (the model card says which). Intervals: 95 % t over the row's seeds."));
  }

  // ---------------------------------------------------------------- charts (inline SVG)
  const NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const kid of kids) if (kid) e.append(kid);
    return e;
  }
  function chart(series, { xlabel, ylabel, ymin, ymax, bars }) {
    const W = 440, H = 240, L = 48, R = 12, T = 12, B = 36;
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null);
    const x0 = bars ? -0.5 : Math.min(...xs), x1 = bars ? xs.length - 0.5 : Math.max(...xs);
    const y0 = ymin !== undefined ? ymin : Math.min(0, ...ys), y1 = ymax !== undefined ? ymax : Math.max(...ys) * 1.05 || 1;
    const sx = (x) => L + ((x - x0) / ((x1 - x0) || 1)) * (W - L - R);
    const sy = (y) => H - B - ((y - y0) / ((y1 - y0) || 1)) * (H - T - B);
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart" });
    g.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }),
             svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
    for (let k = 0; k <= 4; k++) {
      const v = y0 + (k / 4) * (y1 - y0);
      const t = svg("text", { x: L - 4, y: sy(v) + 4, "text-anchor": "end" }); t.textContent = fmt(v, y1 - y0 < 10 ? 2 : 0);
      g.append(t);
    }
    for (const s of series) {
      if (bars) {
        const w = (W - L - R) / Math.max(1, xs.length) * 0.7;
        s.points.forEach(([x, y], i) => { if (y === null) return;
          g.append(svg("rect", { x: sx(i) - w / 2, y: sy(y), width: w, height: H - B - sy(y), fill: s.colour }));
          const t = svg("text", { x: sx(i), y: H - B + 14, "text-anchor": "middle" }); t.textContent = String(x); g.append(t); });
      } else {
        const pts = s.points.filter((p) => p[1] !== null).map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ");
        g.append(svg("polyline", { points: pts, fill: "none", stroke: s.colour, "stroke-width": 1.5,
                                   "stroke-dasharray": s.dash || "" }));
      }
    }
    if (!bars) for (const v of [x0, x1]) {
      const t = svg("text", { x: sx(v), y: H - B + 14, "text-anchor": "middle" }); t.textContent = fmt(v, v % 1 ? 2 : 0); g.append(t);
    }
    const xl = svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }); xl.textContent = xlabel;
    const yl = svg("text", { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`, "text-anchor": "middle" });
    yl.textContent = ylabel;
    g.append(xl, yl);
    return g;
  }

  function table(head, rows) {
    return el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => (c instanceof Node ? c : el("td", {}, String(c))))))));
  }
  const strongest = (row) => ["aa", "cw", "pgd20", "fgsm", "clean"].find((k) => row.card.per_class[k]);

  // ---------------------------------------------------------------- model card
  function card(row) {
    const c = row.card;
    const attacks = Object.keys(ATTACK_LABELS).filter((k) => c.seeds.some((s) => s.metrics[k] !== undefined));
    const perSeed = table(["seed", "run", "run-set", ...attacks.map((k) => ATTACK_LABELS[k]), "weights (sha256)"],
      c.seeds.map((s) => [String(s.seed), s.run_id, s.runset, ...attacks.map((k) => el("td", { class: "num" }, fmt(s.metrics[k]))),
                          Object.keys(s.weights).length ? Object.entries(s.weights).map(([f, h]) => `${f} ${h.slice(0, 16)}…`).join("; ")
                            : "not kept"]));
    const summary = table(METRICS.map((m) => m[1]), [METRICS.map(([k, , d]) => numCell(row.metrics[k], d))]);
    const figs = el("div", { class: "grid2" });
    const att = strongest(row);
    if (att) figs.append(el("figure", {}, chart([{ colour: row.colour, points: c.classes.map((name, i) => [name, c.per_class[att][i]]) }],
      { xlabel: "class", ylabel: `${ATTACK_LABELS[att]} accuracy (%)`, ymin: 0, ymax: 100, bars: true }),
      el("figcaption", {}, `Accuracy per class under ${ATTACK_LABELS[att]} (mean over seeds)`)));
    if (c.curve.length) figs.append(el("figure", {}, chart([{ colour: row.colour, points: c.curve }],
      { xlabel: "ε", ylabel: "PGD-20 accuracy (%)", ymin: 0, ymax: 100 }), el("figcaption", {}, "Robust accuracy against ε")));
    const hist = c.history.filter((h) => h && h.length);
    if (hist.length) {
      const terms = c.terms;   // the loss terms' columns (bench.config.schema.loss_terms)
      const dashes = ["", "4 3", "1 3", "6 2 1 2"];
      const series = hist.flatMap((h, s) => terms.map((t, i) => ({ colour: row.colour, dash: dashes[i % dashes.length],
        points: h.map((e) => [e.epoch, e[t]]) })));
      figs.append(el("figure", {}, chart(series, { xlabel: "epoch", ylabel: "loss term" }),
        el("figcaption", {}, `Training: ${terms.join(", ")} (line style per term, every seed)`)));
    }
    const corr = Object.entries(c.corruptions);
    const sanity = Object.entries(c.sanity);
    const links = el("p", {}, el("a", { href: `#/images/${row.id}` }, "Per-image explorer"), " · ",
      compareSelect(row));
    show(
      el("h2", {}, swatch(row), row.label, row.flags.length ? el("span", { class: "flag" }, ` ⚠ ${row.flags.join(", ")}`) : null),
      el("p", { class: "muted" }, `${row.dataset} · ${row.threat} · teacher ${row.teacher} · student ${row.arch} · ` +
        `${row.protocol} protocol, ${row.checkpoint} checkpoint · ${row.n} seed(s)`),
      c.note ? el("p", {}, "Note: ", c.note) : null, links,
      el("h3", {}, "Numbers (mean over seeds, 95 % interval)"), summary,
      el("h3", {}, "Per seed"), perSeed,
      publishedTable(row), figs,
      corr.length ? el("h3", {}, "Corruptions (accuracy % by severity 1–5, mean over seeds)") : null,
      corr.length ? table(["corruption", "1", "2", "3", "4", "5"], corr.map(([n, v]) => [n, ...v.map((x) => el("td", { class: "num" }, fmt(x)))])) : null,
      el("h3", {}, "Sanity checks"),
      sanity.length ? table(["check", "fired on", "values", "threshold", "what it measures"], sanity.map(([n, s]) =>
        [n, `${s.flagged} of ${row.n}`, s.values.map((v) => (v === null ? "–" : Number(v).toPrecision(3))).join(", "),
         String(s.threshold), s.what || ""])) : el("p", { class: "muted" }, "none recorded"),
      recipe(c.recipe),
      el("h3", {}, "Reproduce"), el("pre", {}, c.reproduce || "(the run-set records no command)"),
      el("h3", {}, "Code and checkpoints"),
      el("pre", {}, JSON.stringify({ code: c.code, checkpoints: c.checkpoints, teacher: c.teacher, options: c.options }, null, 2)),
      c.robustbench ? el("details", {}, el("summary", {}, "RobustBench model_info export"), el("pre", {}, JSON.stringify(c.robustbench, null, 2))) : null,
      el("details", {}, el("summary", {}, "Resolved config (recipe)"), el("pre", {}, JSON.stringify(c.config, null, 2))));
  }

  function recipe(r) {
    if (!r) return null;
    const sources = Object.entries(r.sources);
    return el("div", {}, el("h3", {}, "Method and official recipe"), r.cite ? el("p", {}, r.cite) : null,
      el("p", { class: "muted" }, r.code ? `Official script: ${r.repo}` : "No official code: the recipe is the suite's own default."),
      sources.length ? table(["field", "source (file:line)"], sources) : null);
  }

  function publishedTable(row) {
    const keys = Object.keys(row.published);
    if (!keys.length) return null;
    return el("div", {}, el("h3", {}, "Published numbers"), table(["metric", "ours", "published", "Δ", "comparable", "source"],
      keys.map((k) => { const p = row.published[k], ours = row.metrics[k] && row.metrics[k].mean;
        return [ATTACK_LABELS[k], fmt(ours), fmt(p.value), ours === null || ours === undefined ? "–" : fmt(ours - p.value),
                p.comparable ? "yes" : "no (other protocol or a stand-in network)", `${p.source} (${p.status})`]; })));
  }

  function compareSelect(row) {
    const others = ROWS.filter((r) => r.id !== row.id && r.group === row.group);
    const sel = el("select", { "aria-label": "compare with", onchange: () => { if (sel.value) location.hash = `#/compare/${row.id}/${sel.value}`; } },
      el("option", { value: "" }, "compare with…"), others.map((r) => el("option", { value: r.id }, r.label)));
    return sel;
  }

  // ---------------------------------------------------------------- compare two rows
  function compare(a, b) {
    const pair = DATA.compare[`${a.id}|${b.id}`];
    const head = ["metric", a.label, b.label, "Δ (A − B)", "95 % interval", "p", "test"];
    const body = pair ? Object.entries(pair).map(([k, d]) => [ATTACK_LABELS[k], fmt(a.metrics[k] && a.metrics[k].mean),
      fmt(b.metrics[k] && b.metrics[k].mean), el("td", { class: "num", "data-metric": k }, fmt(d.diff)),
      d.low === null ? "–" : `[${fmt(d.low)}, ${fmt(d.high)}]`, d.note || (d.p === null ? "–" : Number(d.p).toPrecision(3)),
      d.test]) : [];
    const att = strongest(a) && b.card.per_class[strongest(a)] ? strongest(a) : null;
    const classes = att ? a.card.classes.map((name, i) => [name, fmt(a.card.per_class[att][i]), fmt(b.card.per_class[att][i]),
      fmt(a.card.per_class[att][i] - b.card.per_class[att][i])]) : [];
    const attackSel = el("select", { id: "attack", onchange: () => drawImages() },
      Object.keys(ATTACK_LABELS).filter((k) => a.images.some((s) => s.correct[k]) && b.images.some((s) => s.correct[k]))
        .map((k) => el("option", { value: k }, ATTACK_LABELS[k])));
    const out = el("div", { id: "only" });
    function drawImages() {
      const k = attackSel.value, bySeed = new Map(b.images.map((s) => [s.seed, s]));
      const blocks = [];
      for (const s of a.images) {
        const o = bySeed.get(s.seed);
        if (!o || !s.correct[k] || !o.correct[k]) continue;
        const n = Math.min(s.correct[k].length, o.correct[k].length), onlyA = [], onlyB = [];
        for (let i = 0; i < n; i++) {
          if (s.correct[k][i] === "1" && o.correct[k][i] === "0") onlyA.push(i);
          if (s.correct[k][i] === "0" && o.correct[k][i] === "1") onlyB.push(i);
        }
        blocks.push(el("p", { "data-seed": s.seed }, `seed ${s.seed}: ${onlyA.length} images only ${a.label} gets right ` +
          `(${onlyA.join(", ") || "none"}); ${onlyB.length} only ${b.label} does (${onlyB.join(", ") || "none"})`));
      }
      out.replaceChildren(...(blocks.length ? blocks : [el("p", { class: "muted" }, "no seed of the two rows shares per-image results for this attack")]));
    }
    show(el("h2", {}, swatch(a), a.label, " vs ", swatch(b), b.label),
      pair ? table(head, body) : el("p", { class: "muted" }, `No precomputed test: the rows are in different groups, or their group has more than ${DATA.most_compared} rows.`),
      el("p", { class: "muted" }, "Δ in points. seeds×images t: seeds and test images both sampled, as the reports' ablation tests; paired t: over seeds; Welch t: seeds that do not pair (a one-seed teacher gives no interval). p is not adjusted for the many comparisons a leaderboard invites."),
      att ? el("h3", {}, `Per class under ${ATTACK_LABELS[att]} (mean over seeds)`) : null,
      att ? table(["class", a.label, b.label, "Δ"], classes) : null,
      el("h3", {}, "Images one gets right under attack and the other does not"), el("p", {}, "attack: ", attackSel), out);
    drawImages();
  }

  // ---------------------------------------------------------------- per-image explorer
  function images(row) {
    const seedSel = el("select", { id: "seed", onchange: () => draw() }, row.images.map((s) => el("option", { value: s.seed }, `seed ${s.seed}`)));
    const classes = row.card.classes;
    const classSel = el("select", { id: "class", onchange: () => draw() }, el("option", { value: "" }, "every class"),
      classes.map((c, i) => el("option", { value: String(i) }, `class ${c}`)));
    const grid = el("div", { class: "images", id: "grid" });
    const counts = el("p", { id: "counts" });
    function draw() {
      const s = row.images.find((x) => String(x.seed) === seedSel.value) || row.images[0];
      const attacks = Object.keys(ATTACK_LABELS).filter((k) => s.correct[k]);
      const tiles = [], fell = Object.fromEntries(attacks.map((k) => [k, 0]));
      let n = 0;
      s.labels.forEach((label, i) => {
        if (classSel.value !== "" && String(label) !== classSel.value) return;
        n += 1;
        const marks = attacks.map((k) => {
          const f = s.correct[k][i];
          if (f === "0") fell[k] += 1;
          return el("span", { class: f === "1" ? "ok" : f === "0" ? "bad" : "muted", title: ATTACK_LABELS[k] },
                    f === "1" ? "✓" : f === "0" ? "✗" : "·");
        });
        tiles.push(el("div", { class: "img", "data-index": i }, `#${i} (${classes[label] !== undefined ? classes[label] : label})`,
                      el("div", { class: "marks" }, marks)));
      });
      grid.replaceChildren(...tiles);
      counts.textContent = `${n} images; fall under: ` + attacks.map((k) => `${ATTACK_LABELS[k]} ${fell[k]}`).join(", ") +
        ` (marks in the order ${attacks.map((k) => ATTACK_LABELS[k]).join(", ")}; · where an attack ran on fewer images)`;
    }
    show(el("h2", {}, swatch(row), row.label, ": per-image results"),
      el("p", {}, el("a", { href: `#/card/${row.id}` }, "model card"), " · ", seedSel, " ", classSel), counts,
      el("p", { class: "muted" }, "No adversarial examples are stored in these records; `bench eval --save-adv N` keeps them for a checkpoint."),
      grid);
    draw();
  }

  // ---------------------------------------------------------------- routes
  function route() {
    const parts = location.hash.replace(/^#\/?/, "").split("/");
    const row = (id) => BY_ID.get(id);
    if (parts[0] === "card" && row(parts[1])) card(row(parts[1]));
    else if (parts[0] === "compare" && row(parts[1]) && row(parts[2])) compare(row(parts[1]), row(parts[2]));
    else if (parts[0] === "images" && row(parts[1])) images(row(parts[1]));
    else leaderboard();
    window.scrollTo(0, 0);
  }
  window.addEventListener("hashchange", route);
  route();
})();

/* Displacement: flows of listed items between hosters and countries from one report period to
 * the next (GET /v1/flows, by hoster and by country), with each figure's bounds. */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const resolved = await L.resolve();
  if (resolved === null) { L.ready(); return; }
  const flowParams = new URLSearchParams();
  for (const k of ["period_start", "period_end", "hash_family", "media"]) {
    if (resolved.params.has(k)) flowParams.set(k, resolved.params.get(k));
  }
  const by = (level) => new URLSearchParams([...flowParams, ["by", level]]);
  let hosters, countries;
  try {
    [hosters, countries] = await Promise.all([
      L.json("/v1/flows", by("hoster")), L.json("/v1/flows", by("country")),
    ]);
  } catch (error) {
    // DP mode (issue 15): flows count items exactly, so viewers get a note instead.
    if (!L.showNotPublished(error)) throw error;
    L.ready();
    return;
  }
  // The filter bar's country / hoster / ASN: flows from or to a matching place.
  const want = { country: (L.query.get("country") || "").trim().toUpperCase(),
    hoster: (L.query.get("hoster") || "").trim(), asn: (L.query.get("asn") || "").trim() };
  const fits = (p) => (!want.country || p.country === want.country) &&
    (p.hoster === undefined || ((!want.hoster || p.hoster === want.hoster) &&
      (!want.asn || String(p.asn) === want.asn)));
  const flowFits = (f) => fits(f.source) || fits(f.target);
  L.describe({ by_period: hosters.periods.map((p) => ({ period_start: p.start, period_end: p.end })),
    generated_at: hosters.generated_at, filters: { hash_family: hosters.hash_family,
      media: hosters.media || null,
      country: want.country || null, hoster: want.hoster || null, asn: want.asn || null } }, resolved);
  Object.assign(L.csvContext, { params: flowParams, generated_at: hosters.generated_at,
    tier: hosters.tier });

  const stepKey = (s) => s.from.start;
  const steps = hosters.steps;
  const select = document.getElementById("step");
  // A step chosen in the address stays chosen; otherwise the latest (a refresh moves on to a
  // newer one as it arrives).
  const asked = L.query.get("step");
  select.replaceChildren(...steps.slice().reverse().map((s) => {
    const option = document.createElement("option");
    option.value = stepKey(s);
    option.textContent = L.span(s.from.start, s.from.end) + " → " + L.span(s.to.start, s.to.end);
    return option;
  }));
  const keys = steps.map(stepKey);
  select.value = keys.includes(asked) ? asked : keys.length ? keys[keys.length - 1] : "";
  select.disabled = !steps.length;
  select.onchange = () => window.location.assign(L.link("/dashboard/displacement", { step: select.value }));

  const name = (p) => (p.hoster === undefined ? p.country : p.hoster + " (AS" + p.asn + ", " + p.country + ")");
  const flowRows = (step) => (step ? step.flows.filter(flowFits).map((f) => ({
    source_hoster: f.source.hoster, source_asn: f.source.asn, source_country: f.source.country,
    target_hoster: f.target.hoster, target_asn: f.target.asn, target_country: f.target.country,
    items: f.items, estimate: f.items.estimate, lower: f.items.lower, upper: f.items.upper,
    exact: f.items.exact, source: f.source, target: f.target,
  })) : []);
  const index = keys.indexOf(select.value);
  const step = index >= 0 ? steps[index] : null;
  const countryStep = step ? countries.steps.find((s) => stepKey(s) === stepKey(step)) : null;
  const hosterFlows = flowRows(step);
  const countryFlows = flowRows(countryStep);
  const figure = { num: true, fmt: L.figure, withheld: true };
  L.fill(document.getElementById("hoster-flows"), hosterFlows, [
    { key: "source_hoster" }, { key: "source_asn", num: true },
    { key: "source_country", link: (r) => L.link("/dashboard/hosters", { country: r.source_country, step: null }) },
    { key: "target_hoster" }, { key: "target_asn", num: true },
    { key: "target_country", link: (r) => L.link("/dashboard/hosters", { country: r.target_country, step: null }) },
    { key: "estimate", num: true, fmt: L.int },
    { key: "bounds", num: true, fmt: (_v, r) => L.bound(r.items) },
  ]);
  L.fill(document.getElementById("country-flows"), countryFlows, [
    { key: "source_country" }, { key: "target_country" },
    { key: "estimate", num: true, fmt: (_v, r) => L.int(r.estimate) },
    { key: "bounds", num: true, fmt: (_v, r) => L.bound(r.items) },
  ]);
  const placeRows = step ? step.places.filter((p) => fits(p.place)).map((p) => ({
    hoster: p.place.hoster, asn: p.place.asn, country: p.place.country,
    before: p.before, after: p.after, removed: p.removed, new: p.new,
  })) : [];
  L.fill(document.getElementById("place-table"), placeRows, [
    { key: "hoster" }, { key: "asn", num: true }, { key: "country" },
    { key: "before", ...figure }, { key: "after", ...figure },
    { key: "removed", ...figure }, { key: "new", ...figure },
  ]);

  document.getElementById("step-info").textContent = step
    ? "Step " + L.span(step.from.start, step.from.end) + " → " + L.span(step.to.start, step.to.end) +
      " (periods of " + L.length((Date.parse(step.from.end) - Date.parse(step.from.start)) / 1000) +
      "): " + hosterFlows.length + " hoster flow" + (hosterFlows.length === 1 ? "" : "s") + ", " +
      countryFlows.length + " country flow" + (countryFlows.length === 1 ? "" : "s") +
      (want.country || want.hoster || want.asn ? " from or to the filtered place" : "") + "."
    : hosters.periods.length < 2
      ? "Displacement needs two consecutive report periods; the coordinator holds " +
        hosters.periods.length + " for this selection."
      : "No two consecutive report periods of equal length in this selection (see All steps).";

  // Sum of figures: exact when every part is; withheld parts are left out (and said so).
  const sum = (figures) => {
    const shown = figures.filter((f) => f !== null && f !== undefined);
    return { estimate: shown.reduce((a, f) => a + f.estimate, 0),
      lower: shown.reduce((a, f) => a + f.lower, 0), upper: shown.reduce((a, f) => a + f.upper, 0),
      exact: shown.every((f) => f.exact) };
  };
  const stepRows = steps.slice().reverse().map((s) => ({
    from: s.from, to: s.to, key: stepKey(s),
    removed: sum(s.places.filter((p) => fits(p.place)).map((p) => p.removed)),
    moved: sum(s.flows.filter(flowFits).map((f) => f.items)),
    new: sum(s.places.filter((p) => fits(p.place)).map((p) => p.new)),
    flows: s.flows.filter(flowFits).length,
  }));
  L.fill(document.getElementById("step-table"), stepRows, [
    { key: "from", fmt: (v) => L.span(v.start, v.end),
      link: (r) => L.link("/dashboard/displacement", { step: r.key }) },
    { key: "to", fmt: (v) => L.span(v.start, v.end) },
    { key: "removed", ...figure }, { key: "moved", ...figure }, { key: "new", ...figure },
    { key: "flows", num: true, fmt: L.int },
  ], (r) => (step && r.key === stepKey(step) ? "current" : ""));
  document.getElementById("skipped").replaceChildren(...hosters.skipped.map((s) => {
    const li = document.createElement("li");
    li.textContent = "No step " + L.span(s.from.start, s.from.end) + " → " +
      L.span(s.to.start, s.to.end) + ": " + s.reason + ".";
    return li;
  }));

  const s = hosters.suppression;
  document.getElementById("suppression").textContent = hosters.tier === "full"
    ? "Full tier: no small-cell suppression (admin view)."
    : s && (s.min_count > 0 || s.min_nodes > 1)
      ? "Small-cell suppression (" + [s.min_count > 0 ? "fewer than " + L.int(s.min_count) + " items" : null,
        s.min_nodes > 1 ? "fewer than " + L.int(s.min_nodes) + " reporting nodes" : null]
        .filter(Boolean).join(" or ") + "): withheld over all steps: " + L.int(s.flows) +
        " hoster flows, " + L.int(s.places) + " hoster rows and " + L.int(s.values) +
        " single figures (shown as withheld)."
      : "No small-cell suppression: this coordinator shows every flow.";
  const left = hosters.left_out;
  document.getElementById("left-out").textContent = left && left.reports
    ? L.int(left.reports) + " report" + (left.reports === 1 ? "" : "s") + " (" + L.int(left.cells) +
      " cells) from older nodes carry no item sketches and are left out of every figure here."
    : "Every report in this selection carries item sketches.";

  // Sankey of the step's largest hoster flows: sources on the left (earlier period), targets on
  // the right (later period); node names carry a side prefix so one hoster may be on both.
  const chartEl = document.getElementById("chart-flows");
  const chart = L.chart(chartEl, { table: "hoster-flows" });
  const top = hosterFlows.slice(0, 25);
  const label = {};
  const nodes = new Map();
  for (const f of top) {
    for (const [side, p] of [["from", f.source], ["to", f.target]]) {
      const id = side + "\u0000" + name(p);
      label[id] = name(p);
      // Targets label to their left, inside the chart (the right edge would cut them off).
      nodes.set(id, { name: id, depth: side === "from" ? 0 : 1,
        label: { position: side === "from" ? "right" : "left" } });
    }
  }
  chartEl.setAttribute("aria-label", "Flow diagram: items moved from hoster to hoster" +
    (step ? " from " + L.span(step.from.start, step.from.end) + " to " + L.span(step.to.start, step.to.end) : "") +
    ". " + (top.length ? top.slice(0, 5).map((f) => name(f.source) + " to " + name(f.target) + " " +
      L.figure(f.items)).join(", ") + ". " : "No flows. ") + "Every flow is in the table Hoster → hoster below.");
  chart.setOption({
    animation: false,  // a refresh redraws it in place: no motion
    aria: { enabled: true, label: { enabled: true } },
    title: { text: top.length ? "Items moved, hoster → hoster (largest " + top.length + ")"
      : "No hoster flows in this step", left: 0, top: 0, textStyle: { fontSize: 14 },
      subtext: step ? "left: at the hoster in " + L.span(step.from.start, step.from.end) +
        "; right: found there in " + L.span(step.to.start, step.to.end) : "",
      subtextStyle: { fontSize: 11, width: chartEl.clientWidth - 20, overflow: "break" } },
    tooltip: { trigger: "item", formatter: (p) => (p.dataType === "edge"
      ? L.esc(label[p.data.source]) + " → " + L.esc(label[p.data.target]) + ": " + L.esc(L.figure(p.data.figure)) + " items"
      : L.esc(label[p.name] || p.name)) },
    series: [{ id: "flows", type: "sankey", top: chartEl.clientWidth < 560 ? 70 : 50, bottom: 10, left: 10, right: 10,
      nodeAlign: "justify", emphasis: { focus: "adjacency" }, draggable: false,
      label: { formatter: (p) => label[p.name] || p.name, width: Math.max(80, chartEl.clientWidth / 3 - 20),
        overflow: "truncate" },
      lineStyle: { color: "gradient", opacity: 0.45 },
      data: [...nodes.values()],
      links: top.map((f) => ({ source: "from\u0000" + name(f.source), target: "to\u0000" + name(f.target),
        value: f.estimate, figure: f.items })) }],
  }, true);

  const csvColumns = ["level", "from_start", "from_end", "to_start", "to_end", "source_country",
    "source_asn", "source_hoster", "target_country", "target_asn", "target_hoster", "items",
    "lower", "upper", "exact"];
  const allFlows = () => [[hosters, "hoster"], [countries, "country"]].flatMap(([answer, level]) =>
    answer.steps.flatMap((st) => st.flows.filter(flowFits).map((f) => ({
      level: level, from_start: st.from.start, from_end: st.from.end, to_start: st.to.start,
      to_end: st.to.end, source_country: f.source.country, source_asn: f.source.asn ?? null,
      source_hoster: f.source.hoster ?? null, target_country: f.target.country,
      target_asn: f.target.asn ?? null, target_hoster: f.target.hoster ?? null,
      items: f.items.estimate, lower: f.items.lower, upper: f.items.upper, exact: f.items.exact,
    }))));
  L.exportButtons("flows", async () => L.csv(csvColumns, allFlows()),
    async () => ({ by_hoster: hosters, by_country: countries }));
  L.ready();
});

/* Waterbed view: where matches fell and rose between two periods (GET /v1/picture/shifts). */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const q = L.query;
  const family = q.get("family");
  const media = q.get("media") === "image" || q.get("media") === "video" ? q.get("media") : null;
  // Okabe-Ito orange and blue (distinguishable with every common colour-vision deficiency),
  // plus a hatch on rises and the sign on every label: colour is never the only cue.
  const ROSE = "#D55E00";
  const FELL = "#0072B2";
  const ARROW = { rose: "▲ rose", appeared: "▲ appeared", fell: "▼ fell", vanished: "▼ vanished" };
  const form = document.getElementById("periods");
  const error = document.getElementById("filter-error");
  const NAMES = ["b_from", "b_to", "a_from", "a_to"];
  // Two windows {from, to} in ms; refused unless both are complete and equally long.
  const windows = function (values) {
    const before = L.window(values[0], values[1]);
    const after = L.window(values[2], values[3]);
    if ([before.from, before.to, after.from, after.to].some((v) => v === null)) {
      throw new L.UserError("Enter all four times: From and To of both periods (UTC).");
    }
    if (before.to - before.from !== after.to - after.from) {
      throw new L.UserError("The two periods differ in length (" +
        L.length((before.to - before.from) / 1000) + " and " +
        L.length((after.to - after.from) / 1000) + "): compare periods of equal length.");
    }
    return [before, after];
  };
  form.onsubmit = (event) => {
    try {
      windows(NAMES.map((k) => form.elements[k].value));
      error.hidden = true;
    } catch (e) {
      event.preventDefault();
      error.textContent = e.message;
      error.hidden = false;
    }
  };
  let span = NAMES.map((k) => q.get(k));
  let chosen;
  if (span.some((v) => v)) {
    chosen = windows(span);
  } else {
    // Default: the last report period and the one before it of the same length.
    const first = new URLSearchParams();
    if (family) first.set("hash_family", family);
    if (media) first.set("media", media);
    const all = await L.json("/v1/picture", first);
    const periods = all.by_period.map((p) => ({ from: Date.parse(p.period_start),
      to: Date.parse(p.period_end) }));
    const last = periods[periods.length - 1];
    const length = last ? last.to - last.from : 0;
    const earlier = periods.slice(0, -1).filter((p) => p.to - p.from === length && p.to <= last.from);
    if (!last || !earlier.length) {
      L.status("The waterbed view needs two report periods of equal length; the coordinator holds " +
        periods.length + " period" + (periods.length === 1 ? "" : "s") + ".");
      L.ready();
      return;
    }
    chosen = [earlier[earlier.length - 1], last];
    span = [L.fieldValue(chosen[0].from, false), L.fieldValue(chosen[0].to, true),
      L.fieldValue(chosen[1].from, false), L.fieldValue(chosen[1].to, true)];
    NAMES.forEach((k, i) => { form.elements[k].value = span[i]; });
  }
  const params = new URLSearchParams({
    before_start: L.iso(chosen[0].from), before_end: L.iso(chosen[0].to),
    after_start: L.iso(chosen[1].from), after_end: L.iso(chosen[1].to),
  });
  if (family) params.set("hash_family", family);
  if (media) params.set("media", media);
  const shifts = await L.json("/v1/picture/shifts", params);
  Object.assign(L.csvContext, { params: params, generated_at: shifts.generated_at || null,
    tier: shifts.tier });
  document.getElementById("compared").textContent = "Before " +
    L.span(chosen[0].from, chosen[0].to) + ", after " + L.span(chosen[1].from, chosen[1].to) +
    " (each " + L.length((chosen[0].to - chosen[0].from) / 1000) + ")" +
    (media ? ", " + L.mediaLabel(media) : "") + (family ? ", " + L.familyLabel(family) : "") +
    (shifts.generated_at ? ". Data generated " + L.time(shifts.generated_at) + "." : ".");

  const cols = [
    { key: "country" },
    { key: "matches_before", num: true, fmt: L.int, withheld: true },
    { key: "matches_after", num: true, fmt: L.int, withheld: true },
    { key: "delta", num: true, fmt: L.signed, withheld: true },
    { key: "direction", fmt: (v) => ARROW[v] || v },
    { key: "prevalence_before", num: true, fmt: L.prevalence },
    { key: "prevalence_after", num: true, fmt: L.prevalence },
    { key: "prevalence_change", num: true,
      fmt: (v) => (v === null || v === undefined ? "—" : (v > 0 ? "+" : v < 0 ? "−" : "±") + L.dec(Math.abs(v))) },
  ];
  const tone = (r) => (r.direction === "rose" || r.direction === "appeared" ? "rose"
    : r.direction === "fell" || r.direction === "vanished" ? "fell" : "");
  L.fill(document.getElementById("shift-country-table"), shifts.by_country, cols, tone);
  L.fill(document.getElementById("shift-hoster-table"), shifts.by_hoster,
    [{ key: "hoster" }, { key: "asn", num: true }, ...cols], tone);

  const known = shifts.by_country.filter((r) => r.delta !== null).slice(0, 20).reverse();
  const chartEl = document.getElementById("chart-shifts");
  const chart = L.chart(chartEl, { table: "shift-country-table" });
  chartEl.setAttribute("aria-label", "Bar chart: change in matches per country from before to after. " +
    known.slice().reverse().slice(0, 6).map((r) => r.country + " " + L.signed(r.delta)).join(", ") +
    ". Every value is in the table Countries below.");
  chart.setOption({
    aria: { enabled: true, label: { enabled: true }, decal: { show: true } },
    title: { text: "Change in matches per country (after − before)", left: 0, top: 0,
      textStyle: { fontSize: 14 } },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" },
      formatter: (ps) => L.esc(ps[0].name) + ": " + L.signed(ps[0].value) + " matches" },
    grid: { left: 10, right: 60, top: 34, bottom: 30, containLabel: true },
    // Room beyond the longest bars for their labels.
    xAxis: { type: "value", minInterval: 1, axisLabel: { formatter: L.signed },
      boundaryGap: ["25%", "25%"] },
    yAxis: { type: "category", data: known.map((r) => r.country) },
    series: [{ id: "shifts", type: "bar", data: known.map((r) => ({
      value: r.delta,
      itemStyle: {
        color: r.delta > 0 ? ROSE : FELL,
        decal: r.delta > 0 ? { symbol: "rect", dashArrayX: [1, 0], dashArrayY: [3, 5],
          rotation: -Math.PI / 4, color: "rgba(255,255,255,0.6)" } : { symbol: "none" },
      },
      label: { show: true, position: r.delta >= 0 ? "right" : "left",
        formatter: (p) => (p.value > 0 ? "▲ " : "▼ ") + L.signed(p.value) },
    })) }],
  });
  document.getElementById("suppression").textContent = shifts.tier === "full"
    ? "Full tier: no small-cell suppression (admin view)."
    : shifts.privacy ? L.privacyText(shifts.privacy) + " Shifts compare the two noisy pictures."
    : "Small-cell suppression: " + shifts.suppressed_rows + " rows withheld entirely; " +
      "'withheld' marks one period's value withheld.";

  L.exportButtons("waterbed",
    () => L.text("/v1/picture/shifts", new URLSearchParams([...params, ["format", "csv"]])),
    async () => shifts);
  L.ready();
});

/* Waterbed view: where matches fell and rose between two periods (GET /v1/picture/shifts). */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const q = L.query;
  const family = q.get("family");
  // Okabe-Ito orange and blue (distinguishable with every common colour-vision deficiency),
  // plus a hatch on rises and the sign on every label: colour is never the only cue.
  const ROSE = "#D55E00";
  const FELL = "#0072B2";
  const ARROW = { rose: "▲ rose", appeared: "▲ appeared", fell: "▼ fell", vanished: "▼ vanished" };
  const form = document.getElementById("periods");
  const error = document.getElementById("filter-error");
  const check = function (values) {
    L.window(values[0], values[1]);
    L.window(values[2], values[3]);
  };
  form.addEventListener("submit", (event) => {
    const values = ["b_from", "b_to", "a_from", "a_to"].map((k) => form.elements[k].value);
    try {
      if (!values.every(L.isDate)) throw new L.UserError("Enter four dates as YYYY-MM-DD (UTC).");
      check(values);
      error.hidden = true;
    } catch (e) {
      event.preventDefault();
      error.textContent = e.message;
      error.hidden = false;
    }
  });
  let span = ["b_from", "b_to", "a_from", "a_to"].map((k) => q.get(k));
  if (span.every(L.isDate)) check(span);
  if (!span.every(L.isDate)) {
    // Default: the last two reported periods.
    const all = await L.json("/v1/picture", family ? new URLSearchParams({ hash_family: family }) : null);
    const periods = all.by_period;
    if (periods.length < 2) {
      L.status("The waterbed view needs two periods; the coordinator holds " + periods.length + ".");
      L.ready();
      return;
    }
    const [b, a] = periods.slice(-2);
    const day = (iso) => iso.slice(0, 10);
    const lastDay = (iso) => L.dayStart(day(iso), iso.slice(11, 19) === "00:00:00" ? -1 : 0).slice(0, 10);
    span = [day(b.period_start), lastDay(b.period_end), day(a.period_start), lastDay(a.period_end)];
    ["b_from", "b_to", "a_from", "a_to"].forEach((k, i) => { form.elements[k].value = span[i]; });
  }
  const params = new URLSearchParams({
    before_start: L.dayStart(span[0]), before_end: L.dayStart(span[1], 1),
    after_start: L.dayStart(span[2]), after_end: L.dayStart(span[3], 1),
  });
  if (family) params.set("hash_family", family);
  const shifts = await L.json("/v1/picture/shifts", params);
  Object.assign(L.csvContext, { params: params, generated_at: shifts.generated_at || null,
    tier: shifts.tier });
  document.getElementById("compared").textContent = "Before " + span[0] + " – " + span[1] +
    ", after " + span[2] + " – " + span[3] + " (UTC, whole days)" + (family ? ", " + family : "") +
    (shifts.generated_at ? ". Data generated " + L.time(shifts.generated_at) + "." : ".");

  const cols = [
    { key: "country" },
    { key: "matches_before", num: true, fmt: L.int, withheld: true },
    { key: "matches_after", num: true, fmt: L.int, withheld: true },
    { key: "delta", num: true, fmt: L.signed, withheld: true },
    { key: "direction", fmt: (v) => ARROW[v] || v },
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
    : "Small-cell suppression: " + shifts.suppressed_rows + " rows withheld entirely; " +
      "'withheld' marks one period's value withheld.";

  L.exportButtons("waterbed",
    () => L.text("/v1/picture/shifts", new URLSearchParams([...params, ["format", "csv"]])),
    async () => shifts);
  L.ready();
});

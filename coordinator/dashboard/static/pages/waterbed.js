/* Waterbed view: where matches fell and rose between two periods (GET /v1/picture/shifts). */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const q = L.query;
  const family = q.get("family");
  let span = ["b_from", "b_to", "a_from", "a_to"].map((k) => q.get(k));
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
    const form = document.getElementById("periods");
    ["b_from", "b_to", "a_from", "a_to"].forEach((k, i) => { form.elements[k].value = span[i]; });
  }
  const params = new URLSearchParams({
    before_start: L.dayStart(span[0]), before_end: L.dayStart(span[1], 1),
    after_start: L.dayStart(span[2]), after_end: L.dayStart(span[3], 1),
  });
  if (family) params.set("hash_family", family);
  const shifts = await L.json("/v1/picture/shifts", params);
  document.getElementById("compared").textContent = "Before " + span[0] + " – " + span[1] +
    ", after " + span[2] + " – " + span[3] + (family ? ", " + family : "");

  const cols = [
    { key: "country" },
    { key: "matches_before", num: true, fmt: L.int, withheld: true },
    { key: "matches_after", num: true, fmt: L.int, withheld: true },
    { key: "delta", num: true, fmt: (v) => (v > 0 ? "+" : "") + L.int(v), withheld: true },
    { key: "direction" },
  ];
  const tone = (r) => (r.direction === "rose" || r.direction === "appeared" ? "bad"
    : r.direction === "fell" || r.direction === "vanished" ? "warn" : "");
  L.fill(document.getElementById("shift-country-table"), shifts.by_country, cols, tone);
  L.fill(document.getElementById("shift-hoster-table"), shifts.by_hoster,
    [{ key: "hoster" }, { key: "asn", num: true }, ...cols], tone);

  const known = shifts.by_country.filter((r) => r.delta !== null).slice(0, 20).reverse();
  const chart = L.chart(document.getElementById("chart-shifts"));
  chart.setOption({
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" },
      formatter: (ps) => L.esc(ps[0].name) + ": " + (ps[0].value > 0 ? "+" : "") + L.int(ps[0].value) },
    grid: { left: 60, right: 30, top: 10, bottom: 30 },
    xAxis: { type: "value", minInterval: 1 },
    yAxis: { type: "category", data: known.map((r) => r.country) },
    series: [{ id: "shifts", type: "bar", data: known.map((r) => ({
      value: r.delta, itemStyle: { color: r.delta > 0 ? "#b91c1c" : "#15803d" } })) }],
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

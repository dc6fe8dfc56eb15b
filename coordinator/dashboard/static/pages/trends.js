/* Time series per country and per hoster: one GET /v1/picture per reported period. */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const MAX_PERIODS = 60;
  const TOP = 8;
  const params = L.apiFilters();
  const family = params.get("hash_family");
  const overall = await L.json("/v1/picture", params);
  const periods = overall.by_period.slice(-MAX_PERIODS);
  if (overall.by_period.length > MAX_PERIODS) {
    L.status("showing the last " + MAX_PERIODS + " of " + overall.by_period.length +
      " periods; narrow the dates to see earlier ones");
  }
  const pictures = await Promise.all(periods.map((p) => {
    const q = new URLSearchParams({ period_start: p.period_start, period_end: p.period_end });
    if (family) q.set("hash_family", family);
    return L.json("/v1/picture", q);
  }));

  const hosterKey = (h) => h.hoster + " (AS" + h.asn + ", " + h.country + ")";
  const top = (rows, keyOf) => rows.slice(0, TOP).map(keyOf);  // API rows: most matches first
  const countries = top(overall.by_country, (r) => r.country);
  const hosters = top(overall.by_hoster, hosterKey);
  const x = periods.map((p) => L.time(p.period_start));

  const rows = [];  // every (period, country|hoster) value, for export
  pictures.forEach((pic, i) => {
    for (const c of pic.by_country) {
      rows.push({ period_start: periods[i].period_start, period_end: periods[i].period_end,
        kind: "country", country: c.country, hoster: null, asn: null,
        matches: c.matches, distinct: c.distinct });
    }
    for (const h of pic.by_hoster) {
      rows.push({ period_start: periods[i].period_start, period_end: periods[i].period_end,
        kind: "hoster", country: h.country, hoster: h.hoster, asn: h.asn,
        matches: h.matches, distinct: h.distinct });
    }
  });

  const chartCountry = L.chart(document.getElementById("chart-country"));
  const chartHoster = L.chart(document.getElementById("chart-hoster"));
  const series = function (names, pick, metric) {
    return names.map((name) => ({
      name: name, type: "line", connectNulls: false, showSymbol: true,
      data: pictures.map((pic) => {
        const row = pick(pic, name);
        return row ? row[metric] : null;
      }),
    }));
  };
  const metric = document.getElementById("metric");
  const draw = function () {
    const m = metric.value;
    const base = {
      tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "—" : L.int(v)) },
      legend: { type: "scroll", top: 0 },
      grid: { left: 60, right: 20, top: 40, bottom: 40 },
      xAxis: { type: "category", data: x },
      yAxis: { type: "value", minInterval: 1 },
    };
    chartCountry.setOption({ ...base, series: series(countries,
      (pic, c) => pic.by_country.find((r) => r.country === c), m) }, true);
    chartHoster.setOption({ ...base, series: series(hosters,
      (pic, k) => pic.by_hoster.find((r) => hosterKey(r) === k), m) }, true);
  };
  metric.addEventListener("change", draw);
  draw();

  const periodRows = periods.map((p, i) => ({
    period_start: p.period_start, period_end: p.period_end, matches: p.matches,
    distinct: p.distinct,
    countries_withheld: pictures[i].suppression ? pictures[i].suppression.by_country : 0,
    hosters_withheld: pictures[i].suppression ? pictures[i].suppression.by_hoster : 0,
  }));
  L.fill(document.getElementById("period-table"), periodRows, [
    { key: "period_start", fmt: L.time }, { key: "period_end", fmt: L.time },
    { key: "matches", num: true, fmt: L.int }, { key: "distinct", num: true, fmt: L.int },
    { key: "countries_withheld", num: true, fmt: L.int },
    { key: "hosters_withheld", num: true, fmt: L.int },
  ]);

  L.exportButtons(
    "trends",
    async () => L.csv(["period_start", "period_end", "kind", "country", "hoster", "asn",
      "matches", "distinct"], rows),
    async () => ({ tier: overall.tier, hash_family: family, periods: periodRows, rows: rows }),
  );
  L.ready();
});

/* Time series per country and per hoster: one GET /v1/picture per reported period. */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const MAX_PERIODS = 60;
  const TOP = 8;
  const resolved = await L.resolve();
  if (resolved === null) { L.ready(); return; }
  const params = resolved.params;
  const family = params.get("hash_family");
  const overall = await L.json("/v1/picture", params);
  L.describe(overall, resolved);
  Object.assign(L.csvContext, { params: params, generated_at: overall.generated_at, tier: overall.tier });
  const hosterName = params.get("hoster");
  if (hosterName || params.get("country") || params.get("asn")) {
    const what = [hosterName, params.get("asn") ? "AS" + params.get("asn") : null,
      params.get("country")].filter(Boolean).join(", ");
    document.getElementById("trend-scope").textContent = "Trend of " + what + ".";
    const up = document.getElementById("drill-up");
    up.href = L.link("/dashboard/hosters", { hoster: null, asn: null });
    up.hidden = false;
  }
  const periods = overall.by_period.slice(-MAX_PERIODS);
  if (overall.by_period.length > MAX_PERIODS) {
    L.status("showing the last " + MAX_PERIODS + " of " + overall.by_period.length +
      " periods; narrow the dates to see earlier ones");
  }
  const base = L.baseFilters();  // family, country, hoster, ASN: each period under the same filter
  const pictures = await Promise.all(periods.map((p) => {
    const q = new URLSearchParams(base);
    q.set("period_start", p.period_start);
    q.set("period_end", p.period_end);
    return L.json("/v1/picture", q);
  }));

  const hosterKey = (h) => h.hoster + " (AS" + h.asn + ", " + h.country + ")";
  const top = (rows, keyOf) => rows.slice(0, TOP).map(keyOf);  // API rows: most matches first
  const countries = top(overall.by_country, (r) => r.country);
  const hosters = top(overall.by_hoster, hosterKey);
  // Axis labels: dates alone when every period starts at midnight (UTC, named on the axis).
  const midnight = periods.every((p) => L.time(p.period_start).includes(" 00:00 "));
  const x = periods.map((p) => (midnight ? L.time(p.period_start).slice(0, 10)
    : L.time(p.period_start).slice(0, 16)));

  const rows = [];  // every (period, country|hoster) value, for export
  pictures.forEach((pic, i) => {
    for (const c of pic.by_country) {
      rows.push({ period_start: periods[i].period_start, period_end: periods[i].period_end,
        kind: "country", country: c.country, hoster: null, asn: null,
        matches: c.matches, distinct: c.distinct, distinct_exact: c.distinct_exact ?? null,
        distinct_lower: c.distinct_lower ?? null, distinct_upper: c.distinct_upper ?? null });
    }
    for (const h of pic.by_hoster) {
      rows.push({ period_start: periods[i].period_start, period_end: periods[i].period_end,
        kind: "hoster", country: h.country, hoster: h.hoster, asn: h.asn,
        matches: h.matches, distinct: h.distinct, distinct_exact: h.distinct_exact ?? null,
        distinct_lower: h.distinct_lower ?? null, distinct_upper: h.distinct_upper ?? null });
    }
  });

  const chartCountry = L.chart(document.getElementById("chart-country"), { table: "trend-table" });
  const chartHoster = L.chart(document.getElementById("chart-hoster"), { table: "trend-table" });
  const series = function (names, pick, metric) {
    return names.map((name) => ({
      name: name, type: "line", connectNulls: false, showSymbol: true,
      data: pictures.map((pic) => {
        const row = pick(pic, name);
        if (!row) return null;
        // Prevalence: matches per 10k images hashed (null where no report carried coverage).
        if (metric === "per_10k") return row.prevalence ? row.prevalence.per_10k : null;
        return row[metric];
      }),
    }));
  };
  const metric = document.getElementById("metric");
  // DP mode (issue 15): noisy matches only; distinct URLs and prevalence are not published.
  for (const option of metric.options) option.hidden = Boolean(overall.privacy) && option.value !== "matches";
  if (metric.selectedOptions[0] && metric.selectedOptions[0].hidden) metric.value = "matches";
  const unit = { matches: "matches", distinct: "distinct image URLs",
    per_10k: "matches per 10k images hashed" };
  const describe = function (el, title, names) {
    el.setAttribute("aria-label", "Line chart: " + title + " per report period (UTC), " +
      x.length + " periods, " + names.length + " lines" + (names.length ? ": " + names.join(", ") : "") +
      ". Every value is in the table Values per period below.");
  };
  const draw = function () {
    const m = metric.value;
    const opts = (title) => ({
      animation: !L.refreshing,  // an auto-refresh redraws in place, without the draw-in
      aria: { enabled: true, label: { enabled: true } },
      title: { text: title, left: 0, top: 0, textStyle: { fontSize: 14 } },
      tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "—"
        : m === "per_10k" ? L.dec(v) : L.int(v)) },
      legend: { type: "scroll", top: 24 },
      grid: { left: 10, right: 20, top: 84, bottom: 30, containLabel: true },
      xAxis: { type: "category", data: x, name: "period start (UTC)", nameLocation: "middle", nameGap: 30 },
      yAxis: { type: "value", minInterval: m === "per_10k" ? 0 : 1, name: unit[m],
        axisLabel: { formatter: (v) => (m === "per_10k" ? L.dec(v) : L.int(v)) } },
    });
    const cap = unit[m][0].toUpperCase() + unit[m].slice(1);
    chartCountry.setOption({ ...opts(cap + " per country"), series: series(countries,
      (pic, c) => pic.by_country.find((r) => r.country === c), m) }, true);
    chartHoster.setOption({ ...opts(cap + " per hoster"), series: series(hosters,
      (pic, k) => pic.by_hoster.find((r) => hosterKey(r) === k), m) }, true);
    describe(document.getElementById("chart-country"), unit[m] + " per country", countries);
    describe(document.getElementById("chart-hoster"), unit[m] + " per hoster", hosters);
  };
  metric.onchange = draw;  // a property: a refresh replaces it
  draw();

  const periodRows = periods.map((p, i) => ({
    period_start: p.period_start, period_end: p.period_end, matches: p.matches,
    distinct: p.distinct, distinct_exact: p.distinct_exact ?? null,
    distinct_lower: p.distinct_lower ?? null, distinct_upper: p.distinct_upper ?? null,
    images_hashed: pictures[i].totals.images_hashed,
    prevalence: pictures[i].totals.prevalence ?? null,
    countries_withheld: pictures[i].suppression ? pictures[i].suppression.by_country : 0,
    hosters_withheld: pictures[i].suppression ? pictures[i].suppression.by_hoster : 0,
  }));
  const periodTable = document.getElementById("period-table");
  L.fill(periodTable, periodRows, L.publishedColumns(periodTable, [
    { key: "period_start", fmt: L.time }, { key: "period_end", fmt: L.time },
    { key: "matches", num: true, fmt: L.int }, { key: "prevalence", num: true, fmt: L.prevalence },
    { key: "distinct", num: true, render: L.distinctCell },
    { key: "countries_withheld", num: true, fmt: L.int },
    { key: "hosters_withheld", num: true, fmt: L.int },
  ], overall, overall.privacy ? ["countries_withheld", "hosters_withheld"] : []));

  // The charts' text alternative: every drawn value, one row per period and line.
  const drawn = new Set([...countries.map((c) => "country\u0000" + c), ...hosters]);
  const valueRows = rows.filter((r) => (r.kind === "country" ? drawn.has("country\u0000" + r.country)
    : drawn.has(hosterKey(r))));
  const trendTable = document.getElementById("trend-table");
  L.fill(trendTable, valueRows, L.publishedColumns(trendTable, [
    { key: "period_start", fmt: L.time }, { key: "kind" },
    { key: "name", fmt: (_v, r) => (r.kind === "country" ? r.country : hosterKey(r)) },
    { key: "matches", num: true, fmt: L.int }, { key: "distinct", num: true, render: L.distinctCell },
  ], overall));

  // DP mode: every period's picture is its own noisy release, labelled like the first.
  const privacyNote = document.getElementById("suppression");
  privacyNote.hidden = !overall.privacy;
  privacyNote.textContent = overall.privacy ? L.privacyText(overall.privacy) + " A gap means " +
    "a noisy count of 0; each period is a release of its own." : "";

  L.exportButtons(
    "trends",
    async () => L.csv(["period_start", "period_end", "kind", "country", "hoster", "asn",
      "matches", "distinct"], rows),
    async () => ({ tier: overall.tier, privacy: overall.privacy || null, filters: overall.filters,
      generated_at: overall.generated_at,
      hash_family: family, periods: periodRows, rows: rows }),
  );
  L.ready();
});

/* Coverage: where the nodes crawled and how much (GET /v1/coverage), on a map where every
 * country without reported effort is grey ("not crawled"), with prevalence beside the counts. */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const UNKNOWN = "ZZ";
  const NOT_CRAWLED = "#c3c8ce";
  const METRICS = {
    images_hashed: { title: "Images hashed per country", unit: "images hashed" },
    pages_fetched: { title: "Pages fetched per country", unit: "pages fetched" },
    per_10k: { title: "Matches per 10,000 images hashed", unit: "per 10k images" },
  };
  const resolved = await L.resolve();
  if (resolved === null) { L.ready(); return; }
  const params = resolved.params;
  let coverage, world;
  try {
    [coverage, world] = await Promise.all([
      L.json("/v1/coverage", params),
      L.once("world", () => L.json("/dashboard/static/vendor/world.geo.json")),
    ]);
  } catch (error) {
    // DP mode (issue 15): coverage carries exact match counts, so viewers get a note instead.
    if (!L.showNotPublished(error)) throw error;
    L.ready();
    return;
  }
  const f = coverage.filters || {};
  L.describe({ by_period: resolved.all ? resolved.all.by_period
    : (await L.json("/v1/picture", L.baseFilters())).by_period,
    generated_at: coverage.generated_at, filters: f }, resolved);
  Object.assign(L.csvContext, { params: params, generated_at: coverage.generated_at, tier: null });
  if (!echarts.getMap("world")) echarts.registerMap("world", world);
  const points = window.LIBRA_TERRITORIES || {};
  const shapes = new Set(world.features.map((x) => x.properties.iso));
  let display = null;
  try { display = new Intl.DisplayNames(undefined, { type: "region" }); } catch (_e) { /* old browser */ }
  const atlasNames = {};
  for (const x of world.features) atlasNames[x.properties.iso] = x.properties.name;
  const nameOf = function (iso) {
    if (iso === UNKNOWN) return "Not attributable";
    try {
      const n = display ? display.of(iso) : null;
      if (n && n !== iso) return n;
    } catch (_e) { /* not a region code */ }
    return atlasNames[iso] || iso;
  };
  const rows = coverage.countries.map((r) => ({ ...r, name: nameOf(r.country),
    per_10k: r.prevalence ? r.prevalence.per_10k : null,
    drawn: shapes.has(r.country) ? "shape" : points[r.country] ? "point" : "none" }));

  const metric = document.getElementById("metric");
  const mapEl = document.getElementById("coverage-map");
  const chart = L.chart(mapEl, { table: "coverage-country-table" });
  const palette = ["#dbe9f6", "#9ecae1", "#4292c6", "#08519c"];
  const draw = function () {
    const key = metric.value;
    const m = METRICS[key];
    const value = (r) => (r[key] === null || r[key] === undefined ? 0 : r[key]);
    const shaded = rows.filter((r) => r.drawn !== "none");
    const max = Math.max(key === "per_10k" ? 0.01 : 1, ...shaded.map(value));
    const width = mapEl.clientWidth;
    const small = width < 560;
    chart.setOption({
      title: { left: 10, top: 6, text: m.title, subtext: "grey: not crawled; circles: small territories",
        textStyle: { fontSize: 14, width: width - 20, overflow: "break" },
        subtextStyle: { fontSize: 11, width: width - 20, overflow: "break" } },
      tooltip: { trigger: "item", formatter: (p) => {
        const iso = p.data && p.data.name ? p.data.name : p.name;
        const r = rows.find((x) => x.country === iso);
        return L.esc(nameOf(iso)) + " (" + L.esc(iso) + "): " + (r
          ? L.int(r.pages_fetched) + " pages, " + L.int(r.images_hashed) + " images, " +
            L.esc(L.prevalence(r.prevalence)) + " per 10k images"
          : "not crawled");
      } },
      geo: { map: "world", nameProperty: "iso", roam: true, top: small ? 84 : 60,
        bottom: small ? 60 : 20, left: small ? 5 : 90, right: small ? 5 : 10,
        itemStyle: { areaColor: NOT_CRAWLED, borderColor: "#8a96a3" },
        emphasis: { label: { show: false }, itemStyle: { areaColor: "#0b5cad" } },
        select: { disabled: true } },
      visualMap: [
        { id: "shade", seriesIndex: 0, min: 0, max: max, calculable: false,
          inRange: { color: palette }, text: [(key === "per_10k" ? L.dec(max) : L.int(max)) + " " + m.unit,
            key === "per_10k" ? "0" : "0 (crawled)"], textStyle: { fontSize: 11 },
          orient: small ? "horizontal" : "vertical", left: 10, bottom: 10,
          itemWidth: small ? 12 : 20, itemHeight: small ? 110 : 140 },
        { id: "points", seriesIndex: 1, dimension: 2, show: false, min: 0, max: max,
          inRange: { color: palette } },
      ],
      series: [
        // Regions without data keep the "not crawled" grey (not the palette's first colour).
        { id: "countries", type: "map", geoIndex: 0, name: m.unit,
          itemStyle: { color: NOT_CRAWLED, areaColor: NOT_CRAWLED },
          data: rows.filter((r) => r.drawn === "shape").map((r) => ({ name: r.country, value: value(r) })) },
        { id: "territories", type: "scatter", coordinateSystem: "geo", symbolSize: 9, name: m.unit,
          itemStyle: { borderColor: "#14212e", borderWidth: 1 }, z: 5,
          data: rows.filter((r) => r.drawn === "point").map((r) => ({ name: r.country,
            value: [...points[r.country], value(r)] })) },
      ],
    });
    const top = rows.filter((r) => r.country !== UNKNOWN).sort((a, b) => value(b) - value(a)).slice(0, 5);
    mapEl.setAttribute("aria-label", "World map of crawl coverage: " + m.title + ". Crawled: " +
      (top.length ? top.map((r) => r.name + " " + (key === "per_10k" ? L.dec(value(r)) : L.int(value(r))))
        .join(", ") : "no country") + ". Every other country was not crawled (grey). " +
      "Every value is in the table Countries crawled below.");
  };
  metric.onchange = draw;
  draw();
  L.listen(window, "resize", "coverage-resize", () => draw());
  chart.off("click");
  chart.on("click", (p) => {
    const iso = p.data && p.data.name ? p.data.name : p.name;
    if (iso && rows.some((r) => r.country === iso)) {
      window.location.assign(L.link("/dashboard/hosters", { country: iso }));
    }
  });

  const zz = rows.find((r) => r.country === UNKNOWN);
  document.getElementById("zz-value").textContent = zz
    ? L.int(zz.images_hashed) + " images hashed" : "none";
  const off = rows.filter((r) => r.drawn === "none" && r.country !== UNKNOWN);
  document.getElementById("off-map").hidden = !off.length;
  document.getElementById("off-map-list").replaceChildren(...off.map((r) => {
    const li = document.createElement("li");
    li.textContent = r.name + " (" + r.country + "): " + L.int(r.images_hashed) + " images hashed";
    return li;
  }));

  const t = coverage.totals;
  const totals = document.getElementById("totals");
  totals.replaceChildren(...[["Pages fetched", t.pages_fetched], ["Images hashed", t.images_hashed],
    ["Countries crawled", rows.filter((r) => r.country !== UNKNOWN).length],
    ["Hosters crawled", coverage.hosters.length], ["Nodes", t.nodes],
    ["Reports with coverage", t.reports]].map(([label, value]) => {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = L.int(value);
    dd.dataset.total = label;
    div.append(dt, dd);
    return div;
  }));
  document.getElementById("coverage-note").textContent = coverage.countries.length
    ? "Counted over the reports that said where they crawled (" + L.int(t.reports) +
      " report" + (t.reports === 1 ? "" : "s") + "); older nodes do not say, and their effort is not here."
    : "No report in this selection says where it crawled (older nodes do not): nothing to show.";

  L.fill(document.getElementById("coverage-country-table"), rows, [
    { key: "name", link: (r) => L.link("/dashboard/hosters", { country: r.country }) },
    { key: "country" }, { key: "pages_fetched", num: true, fmt: L.int },
    { key: "images_hashed", num: true, fmt: L.int }, { key: "hosters", num: true, fmt: L.int },
    { key: "nodes", num: true, fmt: L.int, withheld: true },
    { key: "matches", num: true, fmt: L.int, withheld: true },
    { key: "prevalence", num: true, fmt: L.prevalence },
  ]);
  L.fill(document.getElementById("coverage-hoster-table"), coverage.hosters, [
    { key: "hoster", link: (r) => L.link("/dashboard/trends", { hoster: r.hoster, asn: r.asn, country: r.country }) },
    { key: "asn", num: true }, { key: "country" },
    { key: "pages_fetched", num: true, fmt: L.int }, { key: "images_hashed", num: true, fmt: L.int },
    { key: "nodes", num: true, fmt: L.int, withheld: true },
    { key: "matches", num: true, fmt: L.int, withheld: true },
    { key: "prevalence", num: true, fmt: L.prevalence },
  ]);

  const columns = ["country", "asn", "hoster", "pages_fetched", "images_hashed", "nodes", "matches",
    "per_10k", "per_10k_lower", "per_10k_upper"];
  const flat = (r) => ({ ...r, per_10k: r.prevalence ? r.prevalence.per_10k : null,
    per_10k_lower: r.prevalence ? r.prevalence.lower : null,
    per_10k_upper: r.prevalence ? r.prevalence.upper : null });
  L.exportButtons("coverage",
    async () => L.csv(columns, [...coverage.countries.map((r) => flat({ ...r, asn: null, hoster: null })),
      ...coverage.hosters.map(flat)]),
    async () => coverage);
  L.ready();
});

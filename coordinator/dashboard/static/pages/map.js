/* World choropleth of hosting countries (from GET /v1/picture), small territories as points,
 * unattributable matches (ZZ) beside it, and the country table. */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const UNKNOWN = "ZZ";
  const resolved = await L.resolve();
  if (resolved === null) { L.ready(); return; }
  const params = resolved.params;
  const [picture, world] = await Promise.all([
    L.json("/v1/picture", params),
    L.once("world", () => L.json("/dashboard/static/vendor/world.geo.json")),
  ]);
  L.describe(picture, resolved);
  // What the matches are of (issue 13): the wording follows what matched, as the totals' labels.
  const byMedia = (picture.totals && picture.totals.by_media) || {};
  const listedWhat = !byMedia.video ? "images" : byMedia.image ? "images and videos" : "videos";
  const urlWhat = !byMedia.video ? "image" : byMedia.image ? "image and video" : "video";
  // DP mode (issue 15): noisy matches only; distinct URLs are not published.
  const dp = picture.privacy || null;
  const METRICS = {
    matches: { title: "Matches per hosting country" + (dp ? " (noisy)" : ""), unit: "matches",
      sub: "sightings of listed " + listedWhat + ", once per URL and crawl cycle " +
        (dp ? "(noisy: sums of hosters' noisy counts, \u03b5 = " + L.dec(dp.epsilon) + ")"
          : "(exact count)") },
    distinct: { title: "Distinct " + urlWhat + " URLs per hosting country",
      unit: "distinct " + urlWhat + " URLs",
      sub: "different matching " + urlWhat + " URLs (exact below 32,768, else within 2 %; see the table)" },
    hosters: { title: "Hosters per hosting country", unit: "hosters",
      sub: "hosters shown (withheld ones not counted)" },
  };
  Object.assign(L.csvContext, { params: params, generated_at: picture.generated_at, tier: picture.tier });
  if (!echarts.getMap("world")) echarts.registerMap("world", world);
  const points = window.LIBRA_TERRITORIES || {};
  const shapes = new Set(world.features.map((f) => f.properties.iso));
  // Country names in the reader's language; the atlas's English names where the browser has none.
  const atlasNames = {};
  for (const f of world.features) atlasNames[f.properties.iso] = f.properties.name;
  let display = null;
  try { display = new Intl.DisplayNames(undefined, { type: "region" }); } catch (_e) { /* old browser */ }
  const nameOf = function (iso) {
    if (iso === UNKNOWN) return "Not attributable";
    try {
      const n = display ? display.of(iso) : null;
      if (n && n !== iso) return n;
    } catch (_e) { /* not a region code */ }
    return atlasNames[iso] || iso;
  };

  // Hosters per country: the visible (not withheld) hoster rows of that country.
  const hosters = {};
  for (const h of picture.by_hoster) hosters[h.country] = (hosters[h.country] || 0) + 1;
  const rows = picture.by_country.map((r) => ({
    country: r.country,
    name: nameOf(r.country),
    matches: r.matches,
    distinct: r.distinct,
    distinct_exact: r.distinct_exact, distinct_lower: r.distinct_lower,
    distinct_upper: r.distinct_upper,
    hosters: hosters[r.country] || 0,
    nodes: r.nodes,
    images_hashed: r.images_hashed ?? null,
    prevalence: r.prevalence ?? null,
    drawn: shapes.has(r.country) ? "shape" : points[r.country] ? "point" : "none",
  }));

  if (dp) delete METRICS.distinct;
  const metric = document.getElementById("metric");
  for (const option of metric.options) option.hidden = !Object.hasOwn(METRICS, option.value);
  if (!Object.hasOwn(METRICS, metric.value)) metric.value = "matches";
  if (Object.hasOwn(METRICS, L.query.get("metric"))) metric.value = L.query.get("metric");
  const mapEl = document.getElementById("map");
  const chart = L.chart(mapEl, { table: "country-table" });
  const palette = ["#fde0c5", "#f59e60", "#c2410c", "#7c1d06"];
  chart.setOption({
    title: { left: 10, top: 6, textStyle: { fontSize: 14, lineHeight: 18 },
      subtextStyle: { fontSize: 11, lineHeight: 14 } },
    tooltip: {
      trigger: "item",
      formatter: (p) => {
        const iso = p.data && p.data.name ? p.data.name : p.name;
        const v = Array.isArray(p.value) ? p.value[2] : p.value;
        return L.esc(nameOf(iso)) + " (" + L.esc(iso) + "): " +
          (typeof v === "number" && !isNaN(v) ? L.int(v) + " " + L.esc(METRICS[metric.value].unit)
            : "no data, or withheld");
      },
    },
    geo: {
      map: "world", nameProperty: "iso", roam: true, top: 60, bottom: 20,
      itemStyle: { areaColor: "#e6eaee", borderColor: "#9aa7b3" },
      emphasis: { label: { show: false }, itemStyle: { areaColor: "#0b5cad" } },
      select: { disabled: true },
    },
    // One legend (the first): metric and unit on top, each end labelled once. The second
    // shades the territory points the same way and is not shown.
    visualMap: [
      { id: "shade", seriesIndex: 0, min: 0, max: 1, left: 10, bottom: 10, calculable: false,
        inRange: { color: palette }, textStyle: { fontSize: 11 } },
      { id: "points", seriesIndex: 1, dimension: 2, show: false, min: 0, max: 1,
        inRange: { color: palette } },
    ],
    series: [
      // Regions without data keep the blank colour (not the palette's first colour).
      { id: "countries", type: "map", geoIndex: 0, data: [],
        itemStyle: { color: "#e6eaee", areaColor: "#e6eaee" } },
      { id: "territories", type: "scatter", coordinateSystem: "geo", symbolSize: 9, data: [],
        itemStyle: { borderColor: "#14212e", borderWidth: 1 }, z: 5 },
    ],
  });
  // A metric change merges new data into the same series (re-creating the map series on
  // every change is needless work for ECharts' geo layout).
  const draw = function () {
    const key = metric.value;
    const m = METRICS[key];
    const data = rows.filter((r) => r.drawn === "shape").map((r) => ({ name: r.country, value: r[key] }));
    const dots = rows.filter((r) => r.drawn === "point")
      .map((r) => ({ name: r.country, value: [...points[r.country], r[key]] }));
    const max = Math.max(1, ...rows.filter((r) => r.drawn !== "none").map((r) => r[key]));
    // Narrow screens: the legend lies under the map instead of over it; titles wrap.
    const width = mapEl.clientWidth;
    const small = width < 560;
    chart.setOption({
      title: { text: m.title, subtext: m.sub + "; circles: small territories; grey: none or withheld",
        textStyle: { width: width - 20, overflow: "break" },
        subtextStyle: { width: width - 20, overflow: "break" } },
      geo: { top: small ? 84 : 60, bottom: small ? 60 : 20, left: small ? 5 : 90,
        right: small ? 5 : 10 },
      visualMap: [{ id: "shade", max: max, text: [L.int(max) + " " + m.unit, "0"],
        orient: small ? "horizontal" : "vertical", left: 10, bottom: 10,
        itemWidth: small ? 12 : 20, itemHeight: small ? 110 : 140 },
        { id: "points", max: max }],
      series: [{ id: "countries", name: m.unit, data: data },
        { id: "territories", name: m.unit, data: dots }],
    });
    const top = rows.filter((r) => r.country !== UNKNOWN).sort((a, b) => b[key] - a[key]).slice(0, 5);
    mapEl.setAttribute("aria-label", "World map: " + m.title + " (" + m.sub + "). " +
      (top.length ? "Highest: " + top.map((r) => r.name + " " + L.int(r[key])).join(", ") + ". "
        : "No countries to show. ") + "Every value is in the table Hosting countries below.");
  };
  metric.onchange = draw;  // a property: a refresh replaces it
  draw();
  let lastWidth = mapEl.clientWidth;
  L.listen(window, "resize", "map-resize", () => {
    if (Math.abs(mapEl.clientWidth - lastWidth) > 40) { lastWidth = mapEl.clientWidth; draw(); }
  });
  // Drill-down: a country (shape or point) to its hosters.
  chart.off("click");
  chart.on("click", (p) => {
    const iso = p.data && p.data.name ? p.data.name : p.name;
    if (iso && /^[A-Z]{2}$/.test(iso)) window.location.assign(L.link("/dashboard/hosters", { country: iso }));
  });

  const zz = rows.find((r) => r.country === UNKNOWN);
  const total = picture.totals.matches;
  document.getElementById("zz-value").textContent = zz
    ? L.int(zz.matches) + " matches" + (total ? " (" + L.share(zz.matches / total) + " of all)" : "")
    : "none" + (picture.tier === "viewer" && picture.suppression && picture.suppression.by_country
      ? " shown" : "");
  const off = rows.filter((r) => r.drawn === "none" && r.country !== UNKNOWN);
  document.getElementById("off-map").hidden = !off.length;
  document.getElementById("off-map-list").replaceChildren(...off.map((r) => {
    const li = document.createElement("li");
    li.textContent = r.name + " (" + r.country + "): " + L.int(r.matches) + " matches";
    return li;
  }));

  // Issue 13: the URLs are of videos too once a video family matched (or only, when filtered).
  const distinctLabel = (t) => (!t.by_media || !t.by_media.video ? "Distinct image URLs"
    : t.by_media.image ? "Distinct image and video URLs" : "Distinct video URLs");
  const totals = document.getElementById("totals");
  totals.replaceChildren();
  const t = picture.totals;
  const items = [
    [dp ? "Matches (noisy)" : "Matches", t.matches],
    ...(dp ? [] : [[distinctLabel(t), t.distinct, L.distinctBound(t)]]),
    ["Pages fetched", picture.totals.pages_fetched], ["Images hashed", picture.totals.images_hashed],
    ["Hosts seen", picture.totals.hosts_seen], ["Reports", picture.reports], ["Nodes", picture.nodes],
  ];
  if (t.by_media && t.by_media.video) {  // issue 13: shown once any video family matched
    items.splice(1, 0, ["Image matches (incl. stills from listed videos)", t.by_media.image],
      ["Video matches", t.by_media.video]);
  }
  if (t.prevalence) items.push(["Matches per 10,000 images hashed", null, null, t.prevalence]);
  for (const [label, value, bound, rate] of items) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = rate ? L.prevalence(rate) : L.int(value);
    dd.dataset.total = label;
    if (bound) {
      const span = document.createElement("span");
      span.className = "bound";
      span.textContent = " (" + bound + ")";
      dd.appendChild(span);
    }
    div.append(dt, dd);
    totals.appendChild(div);
  }
  const countryTable = document.getElementById("country-table");
  L.fill(countryTable, rows, L.publishedColumns(countryTable, [
    { key: "name", link: (r) => L.link("/dashboard/hosters", { country: r.country }) },
    { key: "country" }, { key: "matches", num: true, fmt: L.int },
    { key: "distinct", num: true, render: L.distinctCell },
    { key: "prevalence", num: true, fmt: L.prevalence },
    { key: "hosters", num: true, fmt: L.int },
    { key: "nodes", num: true, fmt: L.int },
  ], picture));
  document.getElementById("suppression").textContent = L.suppressionText(picture, [
    ["by_country", "countries"], ["by_hoster", "hosters"],
  ]) + " Hosters per country count the hosters shown.";

  L.exportButtons(
    "countries",
    () => L.text("/v1/picture.csv", new URLSearchParams([...params, ["section", "by_country"]])),
    () => ({ filters: picture.filters, generated_at: picture.generated_at, tier: picture.tier,
      suppression: picture.suppression, privacy: picture.privacy || null, totals: picture.totals,
      by_country: dp ? rows.map(({ distinct, distinct_exact, distinct_lower, distinct_upper,
        nodes, prevalence, images_hashed, ...kept }) => kept) : rows }),
  );
  L.ready();
});

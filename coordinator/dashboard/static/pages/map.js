/* World choropleth of hosting countries (from GET /v1/picture) and its table. */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const params = L.apiFilters();
  const [picture, world] = await Promise.all([
    L.json("/v1/picture", params),
    L.json("/dashboard/static/vendor/world.geo.json"),
  ]);
  echarts.registerMap("world", world);
  const names = {};
  for (const f of world.features) names[f.properties.iso] = f.properties.name;

  // Hosters per country: the visible (not withheld) hoster rows of that country.
  const hosters = {};
  for (const h of picture.by_hoster) hosters[h.country] = (hosters[h.country] || 0) + 1;
  const rows = picture.by_country.map((r) => ({
    country: r.country,
    name: names[r.country] || r.country,
    matches: r.matches,
    distinct: r.distinct,
    hosters: hosters[r.country] || 0,
    nodes: r.nodes,
  }));

  const metric = document.getElementById("metric");
  if (["matches", "distinct", "hosters"].includes(L.query.get("metric"))) {
    metric.value = L.query.get("metric");
  }
  const chart = L.chart(document.getElementById("map"));
  chart.setOption({
    tooltip: {
      trigger: "item",
      formatter: (p) => L.esc(names[p.name] || p.name) + ": " +
        (typeof p.value === "number" && !isNaN(p.value)
          ? L.int(p.value) + " " + L.esc(metric.value) : "no data, or withheld"),
    },
    visualMap: {
      min: 0, max: 1, left: "left", bottom: 10, calculable: true,
      inRange: { color: ["#fde0c5", "#f59e60", "#c2410c", "#7c1d06"] },
    },
    series: [{
      id: "countries", type: "map", map: "world", nameProperty: "iso", roam: true,
      data: [], itemStyle: { areaColor: "#e6eaee", borderColor: "#9aa7b3" },
      emphasis: { label: { show: false }, itemStyle: { areaColor: "#0b5cad" } },
    }],
  });
  // A metric change merges new data into the same series (re-creating the map series on
  // every change is needless work for ECharts' geo layout).
  const draw = function () {
    const key = metric.value;
    const data = rows.map((r) => ({ name: r.country, value: r[key] }));
    const max = Math.max(1, ...data.map((d) => d.value));
    chart.setOption({
      visualMap: { max: max, text: [L.int(max), "0"] },
      series: [{ id: "countries", name: key, data: data }],
    });
  };
  metric.addEventListener("change", draw);
  draw();

  const totals = document.getElementById("totals");
  const items = [
    ["Matches", picture.totals.matches], ["Distinct items", picture.totals.distinct],
    ["Pages fetched", picture.totals.pages_fetched], ["Images hashed", picture.totals.images_hashed],
    ["Hosts seen", picture.totals.hosts_seen], ["Reports", picture.reports], ["Nodes", picture.nodes],
  ];
  for (const [label, value] of items) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = L.int(value);
    dd.dataset.total = label;
    div.append(dt, dd);
    totals.appendChild(div);
  }
  L.fill(document.getElementById("country-table"), rows, [
    { key: "name" }, { key: "country" }, { key: "matches", num: true, fmt: L.int },
    { key: "distinct", num: true, fmt: L.int }, { key: "hosters", num: true, fmt: L.int },
    { key: "nodes", num: true, fmt: L.int },
  ]);
  document.getElementById("suppression").textContent = L.suppressionText(picture, [
    ["by_country", "countries"], ["by_hoster", "hosters"],
  ]) + " Hosters per country count the hosters shown.";

  L.exportButtons(
    "countries",
    () => L.text("/v1/picture.csv", new URLSearchParams([...params, ["section", "by_country"]])),
    () => ({ filters: picture.filters, tier: picture.tier, suppression: picture.suppression,
      totals: picture.totals, by_country: rows }),
  );
  L.ready();
});

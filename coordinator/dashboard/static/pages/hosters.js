/* Top hosters and ASNs (GET /v1/picture) with time to removal (GET /v1/picture/removals). */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const resolved = await L.resolve();
  if (resolved === null) { L.ready(); return; }
  const params = resolved.params;
  const picture = await L.json("/v1/picture", params);
  L.describe(picture, resolved);
  Object.assign(L.csvContext, { params: params, generated_at: picture.generated_at, tier: picture.tier });
  const country = params.get("country");
  if (country) {
    document.getElementById("hosters-title").textContent = "Top hosters in " + country;
    const back = document.getElementById("drill-up");
    back.href = L.link("/dashboard/", { country: null });
    back.hidden = false;
  }

  // Time to removal comes from nodes that send notices; older coordinators lack the endpoint.
  const removalParams = new URLSearchParams();
  for (const k of ["period_start", "period_end"]) if (params.has(k)) removalParams.set(k, params.get(k));
  let removals = null;
  const note = document.getElementById("removals-note");
  try {
    removals = await L.json("/v1/picture/removals", removalParams);
  } catch (error) {
    if (error.status !== 404) throw error;
    note.textContent = "This coordinator does not serve time-to-removal figures (— in the table).";
  }
  const removalOf = {};
  if (removals) {
    for (const r of removals.rows) removalOf[r.hoster + "\u0000" + r.asn + "\u0000" + r.country] = r;
    note.textContent = removals.rows.length
      ? "Time to removal: from notices nodes sent; — where no node reports removals." +
        (removals.suppressed ? " " + removals.suppressed + " rows withheld by suppression." : "")
      : "No node reports removals for this selection (— in the table).";
  }
  // Found by: the share of matches found disguised (mirrored/rotated, framed, cropped) among
  // those whose node said how it found them; null (—) when no node said.
  const disguisedShare = (m) => {
    if (!m) return null;
    const said = m.direct + m.dihedral + m.trimmed + m.region;
    return said ? (m.dihedral + m.trimmed + m.region) / said : null;
  };
  const rows = picture.by_hoster.map((h) => {
    const r = removalOf[h.hoster + "\u0000" + h.asn + "\u0000" + h.country] || {};
    const m = h.by_method || null;
    return {
      hoster: h.hoster, asn: h.asn, country: h.country, matches: h.matches,
      prevalence: h.prevalence ?? null, images_hashed: h.images_hashed ?? null,
      per_10k: h.prevalence ? h.prevalence.per_10k : null,
      per_10k_lower: h.prevalence ? h.prevalence.lower : null,
      per_10k_upper: h.prevalence ? h.prevalence.upper : null,
      distinct: h.distinct, distinct_exact: h.distinct_exact ?? null,
      distinct_lower: h.distinct_lower ?? null, distinct_upper: h.distinct_upper ?? null,
      nodes: h.nodes, disguised: disguisedShare(m),
      found_direct: m ? m.direct : null, found_dihedral: m ? m.dihedral : null,
      found_trimmed: m ? m.trimmed : null, found_region: m ? m.region : null,
      found_unspecified: m ? m.unspecified : null,
      notices_sent: r.notices_sent ?? null, share_removed_24h: r.share_removed_24h ?? null,
      share_removed_72h: r.share_removed_72h ?? null, median_seconds: r.median_seconds ?? null,
      p90_seconds: r.p90_seconds ?? null,
    };
  });
  // Drill-down: a hoster to its trend, a country to its hosters.
  const trendOf = (r) => L.link("/dashboard/trends", { hoster: r.hoster, asn: r.asn, country: r.country });
  L.fill(document.getElementById("hoster-table"), rows, [
    { key: "hoster", link: trendOf }, { key: "asn", num: true },
    { key: "country", link: (r) => L.link("/dashboard/hosters", { country: r.country }) },
    { key: "matches", num: true, fmt: L.int }, { key: "prevalence", num: true, fmt: L.prevalence },
    { key: "distinct", num: true, render: L.distinctCell },
    { key: "nodes", num: true, fmt: L.int }, { key: "disguised", num: true, fmt: L.share },
    { key: "notices_sent", num: true, fmt: L.int },
    { key: "share_removed_24h", num: true, fmt: L.share },
    { key: "share_removed_72h", num: true, fmt: L.share },
    { key: "median_seconds", num: true, fmt: L.duration },
    { key: "p90_seconds", num: true, fmt: L.duration },
  ]);

  // ASNs: hoster rows summed per ASN. Distinct counts cannot be summed (one item may sit on
  // several hosters), so only matches are shown.
  const byAsn = new Map();
  for (const h of picture.by_hoster) {
    const a = byAsn.get(h.asn) || { asn: h.asn, hosters: new Set(), countries: new Set(), matches: 0 };
    a.hosters.add(h.hoster);
    a.countries.add(h.country);
    a.matches += h.matches;
    byAsn.set(h.asn, a);
  }
  const asnRows = [...byAsn.values()]
    .map((a) => ({ asn: a.asn, hosters: [...a.hosters].sort().join("; "),
      countries: [...a.countries].sort().join("; "), matches: a.matches }))
    .sort((a, b) => b.matches - a.matches || a.asn - b.asn);
  L.fill(document.getElementById("asn-table"), asnRows, [
    { key: "asn", num: true, link: (r) => L.link("/dashboard/hosters", { asn: r.asn }) },
    { key: "hosters" }, { key: "countries" },
    { key: "matches", num: true, fmt: L.int },
  ]);

  const chartEl = document.getElementById("chart-hosters");
  const chart = L.chart(chartEl, { table: "hoster-table" });
  const top = rows.slice(0, 15).reverse();
  chartEl.setAttribute("aria-label", "Bar chart: matches of the top " + top.length + " hosters" +
    (country ? " in " + country : "") + ". " + rows.slice(0, 5).map((r) => r.hoster + " " +
    L.int(r.matches)).join(", ") + ". Every value is in the table Top hosters below.");
  chart.setOption({
    title: { text: "Matches per hoster" + (country ? " in " + country : ""), left: 0, top: 0,
      textStyle: { fontSize: 14 } },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" },
      formatter: (ps) => L.esc(ps[0].name) + ": " + L.int(ps[0].value) + " matches" },
    grid: { left: 10, right: 30, top: 34, bottom: 40, containLabel: true },
    xAxis: { type: "value", minInterval: 1, name: "matches", nameLocation: "middle", nameGap: 24,
      axisLabel: { formatter: (v) => L.int(v) } },
    yAxis: { type: "category", data: top.map((r) => r.hoster + " · AS" + r.asn),
      axisLabel: { width: Math.min(190, Math.max(80, chartEl.clientWidth * 0.4)), overflow: "truncate" } },
    series: [{ id: "hosters", type: "bar", barMaxWidth: 28, data: top.map((r) => r.matches),
      itemStyle: { color: "#c2410c" }, label: { show: true, position: "right", formatter: (p) => L.int(p.value) } }],
  });
  document.getElementById("suppression").textContent = L.suppressionText(picture, [["by_hoster", "hosters"]]);

  const hosterColumns = ["hoster", "asn", "country", "matches", "images_hashed", "per_10k",
    "per_10k_lower", "per_10k_upper", "distinct", "distinct_exact", "distinct_lower",
    "distinct_upper", "nodes", "disguised",
    "found_direct", "found_dihedral", "found_trimmed", "found_region", "found_unspecified",
    "notices_sent",
    "share_removed_24h", "share_removed_72h", "median_seconds", "p90_seconds"];
  L.exportButtons("hosters", async () => L.csv(hosterColumns, rows),
    async () => ({ filters: picture.filters, generated_at: picture.generated_at, tier: picture.tier, suppression: picture.suppression,
      removals_period: removals ? removals.period : null, hosters: rows }));
  L.exportButtons("asns", async () => L.csv(["asn", "hosters", "countries", "matches"], asnRows),
    async () => ({ filters: picture.filters, tier: picture.tier, asns: asnRows }),
    ["export-asn-csv", "export-asn-json"]);
  L.ready();
});

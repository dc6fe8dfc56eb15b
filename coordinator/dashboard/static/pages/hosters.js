/* Top hosters and ASNs (GET /v1/picture) with time to removal (GET /v1/picture/removals) and
 * the new material found beside the known (GET /v1/picture/discovery, issue 14). */
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
  let removalsRefused = false;  // DP mode: no time-to-removal columns at all
  const note = document.getElementById("removals-note");
  try {
    removals = await L.json("/v1/picture/removals", removalParams);
  } catch (error) {
    if (error.status !== 404) throw error;
    removalsRefused = error.code === "not_published";
    note.textContent = error.code === "not_published"  // DP mode (issue 15): exact counts
      ? "Time to removal is not published under differential privacy."
      : "This coordinator does not serve time-to-removal figures (— in the table).";
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
  // DP mode (issue 15): columns the noisy picture does not publish are not shown at all.
  const hosterTable = document.getElementById("hoster-table");
  L.fill(hosterTable, rows, L.publishedColumns(hosterTable, [
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
  ], picture, removalsRefused ? ["notices_sent", "share_removed_24h", "share_removed_72h",
    "median_seconds", "p90_seconds"] : []));

  // New material (issue 14): candidates found and verdicts given, per hoster. The same period
  // and place filters as the picture; it has no hash families. Older coordinators lack it.
  const discoveryParams = new URLSearchParams();
  for (const k of ["period_start", "period_end", "country", "asn", "hoster"]) {
    if (params.has(k)) discoveryParams.set(k, params.get(k));
  }
  let discovery = null;
  const discoveryNote = document.getElementById("discovery-note");
  const discoveryUnit = document.getElementById("discovery-unit");
  try {
    discovery = await L.json("/v1/picture/discovery", discoveryParams);
  } catch (error) {
    if (error.status !== 404) throw error;
    discoveryNote.textContent = error.code === "not_published"
      ? "New material is not published under differential privacy."
      : "This coordinator does not serve new-material figures.";
    // DP mode: an empty table under its note would look like "nothing found".
    document.getElementById("discovery-table").closest(".table-wrap").hidden =
      error.code === "not_published";
  }
  if (discovery) {
    const found = discovery.by_period;
    const period = discovery.period.start || discovery.period.end
      ? L.time(discovery.period.start) + " – " + L.time(discovery.period.end)
      : found.length
        ? "all reports, " + L.time(found[0].period_start) + " – " + L.time(found[found.length - 1].period_end)
        : "all reports";
    discoveryUnit.textContent = "Unit: images (each image counted once, near-duplicates " +
      "included). Period: " + period + "; candidates counted in the period their node first " +
      "found them, confirmations and rejections in the period they were decided.";
    const t = discovery.totals;
    discoveryNote.textContent = "In all: " + L.int(t.candidates) + " candidates found, " +
      L.int(t.confirmed) + " confirmed, " + L.int(t.rejected) + " rejected, from " +
      L.int(t.nodes) + " node" + (t.nodes === 1 ? "" : "s") + "." +
      (discovery.suppressed.by_hoster ? " " + discovery.suppressed.by_hoster +
        " hoster rows withheld by suppression (fewer nodes or smaller counts than the threshold)." : "");
    L.fill(document.getElementById("discovery-table"), discovery.rows, [
      { key: "hoster", link: trendOf }, { key: "asn", num: true },
      { key: "country", link: (r) => L.link("/dashboard/hosters", { country: r.country }) },
      { key: "candidates", num: true, fmt: L.int }, { key: "confirmed", num: true, fmt: L.int },
      { key: "rejected", num: true, fmt: L.int }, { key: "nodes", num: true, fmt: L.int },
    ]);
  }

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
  const asnTable = document.getElementById("asn-table");
  L.fill(asnTable, asnRows, L.publishedColumns(asnTable, [
    { key: "asn", num: true, link: (r) => L.link("/dashboard/hosters", { asn: r.asn }) },
    { key: "hosters" }, { key: "countries" },
    { key: "matches", num: true, fmt: L.int },
  ], picture));

  const chartEl = document.getElementById("chart-hosters");
  const chart = L.chart(chartEl, { table: "hoster-table" });
  const top = rows.slice(0, 15).reverse();
  chartEl.setAttribute("aria-label", "Bar chart: matches of the top " + top.length + " hosters" +
    (country ? " in " + country : "") + ". " + rows.slice(0, 5).map((r) => r.hoster + " " +
    L.int(r.matches)).join(", ") + ". Every value is in the table Top hosters below.");
  const noisy = picture.privacy ? " (noisy, \u03b5 = " + L.dec(picture.privacy.epsilon) + ")" : "";
  chart.setOption({
    title: { text: "Matches per hoster" + (country ? " in " + country : "") + noisy, left: 0, top: 0,
      textStyle: { fontSize: 14 } },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" },
      formatter: (ps) => L.esc(ps[0].name) + ": " + L.int(ps[0].value) +
        (picture.privacy ? " matches (noisy)" : " matches") },
    grid: { left: 10, right: 30, top: 34, bottom: 40, containLabel: true },
    xAxis: { type: "value", minInterval: 1, name: "matches", nameLocation: "middle", nameGap: 24,
      axisLabel: { formatter: (v) => L.int(v) } },
    yAxis: { type: "category", data: top.map((r) => r.hoster + " · AS" + r.asn),
      axisLabel: { width: Math.min(190, Math.max(80, chartEl.clientWidth * 0.4)), overflow: "truncate" } },
    series: [{ id: "hosters", type: "bar", barMaxWidth: 28, data: top.map((r) => r.matches),
      itemStyle: { color: "#c2410c" }, label: { show: true, position: "right", formatter: (p) => L.int(p.value) } }],
  });
  document.getElementById("suppression").textContent = L.suppressionText(picture, [["by_hoster", "hosters"]]);

  // DP mode: exports leave out what the noisy picture does not publish, as the table does.
  const dropped = picture.privacy
    ? /^(images_hashed|prevalence|per_10k|distinct|nodes|disguised|found_)/ : null;
  const hosterColumns = ["hoster", "asn", "country", "matches", "images_hashed", "per_10k",
    "per_10k_lower", "per_10k_upper", "distinct", "distinct_exact", "distinct_lower",
    "distinct_upper", "nodes", "disguised",
    "found_direct", "found_dihedral", "found_trimmed", "found_region", "found_unspecified",
    "notices_sent",
    "share_removed_24h", "share_removed_72h", "median_seconds", "p90_seconds"]
    .filter((c) => !dropped || !dropped.test(c));
  const exportRows = dropped ? rows.map((r) => Object.fromEntries(
    Object.entries(r).filter(([k]) => !dropped.test(k)))) : rows;
  L.exportButtons("hosters", async () => L.csv(hosterColumns, exportRows),
    async () => ({ filters: picture.filters, generated_at: picture.generated_at, tier: picture.tier, suppression: picture.suppression,
      privacy: picture.privacy || null,
      removals_period: removals ? removals.period : null, hosters: exportRows,
      new_material: discovery ? { period: discovery.period, tier: discovery.tier,
        totals: discovery.totals, suppressed: discovery.suppressed, rows: discovery.rows } : null }));
  L.exportButtons("asns", async () => L.csv(["asn", "hosters", "countries", "matches"], asnRows),
    async () => ({ filters: picture.filters, tier: picture.tier, asns: asnRows }),
    ["export-asn-csv", "export-asn-json"]);
  L.ready();
});

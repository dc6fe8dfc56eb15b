/* Admin: the node registry with report activity and key expiry (GET /v1/nodes). */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const SOON_DAYS = 14;
  const data = await L.json("/v1/nodes");
  const now = Date.now();
  const rows = data.nodes.map((n) => {
    const active = n.keys.filter((k) => !k.revoked_at);
    const limits = active.filter((k) => k.valid_until).map((k) => k.valid_until).sort();
    // A key without valid_until stays valid until revoked; with several, the latest counts.
    const unlimited = active.some((k) => !k.valid_until);
    const expiry = unlimited || !limits.length ? null : limits[limits.length - 1];
    const days = expiry ? (Date.parse(expiry) - now) / 86400000 : null;
    return {
      node_id: n.node_id, country: n.country, status: n.status, reports: n.reports,
      last_report_at: n.last_report_at, active_keys: active.length,
      key_expiry: expiry, key_state: !active.length ? "no active key"
        : expiry === null ? "until revoked" : days < 0 ? "expired" : days < SOON_DAYS ? "expires soon" : "ok",
    };
  });
  L.fill(document.getElementById("node-table"), rows, [
    { key: "node_id" }, { key: "country" }, { key: "status" },
    { key: "reports", num: true, fmt: L.int }, { key: "last_report_at", fmt: L.time },
    { key: "active_keys", num: true },
    { key: "key_expiry", fmt: (v, r) => (v ? L.time(v) + " (" + r.key_state + ")" : r.key_state) },
  ], (r) => (r.key_state === "expired" || r.key_state === "no active key" ? "bad"
    : r.key_state === "expires soon" || r.status !== "active" ? "warn" : ""));
  const count = (s) => rows.filter((r) => r.status === s).length;
  document.getElementById("summary").textContent = rows.length + " nodes: " + count("active") +
    " active, " + count("pending") + " pending approval.";
  L.exportButtons("nodes",
    async () => L.csv(["node_id", "country", "status", "reports", "last_report_at", "active_keys",
      "key_expiry", "key_state"], rows),
    async () => data);
  L.ready();
});

/* Admin: the node registry with report activity and key expiry (GET /v1/nodes), and the
 * write actions: approve an enrolled node, revoke a node, revoke one key. */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const SOON_DAYS = 14;
  const ACTIONS = "/dashboard/admin/actions";
  let data = null;
  let rows = [];
  const table = document.getElementById("node-table");

  const act = async function (question, path, done) {
    if (!window.confirm(question)) return;
    try {
      await L.post(path);
      L.status(done);
      await load();
    } catch (error) {
      L.status(error.message, true);
    }
  };
  const button = function (label, css, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "act " + css;
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  };
  const actions = function (row, td) {
    if (row.status === "pending") {
      td.appendChild(button("Approve", "approve", () => act("Approve node " + row.node_id + "?",
        ACTIONS + "/members/" + encodeURIComponent(row.node_id) + "/approve",
        "Node " + row.node_id + " approved.")));
    }
    if (row.status !== "revoked") {
      td.appendChild(button("Revoke node", "revoke-node", () => act(
        "Revoke node " + row.node_id + " and every key it holds? Its reports are refused from now on.",
        ACTIONS + "/members/" + encodeURIComponent(row.node_id) + "/revoke",
        "Node " + row.node_id + " revoked.")));
    }
    for (const key of row.keys.filter((k) => !k.revoked_at)) {
      td.appendChild(button("Revoke key " + key.key_id.slice(0, 12), "revoke-key", () => act(
        "Revoke key " + key.key_id + " of node " + row.node_id + "?",
        ACTIONS + "/keys/" + encodeURIComponent(key.key_id) + "/revoke",
        "Key " + key.key_id + " revoked.")));
    }
  };

  const load = async function () {
    data = await L.json("/v1/nodes");
    const now = L.now();
    rows = data.nodes.map((n) => {
      const active = n.keys.filter((k) => !k.revoked_at);
      const limits = active.filter((k) => k.valid_until).map((k) => k.valid_until).sort();
      // A key without valid_until stays valid until revoked; with several, the latest counts.
      const unlimited = active.some((k) => !k.valid_until);
      const expiry = unlimited || !limits.length ? null : limits[limits.length - 1];
      const days = expiry ? (Date.parse(expiry) - now) / 86400000 : null;
      return {
        node_id: n.node_id, country: n.country, status: n.status, reports: n.reports,
        last_report_at: n.last_report_at, active_keys: active.length, keys: n.keys,
        key_expiry: expiry, key_state: !active.length ? "no active key"
          : expiry === null ? "until revoked" : days < 0 ? "expired" : days < SOON_DAYS ? "expires soon" : "ok",
      };
    });
    L.fill(table, rows, [
      { key: "node_id" }, { key: "country" }, { key: "status" },
      { key: "reports", num: true, fmt: L.int }, { key: "last_report_at", fmt: L.time },
      { key: "active_keys", num: true, fmt: L.int },
      { key: "key_expiry", fmt: (v, r) => (v ? L.time(v) + " (" + r.key_state + ")" : r.key_state) },
      { key: "actions", render: actions },
    ], (r) => (r.key_state === "expired" || r.key_state === "no active key" ? "bad"
      : r.key_state === "expires soon" || r.status !== "active" ? "warn" : ""));
    const count = (s) => rows.filter((r) => r.status === s).length;
    document.getElementById("summary").textContent = L.int(rows.length) + " nodes: " +
      L.int(count("active")) + " active, " + L.int(count("pending")) + " pending approval.";
  };
  await load();
  L.exportButtons("nodes",
    async () => L.csv(["node_id", "country", "status", "reports", "last_report_at", "active_keys",
      "key_expiry", "key_state"], rows),
    async () => data);
  L.ready();
});

/* Admin: enrollment invitations (GET /v1/invitations); codes are never stored or shown. */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const data = await L.json("/v1/invitations");
  const all = data.invitations.slice().sort((a, b) =>
    (a.state === "pending" ? 0 : 1) - (b.state === "pending" ? 0 : 1) ||
    b.created_at.localeCompare(a.created_at));
  const showAll = document.getElementById("show-all");
  const draw = function () {
    const rows = showAll.checked ? all : all.filter((r) => r.state === "pending");
    L.fill(document.getElementById("invitation-table"), rows, [
      { key: "invitation_id" }, { key: "country" }, { key: "state" },
      { key: "created_at", fmt: L.time }, { key: "created_by" }, { key: "expires_at", fmt: L.time },
      { key: "used_by_node" }, { key: "note" },
    ], (r) => (r.state === "expired" ? "warn" : ""));
  };
  showAll.addEventListener("change", draw);
  draw();
  const pending = all.filter((r) => r.state === "pending").length;
  document.getElementById("summary").textContent = pending + " pending of " + all.length + " invitations.";
  const columns = ["invitation_id", "country", "state", "created_at", "created_by", "expires_at",
    "used_at", "used_by_node", "note"];
  L.exportButtons("invitations", async () => L.csv(columns, all), async () => data);
  L.ready();
});

/* Admin: enrollment invitations (GET /v1/invitations); create and revoke them. A new code is
 * shown once, here, and never stored (the coordinator keeps only its SHA-256). */
"use strict";
LIBRA.run(async function () {
  const L = LIBRA;
  const ACTIONS = "/dashboard/admin/actions";
  const showAll = document.getElementById("show-all");
  let data = null;
  let all = [];

  const revoke = async function (row) {
    if (!window.confirm("Revoke invitation " + row.invitation_id + " (" + row.country + ")? " +
      "Its code stops working now.")) return;
    try {
      await L.post(ACTIONS + "/invitations/" + encodeURIComponent(row.invitation_id) + "/revoke");
      L.status("Invitation " + row.invitation_id + " revoked.");
      await load();
    } catch (error) {
      L.status(error.message, true);
    }
  };
  const actions = function (row, td) {
    if (row.state !== "pending") return;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "act revoke-invitation";
    b.textContent = "Revoke";
    b.addEventListener("click", () => revoke(row));
    td.appendChild(b);
  };
  const draw = function () {
    const rows = showAll.checked ? all : all.filter((r) => r.state === "pending");
    L.fill(document.getElementById("invitation-table"), rows, [
      { key: "invitation_id" }, { key: "country" }, { key: "state" },
      { key: "created_at", fmt: L.time }, { key: "created_by" }, { key: "expires_at", fmt: L.time },
      { key: "used_by_node" }, { key: "note" }, { key: "actions", render: actions },
    ], (r) => (r.state === "expired" ? "warn" : ""));
    const pending = all.filter((r) => r.state === "pending").length;
    document.getElementById("summary").textContent = L.int(pending) + " pending of " +
      L.int(all.length) + " invitations.";
  };
  const load = async function () {
    data = await L.json("/v1/invitations");
    all = data.invitations.slice().sort((a, b) =>
      (a.state === "pending" ? 0 : 1) - (b.state === "pending" ? 0 : 1) ||
      b.created_at.localeCompare(a.created_at));
    draw();
  };
  showAll.addEventListener("change", draw);

  const form = document.getElementById("new-invitation");
  const issued = document.getElementById("issued");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const country = form.elements.country.value.trim().toUpperCase();
    const hours = form.elements.ttl_hours.value.trim();
    if (!/^[A-Z]{2}$/.test(country)) {
      L.status("Country must be an ISO 3166 alpha-2 code such as DE.", true);
      return;
    }
    if (hours && !(Number(hours) > 0 && Number(hours) <= 24 * 90)) {
      L.status("Lifetime must be between 0 and 2160 hours (90 days).", true);
      return;
    }
    const body = { country: country };
    if (hours) body.ttl_hours = Number(hours);
    const note = form.elements.note.value.trim();
    if (note) body.note = note;
    try {
      const made = await L.post(ACTIONS + "/invitations", body);
      const code = document.createElement("code");
      code.id = "issued-code";
      code.textContent = made.code;
      issued.replaceChildren("Invitation " + made.invitation_id + " for " + made.country +
        ", valid until " + L.time(made.expires_at) + ". Hand this code to the node's operator " +
        "now, out of band; it is shown only once: ", code);
      issued.hidden = false;
      form.reset();
      L.status("");
      await load();
    } catch (error) {
      L.status(error.message, true);
    }
  });

  await load();
  const columns = ["invitation_id", "country", "state", "created_at", "created_by", "expires_at",
    "used_at", "used_by_node", "note"];
  L.exportButtons("invitations", async () => L.csv(columns, all), async () => data);
  L.ready();
});

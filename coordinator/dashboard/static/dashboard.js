/* Shared helpers for the dashboard's page scripts. Data comes only from this coordinator's
 * JSON API (same origin, session cookie); values from the API are put into the page with
 * textContent, never as HTML (hoster names come from the web). */
"use strict";
(function () {
  const L = {};
  const query = new URLSearchParams(window.location.search);
  L.query = query;

  L.status = function (message, isError) {
    const el = document.getElementById("status");
    if (!el) return;
    el.textContent = message || "";
    el.classList.toggle("error", Boolean(isError));
  };

  // A date (YYYY-MM-DD) plus n days, as an ISO instant at 00:00 UTC.
  L.dayStart = function (date, addDays) {
    const d = new Date(date + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + (addDays || 0));
    return d.toISOString().replace(".000Z", "Z");
  };

  L.isDate = (v) => typeof v === "string" && /^\d{4}-\d{2}-\d{2}$/.test(v);

  // The filter bar (from, to inclusive, family) as the API's query parameters.
  L.apiFilters = function () {
    const p = new URLSearchParams();
    const from = query.get("from");
    const to = query.get("to");
    const family = query.get("family");
    if (L.isDate(from)) p.set("period_start", L.dayStart(from));
    if (L.isDate(to)) p.set("period_end", L.dayStart(to, 1));
    if (family) p.set("hash_family", family);
    return p;
  };

  L.url = function (path, params) {
    const text = params ? params.toString() : "";
    return text ? path + "?" + text : path;
  };

  L.fetch = async function (path, params) {
    const response = await fetch(L.url(path, params), {
      credentials: "same-origin",
      headers: { accept: "application/json, text/csv" },
    });
    if (response.status === 401) {
      const here = window.location.pathname + window.location.search;
      window.location.assign(
        "/dashboard/login?next=" + encodeURIComponent(here) +
        "&reason=" + encodeURIComponent("your session ended; log in again"));
      throw new Error("not logged in");
    }
    if (!response.ok) {
      let message = response.statusText;
      try {
        const body = await response.json();
        message = body.error.message;
      } catch (_ignored) { /* not JSON: keep the status text */ }
      const error = new Error(path + ": " + response.status + " " + message);
      error.status = response.status;
      throw error;
    }
    return response;
  };

  L.json = async (path, params) => (await L.fetch(path, params)).json();
  L.text = async (path, params) => (await L.fetch(path, params)).text();

  L.download = function (filename, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type: type }));
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };

  // Same rules as the API's CSV: quote when needed; a text cell that a spreadsheet would run
  // as a formula gets a leading apostrophe.
  L.csvCell = function (value) {
    if (value === null || value === undefined) return "";
    let text = String(value);
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
    return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  };

  L.csv = function (columns, rows) {
    const lines = [columns.join(",")];
    for (const row of rows) lines.push(columns.map((c) => L.csvCell(row[c])).join(","));
    return lines.join("\n") + "\n";
  };

  L.stamp = function () {
    return new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  };

  L.exportButtons = function (prefix, makeCsv, makeJson, ids) {
    const csvId = (ids && ids[0]) || "export-csv";
    const jsonId = (ids && ids[1]) || "export-json";
    const name = "libra-" + prefix + "-" + L.stamp();
    document.getElementById(csvId).addEventListener("click", async () => {
      try {
        L.download(name + ".csv", await makeCsv(), "text/csv");
      } catch (error) {
        L.status("export failed: " + error.message, true);
      }
    });
    document.getElementById(jsonId).addEventListener("click", async () => {
      try {
        L.download(name + ".json", JSON.stringify(await makeJson(), null, 2) + "\n",
          "application/json");
      } catch (error) {
        L.status("export failed: " + error.message, true);
      }
    });
  };

  L.int = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
  L.share = (x) => (x === null || x === undefined ? "—" : (100 * x).toFixed(1) + " %");
  L.time = (iso) => (iso ? iso.replace("T", " ").replace(/:\d\d(\.\d+)?(Z|\+00:00)$/, " UTC") : "—");
  L.duration = function (seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const h = seconds / 3600;
    return h < 48 ? h.toFixed(1) + " h" : (h / 24).toFixed(1) + " d";
  };

  // cols: [{key, fmt?, num?, withheld?}]; a null value in a `withheld` column reads "withheld".
  L.fill = function (table, rows, cols, rowClass) {
    const tbody = table.tBodies[0];
    tbody.replaceChildren();
    for (const row of rows) {
      const tr = document.createElement("tr");
      if (rowClass) {
        const css = rowClass(row);
        if (css) tr.className = css;
      }
      for (const col of cols) {
        const td = document.createElement("td");
        const value = row[col.key];
        td.dataset.col = col.key;
        if (col.num) td.className = "num";
        if (col.withheld && (value === null || value === undefined)) {
          td.textContent = "withheld";
          td.classList.add("withheld");
        } else {
          td.textContent = col.fmt ? col.fmt(value, row) : (value === null || value === undefined ? "—" : String(value));
        }
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = cols.length;
      td.className = "empty";
      td.textContent = "no rows";
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  };

  L.chart = function (el) {
    const chart = echarts.init(el, null, { renderer: "canvas" });
    window.addEventListener("resize", () => chart.resize());
    return chart;
  };

  L.esc = (text) => echarts.format.encodeHTML(String(text));

  L.suppressionText = function (picture, sections) {
    const s = picture.suppression;
    if (picture.tier === "full") return "Full tier: no small-cell suppression (admin view).";
    if (!s) return "";
    const parts = sections.map(([key, label]) => s[key] + " " + label).join(", ");
    const rule = ["fewer than " + s.min_count + " matches"];
    if (s.min_nodes > 1) rule.push("fewer than " + s.min_nodes + " reporting nodes");
    return "Small-cell suppression (" + rule.join(" or ") + "): rows withheld: " + parts +
      ". Totals include them.";
  };

  L.run = function (main) {
    main().catch((error) => {
      L.status(error.message, true);
      document.body.dataset.ready = "error";
    });
  };

  L.ready = function () {
    document.body.dataset.ready = "true";
  };

  window.LIBRA = L;
})();

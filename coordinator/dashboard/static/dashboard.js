/* Shared helpers for the dashboard's page scripts. Data comes only from this coordinator's
 * JSON API (same origin, session cookie); values from the API are put into the page with
 * textContent, never as HTML (hoster names come from the web). Every time is UTC. */
"use strict";
(function () {
  const L = {};
  const query = new URLSearchParams(window.location.search);
  L.query = query;
  const HOUR = 3600000;
  const DAY = 24 * HOUR;

  L.status = function (message, isError) {
    const el = document.getElementById("status");
    if (!el) return;
    el.textContent = message || "";
    el.classList.toggle("error", Boolean(isError));
  };

  // --- numbers and times: the browser's locale for numbers, UTC for every time -------------
  const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const oneDecimal = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const percent = new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  L.int = (n) => (n === null || n === undefined ? "—" : integer.format(Number(n)));
  L.share = (x) => (x === null || x === undefined ? "—" : percent.format(x));
  L.signed = (n) => (n === null || n === undefined ? "—" : (n > 0 ? "+" : n < 0 ? "−" : "±") + integer.format(Math.abs(n)));
  L.duration = function (seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const h = seconds / 3600;
    return h < 48 ? oneDecimal.format(h) + " h" : oneDecimal.format(h / 24) + " d";
  };
  const twoDecimals = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 2 });
  L.dec = (x) => (x === null || x === undefined ? "—" : twoDecimals.format(Number(x)));

  /* A set size with its bound: {estimate, lower, upper, exact} (the flows API). Exact: the
   * number alone ("12"); estimated: "12 (10–14)". `bound(e)` says just "exact" or "10–14". */
  L.figure = function (e) {
    if (e === null || e === undefined) return "withheld";
    return e.exact ? L.int(e.estimate) : L.int(e.estimate) + " (" + L.int(e.lower) + "–" +
      L.int(e.upper) + ")";
  };
  L.bound = (e) => (e === null || e === undefined ? "—" : e.exact ? "exact"
    : L.int(e.lower) + "–" + L.int(e.upper));

  /* A picture row's distinct count with its bound: "1,234 (exact)" while the merged sketch
   * is exact, else "1,234 (±1.3 %)" (3-sigma; Theta within 2 %). A coordinator that does not
   * send the bound (older version): "1,234 (est.)". */
  L.distinctBound = function (row) {
    if (!row || row.distinct_exact === undefined || row.distinct_exact === null) return "est.";
    if (row.distinct_exact) return "exact";
    const d = row.distinct;
    if (!d) return "exact";
    const spread = Math.max(d - (row.distinct_lower ?? d), (row.distinct_upper ?? d) - d) / d;
    return "±" + oneDecimal.format(100 * spread) + " %";
  };
  L.distinct = (row) => (row.distinct === null || row.distinct === undefined ? "—"
    : L.int(row.distinct) + " (" + L.distinctBound(row) + ")");
  // A table cell: the number, then its bound in a muted span (data-bound for tests).
  L.distinctCell = function (row, td) {
    td.textContent = L.int(row.distinct) + " ";
    const span = document.createElement("span");
    span.className = "bound";
    span.textContent = "(" + L.distinctBound(row) + ")";
    td.dataset.value = String(row.distinct);
    td.appendChild(span);
  };

  /* Prevalence {per_10k, lower, upper} (matches per 10,000 images hashed, 95 % Wilson
   * interval): "12.3 (10.1–14.9)"; "—" where no report carried coverage. */
  L.prevalence = (p) => (p === null || p === undefined ? "—"
    : L.dec(p.per_10k) + " (" + L.dec(p.lower) + "–" + L.dec(p.upper) + ")");

  // A report period "start – end" in UTC; the date once when both lie on the same day (short
  // periods: "2026-11-23 00:05–00:10 UTC").
  L.span = function (start, end) {
    const a = L.time(start);
    const b = L.time(end);
    if (a.slice(0, 10) === b.slice(0, 10)) return a.slice(0, 16) + "–" + b.slice(11);
    return a + " – " + b;
  };

  // A period's length in words: "5 min", "1 h", "1 d", "36 h".
  L.length = function (seconds) {
    if (seconds % 86400 === 0) return integer.format(seconds / 86400) + " d";
    if (seconds % 3600 === 0) return integer.format(seconds / 3600) + " h";
    if (seconds % 60 === 0) return integer.format(seconds / 60) + " min";
    return integer.format(seconds) + " s";
  };
  // An ISO instant as "YYYY-MM-DD HH:MM UTC" (ISO order in every locale: briefings travel).
  L.time = function (iso) {
    if (!iso) return "—";
    const ms = typeof iso === "number" ? iso : Date.parse(iso);
    if (isNaN(ms)) return String(iso);
    return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  };
  L.iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");
  // The value a From/To field takes for an instant: a date at midnight, else date and time.
  L.fieldValue = function (ms, isEnd) {
    const text = new Date(ms).toISOString();
    if (text.slice(11, 16) !== "00:00") return text.slice(0, 16).replace("T", " ");
    return isEnd ? new Date(ms - DAY).toISOString().slice(0, 10) : text.slice(0, 10);
  };

  // A date (YYYY-MM-DD) plus n days, as an ISO instant at 00:00 UTC.
  L.dayStart = function (date, addDays) {
    const d = new Date(date + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + (addDays || 0));
    return d.toISOString().replace(".000Z", "Z");
  };

  L.isDate = (v) => typeof v === "string" && /^\d{4}-\d{2}-\d{2}$/.test(v);
  const DATE_TIME = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2}))?$/;

  // A From/To field as milliseconds (UTC): "YYYY-MM-DD" or "YYYY-MM-DD HH:MM". A bare date in
  // To means the whole day (inclusive). NaN when malformed, null when empty.
  L.parseField = function (text, isEnd) {
    if (text === null || text === undefined || String(text).trim() === "") return null;
    const m = DATE_TIME.exec(String(text).trim());
    if (!m) return NaN;
    const ms = Date.parse(m[1] + "T" + (m[2] ? m[2] + ":" + m[3] : "00:00") + ":00Z");
    if (isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== m[1]) return NaN;
    return !m[2] && isEnd ? ms + DAY : ms;
  };

  // A friendly message for a problem the user can fix, shown instead of a raw API error.
  class UserError extends Error {}
  L.UserError = UserError;

  // The requested window {from, to} (ms or null), or a UserError.
  L.window = function (fromText, toText) {
    const from = L.parseField(fromText, false);
    const to = L.parseField(toText, true);
    if (Number.isNaN(from) || Number.isNaN(to)) {
      throw new UserError("Dates must read YYYY-MM-DD or YYYY-MM-DD HH:MM (UTC); got " +
        JSON.stringify(Number.isNaN(from) ? fromText : toText) + ".");
    }
    if (from !== null && to !== null && from >= to) {
      throw new UserError("From (" + L.time(from) + ") must be before To (" + L.time(to) + ").");
    }
    return { from: from, to: to };
  };

  // The coordinator's clock (rendered into the page): quick ranges end there, not at the
  // browser's clock, which may be wrong on an air-gapped workstation.
  L.now = function () {
    const ms = Date.parse(document.body.dataset.now || "");
    return isNaN(ms) ? Date.now() : ms;
  };

  // The non-period filters of the filter bar as API parameters.
  L.baseFilters = function () {
    const p = new URLSearchParams();
    const family = query.get("family");
    const country = (query.get("country") || "").trim().toUpperCase();
    const hoster = (query.get("hoster") || "").trim();
    const asn = (query.get("asn") || "").trim();
    const media = query.get("media");
    if (family) p.set("hash_family", family);
    if (media === "image" || media === "video") p.set("media", media);
    if (country) p.set("country", country);
    if (hoster) p.set("hoster", hoster);
    if (asn) p.set("asn", asn);
    return p;
  };

  // Issue 13: video families by what they are (image families keep their short names).
  const FAMILY_LABELS = {
    "video-md5": "video file MD5", "video-sha1": "video file SHA-1",
    "video-sha256": "video file SHA-256", "vpdq": "vPDQ (video)",
    "vpdq-frame": "still from a listed video (vPDQ frame)",
  };
  L.familyLabel = (family) => FAMILY_LABELS[family] || family;
  L.mediaLabel = (media) => ({ image: "images", video: "videos" })[media] || media;

  // The filter bar as the API's query parameters (period bounds exactly as typed).
  L.apiFilters = function () {
    const p = L.baseFilters();
    const w = L.window(query.get("from"), query.get("to"));
    if (w.from !== null) p.set("period_start", L.iso(w.from));
    if (w.to !== null) p.set("period_end", L.iso(w.to));
    return p;
  };

  /* The API counts a report when its whole period lies inside [period_start, period_end]
   * (containment). An analyst's window rarely matches report periods, so the window is
   * widened to the report periods that overlap it, and the page says so. Returns
   * {params, shown: {start, end, count, widened, requested}} or null when no period overlaps
   * (the page then says which periods are nearest). */
  L.resolve = async function () {
    const base = L.baseFilters();
    const w = L.window(query.get("from"), query.get("to"));
    if (w.from === null && w.to === null) return { params: base, shown: null, all: null };
    const all = await L.json("/v1/picture", base);
    const periods = all.by_period.map((p) => ({
      start: Date.parse(p.period_start), end: Date.parse(p.period_end), row: p,
    }));
    const lo = w.from === null ? -Infinity : w.from;
    const hi = w.to === null ? Infinity : w.to;
    const overlapping = periods.filter((p) => p.start < hi && p.end > lo);
    const requested = (w.from === null ? "the first report" : L.time(w.from)) + " – " +
      (w.to === null ? "now" : L.time(w.to));
    if (!overlapping.length) {
      const before = periods.filter((p) => p.end <= lo).pop();
      const after = periods.find((p) => p.start >= hi);
      const near = [before, after].filter(Boolean).map((p) => L.time(p.start) + " – " + L.time(p.end));
      L.status("No report period overlaps " + requested + ". " + (near.length
        ? "Nearest report period" + (near.length > 1 ? "s: " : ": ") + near.join(" and ") + "."
        : "The coordinator holds no reports for these filters."));
      return null;
    }
    const start = Math.min(...overlapping.map((p) => p.start));
    const end = Math.max(...overlapping.map((p) => p.end));
    const params = new URLSearchParams(base);
    params.set("period_start", L.iso(start));
    params.set("period_end", L.iso(end));
    const widened = (w.from !== null && start < w.from) || (w.to !== null && end > w.to);
    return { params: params, all: all,
      shown: { start: start, end: end, count: overlapping.length, widened: widened, requested: requested } };
  };

  // "Period shown" and "data generated" line of a picture page.
  L.describe = function (picture, resolved) {
    const el = document.getElementById("period-info");
    if (!el) return;
    const periods = picture.by_period;
    let text;
    if (resolved && resolved.shown) {
      const s = resolved.shown;
      text = "Period shown: " + L.time(s.start) + " – " + L.time(s.end) + " (" + s.count +
        " report period" + (s.count === 1 ? "" : "s") + ")";
      if (s.widened) text += ", widened from the requested " + s.requested + " to whole report periods";
    } else if (periods.length) {
      text = "Period shown: all reports, " + L.time(periods[0].period_start) + " – " +
        L.time(periods[periods.length - 1].period_end) + " (" + periods.length + " report period" +
        (periods.length === 1 ? "" : "s") + ")";
    } else {
      text = "Period shown: all reports (none yet)";
    }
    const f = picture.filters || {};
    const extra = [["media:", f.media && L.mediaLabel(f.media)],
      ["hash family", f.hash_family && L.familyLabel(f.hash_family)], ["country", f.country],
      ["hoster", f.hoster], ["ASN", f.asn]].filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => k + " " + v);
    if (extra.length) text += "; only " + extra.join(", ");
    el.textContent = text + ". Data generated " + L.time(picture.generated_at) + ".";
    el.dataset.generated = picture.generated_at;
  };

  L.url = function (path, params) {
    const text = params ? params.toString() : "";
    return text ? path + "?" + text : path;
  };

  // What a person should read for an API failure (the raw status stays in error.detail).
  L.friendly = function (status, message, code) {
    // Issue 15: a coordinator in DP mode (coordinator/dp) refuses with these two codes.
    if (code === "not_published") return L.notPublishedText;
    if (code === "privacy_budget_exhausted") return "Not published under differential " +
      "privacy: the privacy budget for these report periods is spent, so no new noisy figures " +
      "can be released for them now. Choose other periods, or ask again after the budget window.";
    if (status === 403) return "Your role may not see this view (" + message + ").";
    if (status === 404) return "This coordinator does not offer this view (it may be an older version).";
    if (status === 422 || status === 400) return "The coordinator could not use these filters: " +
      String(message).replace(/^[a-z_.]+: /, "") + ". Check the filter values and apply again.";
    if (status === 429) return "The coordinator is busy; wait a moment and reload the page.";
    if (status >= 500) return "The coordinator had a problem answering; reload the page, and tell " +
      "its operator if this persists.";
    return "The request failed (" + message + ").";
  };

  L.fetch = async function (path, params) {
    let response;
    try {
      response = await fetch(L.url(path, params), {
        credentials: "same-origin",
        headers: { accept: "application/json, text/csv" },
      });
    } catch (_network) {
      throw new UserError("The coordinator could not be reached; check the connection and reload.");
    }
    if (response.status === 401) {
      const here = window.location.pathname + window.location.search;
      window.location.assign(
        "/dashboard/login?next=" + encodeURIComponent(here) +
        "&reason=" + encodeURIComponent("your session ended; log in again"));
      throw new UserError("Your session ended; log in again.");
    }
    if (!response.ok) {
      let message = response.statusText;
      let code = null;
      try {
        const body = await response.json();
        message = body.error.message;
        code = body.error.code;
      } catch (_ignored) { /* not JSON: keep the status text */ }
      const error = new UserError(L.friendly(response.status, message, code));
      error.status = response.status;
      error.code = code;
      error.detail = path + ": " + response.status + " " + message;
      throw error;
    }
    return response;
  };

  L.json = async (path, params) => (await L.fetch(path, params)).json();

  /* An admin write (POST to /dashboard/admin/actions/...): the session cookie plus the
   * page's CSRF token in a header; the server checks both and the request's origin. */
  L.post = async function (path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": document.body.dataset.csrf || "" },
        body: JSON.stringify(body === undefined ? {} : body),
      });
    } catch (_network) {
      throw new UserError("The coordinator could not be reached; nothing was changed.");
    }
    let data = null;
    try { data = await response.json(); } catch (_ignored) { /* no JSON body */ }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : response.statusText;
      const error = new UserError(response.status === 409 || response.status === 404
        ? "Not done: " + message + "." : response.status === 403
          ? "Refused: " + message + "." : L.friendly(response.status, message));
      error.status = response.status;
      throw error;
    }
    return data;
  };
  L.text = async (path, params) => (await L.fetch(path, params)).text();

  L.download = function (filename, data, type) {
    const url = typeof data === "string" && data.startsWith("data:") && type === "image/png"
      ? data : URL.createObjectURL(new Blob([data], { type: type }));
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    a.remove();
    if (url.startsWith("blob:")) setTimeout(() => URL.revokeObjectURL(url), 10000);
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

  /* Comment lines (#) on top of every CSV export: the filter it was made with, so a file
   * read weeks later still says what it counts. Readers: skip lines starting with "#". */
  L.csvContext = { page: document.body ? document.body.dataset.page : "", params: null,
    generated_at: null, tier: null };
  L.csvHeader = function () {
    const c = L.csvContext;
    const clean = (v) => String(v).replace(/[\r\n]+/g, " ");
    const lines = ["# LIBRA dashboard export: " + clean(document.title)];
    const filter = [];
    if (c.params) for (const [k, v] of c.params) filter.push(k + "=" + clean(v));
    lines.push("# filter: " + (filter.length ? filter.join("; ") : "none (all reports)"));
    const asked = ["from", "to", "media", "family", "country", "hoster", "asn"]
      .filter((k) => query.get(k)).map((k) => k + "=" + clean(query.get(k)));
    if (asked.length) lines.push("# requested (UTC): " + asked.join("; "));
    if (c.tier) lines.push("# tier: " + c.tier);
    if (c.generated_at) lines.push("# data generated: " + c.generated_at);
    lines.push("# exported: " + L.iso(Date.now()));
    return lines.join("\n") + "\n";
  };

  L.stamp = function () {
    return new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  };

  L.exportButtons = function (prefix, makeCsv, makeJson, ids) {
    const csvId = (ids && ids[0]) || "export-csv";
    const jsonId = (ids && ids[1]) || "export-json";
    const name = "libra-" + prefix + "-" + L.stamp();
    // onclick, not addEventListener: a refresh replaces the handlers (and their data).
    document.getElementById(csvId).onclick = async () => {
      try {
        L.download(name + ".csv", L.csvHeader() + await makeCsv(), "text/csv");
      } catch (error) {
        L.status("Export failed: " + error.message, true);
      }
    };
    document.getElementById(jsonId).onclick = async () => {
      try {
        L.download(name + ".json", JSON.stringify(await makeJson(), null, 2) + "\n",
          "application/json");
      } catch (error) {
        L.status("Export failed: " + error.message, true);
      }
    };
  };

  // cols: [{key, fmt?, num?, withheld?, link?, render?}]; render(row, td) fills the cell itself; a null value in a `withheld` column reads
  // "withheld"; link(row) gives an href for the cell's text (drill-down).
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
        if (col.render) {
          col.render(row, td);
        } else if (col.withheld && (value === null || value === undefined)) {
          td.textContent = "withheld";
          td.classList.add("withheld");
        } else {
          const text = col.fmt ? col.fmt(value, row) : (value === null || value === undefined ? "—" : String(value));
          const href = col.link ? col.link(row) : null;
          if (href) {
            const a = document.createElement("a");
            a.href = href;
            a.textContent = text;
            td.appendChild(a);
          } else {
            td.textContent = text;
          }
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

  // A dashboard link keeping the current filters, with some replaced (null removes one).
  L.link = function (path, changes) {
    const p = new URLSearchParams(query);
    for (const [k, v] of Object.entries(changes || {})) {
      if (v === null || v === undefined || v === "") p.delete(k); else p.set(k, String(v));
    }
    return L.url(path, p);
  };

  const charts = [];
  /* An ECharts instance with ECharts' own aria description (a text alternative read by
   * screen readers), a PNG export button, and a label for the image. `opts.label` names the
   * chart; `opts.table` is the id of the table that holds every value shown. */
  L.chart = function (el, opts) {
    const o = opts || {};
    const existing = echarts.getInstanceByDom(el);
    if (existing) return existing;  // main() runs again on auto-refresh: same chart, new data
    const chart = echarts.init(el, null, { renderer: "canvas" });
    chart.setOption({ aria: { enabled: true, label: { enabled: true } } });
    el.setAttribute("role", "img");
    if (o.label) el.setAttribute("aria-label", o.label);
    if (o.table) el.setAttribute("aria-describedby", o.table);
    charts.push(chart);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "png";
    button.dataset.chart = el.id;
    button.textContent = "PNG";
    button.title = "Download this chart as a PNG image (for a briefing)";
    button.addEventListener("click", () => {
      const url = chart.getDataURL({ type: "png", pixelRatio: 2, backgroundColor: "#fff" });
      L.download("libra-" + el.id + "-" + L.stamp() + ".png", url, "image/png");
    });
    const bar = document.createElement("div");
    bar.className = "chart-tools";
    bar.appendChild(button);
    (el.closest(".map-row") || el).before(bar);
    return chart;
  };
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => charts.forEach((c) => c.resize()), 100);
  });
  // Printing scales each chart's canvas to the page width in CSS (dashboard.css, @media print);
  // folded tables (the charts' values) are printed unfolded.
  window.addEventListener("beforeprint", () => document.querySelectorAll("details:not([open])")
    .forEach((d) => { d.dataset.printOpened = "1"; d.open = true; }));
  window.addEventListener("afterprint", () => document.querySelectorAll("details[data-print-opened]")
    .forEach((d) => { delete d.dataset.printOpened; d.open = false; }));

  L.esc = (text) => echarts.format.encodeHTML(String(text));

  /* Issue 15: a coordinator with [viewer] privacy = "dp" gives viewers a noisy picture with a
   * label (coordinator/dp/release.py Privacy). What the label says, for a person: that the
   * counts are noisy and how much, epsilon, and the unit the guarantee protects. */
  L.privacyText = function (p) {
    // The discrete Laplace's standard deviation (coordinator/dp/mechanism.py standard_deviation).
    const alpha = Math.exp(-1 / p.scale);
    const sd = Math.sqrt(2 * alpha) / (1 - alpha);
    return "Differential privacy: every count carries " + p.mechanism.replace("_", " ") +
      " noise, \u03b5 = " + L.dec(p.epsilon) + " per release" +
      (p.releases > 1 ? " (" + p.releases + " releases compared)" : "") +
      " (noise scale " + L.dec(p.scale) + ": a count is typically off by about \u00b1" +
      L.dec(sd) + "; small counts may be pure noise). Unit of privacy: " + p.unit +
      ". Countries and totals are sums of noisy counts; distinct URLs, nodes per row, how " +
      "matches were found and prevalence are not published.";
  };
  L.notPublishedText = "Not published under differential privacy: this coordinator gives " +
    "viewers noisy match counts only (the map, hosters and waterbed pages), and this view " +
    "counts matches exactly, so only its admins may see it.";

  // The keys of the columns a DP picture does not publish (their 0 or null is not a figure).
  const UNPUBLISHED = ["distinct", "nodes", "prevalence", "disguised"];
  L.unpublished = (picture) => (picture && picture.privacy ? UNPUBLISHED : []);

  /* The columns of `table` a picture publishes: in DP mode the header cells of the others
   * (and of `alsoHidden`, keys of columns the page has no figures for) are hidden and their
   * columns dropped from `cols` (for L.fill), and the matches header says the count is noisy.
   * Idempotent: a refresh may run it again on the same table. Header cells match `cols` by
   * position. */
  L.publishedColumns = function (table, cols, picture, alsoHidden) {
    const hide = new Set([...L.unpublished(picture), ...(alsoHidden || [])]);
    const headers = table.tHead.rows[0].cells;
    cols.forEach((c, i) => {
      const th = headers[i];
      if (!th) return;
      th.hidden = hide.has(c.key);
      if (c.key !== "matches") return;
      const label = th.querySelector("abbr") || th;
      if (label.dataset.exact === undefined) {
        label.dataset.exact = label.textContent;
        label.dataset.exactTitle = label.title || "";
      }
      const noisy = Boolean(picture && picture.privacy);
      label.textContent = label.dataset.exact + (noisy ? " (noisy)" : "");
      label.title = noisy ? "Sightings of known items, with differential-privacy noise " +
        "(see the note on differential privacy)" : label.dataset.exactTitle;
    });
    return cols.filter((c) => !hide.has(c.key));
  };

  /* A view a DP-mode coordinator keeps from viewers (404 not_published): the page says so in
   * place of its figures and is ready, instead of failing. True when it was that refusal. */
  L.showNotPublished = function (error) {
    if (!error || error.code !== "not_published") return false;
    let note = document.getElementById("not-published");
    if (!note) {
      note = document.createElement("p");
      note.id = "not-published";
      note.className = "status";
      document.getElementById("status").after(note);
    }
    note.textContent = L.notPublishedText;
    for (const panel of document.querySelectorAll("main section.panel")) panel.hidden = true;
    return true;
  };

  L.suppressionText = function (picture, sections) {
    const s = picture.suppression;
    if (picture.tier === "full") return "Full tier: no small-cell suppression (admin view).";
    if (picture.privacy) return L.privacyText(picture.privacy); // issue 15: DP mode
    if (!s) return "";
    if (s.min_count <= 0 && s.min_nodes <= 1) {
      return "No small-cell suppression: this coordinator shows every row.";
    }
    const parts = sections.map(([key, label]) => L.int(s[key]) + " " + label).join(", ");
    const rule = [];
    if (s.min_count > 0) rule.push("fewer than " + L.int(s.min_count) + " matches");
    if (s.min_nodes > 1) rule.push("fewer than " + L.int(s.min_nodes) + " reporting nodes");
    return "Small-cell suppression (" + rule.join(" or ") + "): rows withheld: " + parts +
      ". Totals include them.";
  };

  // The filter bar: quick ranges, From <= To before any request, and UTC on every value.
  function wireFilters() {
    const form = document.getElementById("filters");
    if (!form) return;
    const error = document.getElementById("filter-error");
    const show = (message) => {
      error.textContent = message || "";
      error.hidden = !message;
    };
    form.addEventListener("submit", (event) => {
      try {
        L.window(form.elements.from.value, form.elements.to.value);
        show("");
      } catch (e) {
        event.preventDefault();
        show(e.message);
        form.elements.from.focus();
        return;
      }
      // Empty fields stay out of the address (shorter links to share).
      for (const el of [...form.elements]) if (el.name && !el.value) el.disabled = true;
    });
    // Back to this page from the browser's cache: the fields must be usable again.
    window.addEventListener("pageshow", () => {
      for (const el of [...form.elements]) el.disabled = false;
    });
    for (const button of form.querySelectorAll("button[data-range]")) {
      button.addEventListener("click", () => {
        const range = button.dataset.range;
        if (range === "all") {
          form.elements.from.value = "";
          form.elements.to.value = "";
        } else {
          const now = L.now();
          const span = { "1h": HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY }[range];
          // Whole minutes: the fields show HH:MM.
          const end = Math.floor(now / 60000) * 60000;
          form.elements.from.value = L.fieldValue(end - span, false);
          form.elements.to.value = L.fieldValue(end, true);
        }
        form.requestSubmit();
      });
    }
  }

  /* Auto-refresh: every REFRESH_MS the page's main() runs again and updates what is shown in
   * place (tables are replaced in one step, charts get new options), so nothing flickers:
   * no "Loading…" and no empty page in between. Paused while the tab is hidden (a hidden tab
   * costs the coordinator nothing); on return it refreshes at once if one is due. The toggle
   * (default on) is remembered for this browser. */
  const REFRESH_MS = 60000;
  const REFRESH_KEY = "libra-auto-refresh";
  L.refreshing = false;
  const refresh = { timer: null, due: null, count: 0, last: null, load: null, busy: false };
  // For tests and curious readers: whether a refresh is scheduled, and when.
  L.refreshState = () => ({ scheduled: refresh.timer !== null, dueInMs: refresh.due === null
    ? null : refresh.due - Date.now(), count: refresh.count, last: refresh.last,
    everyMs: REFRESH_MS });
  L.refreshNow = async function () {
    if (!refresh.load || refresh.busy) return false;
    await refresh.load(true);
    schedule();
    return true;
  };
  const box = () => document.getElementById("auto-refresh");
  function schedule(delay) {
    clearTimeout(refresh.timer);
    refresh.timer = null;
    refresh.due = null;
    const el = box();
    if (!el || !el.checked || document.visibilityState === "hidden" || !refresh.load) return;
    const wait = delay === undefined ? REFRESH_MS : Math.max(0, delay);
    refresh.due = Date.now() + wait;
    refresh.timer = setTimeout(() => { refresh.timer = null; L.refreshNow(); }, wait);
  }
  function wireRefresh() {
    const el = box();
    if (!el) return;
    try { el.checked = window.localStorage.getItem(REFRESH_KEY) !== "off"; } catch (_e) { /* storage off */ }
    el.addEventListener("change", () => {
      try { window.localStorage.setItem(REFRESH_KEY, el.checked ? "on" : "off"); } catch (_e) { /* storage off */ }
      schedule();
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") {
        clearTimeout(refresh.timer);
        refresh.timer = null;
        refresh.due = null;
        return;
      }
      const since = refresh.last === null ? REFRESH_MS : Date.now() - refresh.last;
      schedule(REFRESH_MS - since);
    });
  }
  function stampUpdated() {
    refresh.last = Date.now();
    const el = document.getElementById("last-updated");
    if (el) {
      el.textContent = "Last updated " + new Date(refresh.last).toISOString().slice(0, 19)
        .replace("T", " ") + " UTC";
      el.dataset.at = new Date(refresh.last).toISOString();
    }
  }

  // A listener registered under a key replaces the one registered before under that key, so
  // a page's main() may run again (auto-refresh) without piling up handlers.
  const listeners = {};
  L.listen = function (target, type, key, fn) {
    const old = listeners[key];
    if (old) old.target.removeEventListener(old.type, old.fn);
    target.addEventListener(type, fn);
    listeners[key] = { target: target, type: type, fn: fn };
  };
  // A value computed once per page view (static files: the world atlas).
  const onceCache = {};
  L.once = function (key, make) {
    if (!Object.hasOwn(onceCache, key)) onceCache[key] = make();
    return onceCache[key];
  };

  L.run = function (main) {
    const load = async function (refreshing) {
      refresh.busy = true;
      L.refreshing = refreshing;
      const mainEl = document.querySelector("main");
      if (!refreshing) {
        mainEl.setAttribute("aria-busy", "true");
        document.body.dataset.loading = "true";
        L.status("Loading…");
      }
      try {
        await main();
        const status = document.getElementById("status");
        if (status.textContent === "Loading…" || status.dataset.refreshError) {
          L.status("");
          delete status.dataset.refreshError;
        }
        if (document.body.dataset.ready !== "error") stampUpdated();
        if (refreshing) refresh.count += 1;
      } catch (error) {
        const known = error instanceof UserError;
        const text = known ? error.message : "Something went wrong while drawing this page: " +
          error.message;
        const status = document.getElementById("status");
        if (refreshing) {
          // What is shown stays; the next refresh tries again.
          L.status("Refreshing failed (the figures shown are from " +
            L.time(refresh.last) + "): " + text, true);
          status.dataset.refreshError = "1";
        } else {
          L.status(text, true);
          if (error.detail) status.dataset.detail = error.detail;
          document.body.dataset.ready = "error";
        }
      } finally {
        if (!refreshing) {
          mainEl.removeAttribute("aria-busy");
          delete document.body.dataset.loading;
        }
        L.refreshing = false;
        refresh.busy = false;
      }
    };
    const begin = function () {
      wireFilters();
      wireRefresh();
      load(false).then(() => {
        refresh.load = load;
        schedule();
      });
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", begin);
    else begin();
  };

  L.ready = function () {
    document.body.dataset.ready = "true";
  };

  window.LIBRA = L;
})();

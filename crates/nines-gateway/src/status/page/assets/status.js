"use strict";
// The server renders the page's first paint from the same /status.json (status/page/render.rs),
// so it reads without JavaScript; this script renders it again and refreshes it. Every rendered thing carries data-*
// attributes (data-route, data-state, data-window, data-day, data-incident, data-note) so tests
// and scripts can read the page without parsing its text. Text goes in as textContent only.
// This script renders the public view (models and their health); an admin's page also carries
// status-private.js, which registers window.ninesPrivate to add the private view's details.
(function () {
  var REFRESH_MS = 5000;
  var RESOLVED_SHOWN = 10;
  var LABELS = { operational: "Operational", degraded: "Degraded", down: "Outage" };
  var WINDOWS = [["1h", "1 hour"], ["24h", "24 hours"], ["30d", "30 days"], ["90d", "90 days"]];
  var lastGood = null;

  function $(id) { return document.getElementById(id); }

  // el("div", {class: "x", "data-route": "chat", title: "…"}, child, "text", …)
  function el(tag, attrs) {
    var node = document.createElement(tag);
    var key;
    for (key in attrs || {}) {
      if (attrs[key] !== null && attrs[key] !== undefined) node.setAttribute(key, String(attrs[key]));
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function pct(x) {
    if (x === null || x === undefined) return "—";
    var digits = x >= 0.9999 && x < 1 ? 3 : 2;
    return (x * 100).toFixed(digits).replace(/\.?0+$/, "") + "%";
  }

  function ms(x) {
    if (x === null || x === undefined) return "—";
    if (x >= 1000) return (x / 1000).toFixed(2) + " s";
    return (x < 10 ? x.toFixed(1).replace(/\.0$/, "") : Math.round(x)) + " ms";
  }

  function duration(msec) {
    var s = Math.round(msec / 1000);
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function when(msec) {
    return new Date(msec).toLocaleString(undefined, {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"
    });
  }

  function count(n) { return Number(n).toLocaleString("en-US"); }

  // Colour by availability relative to the objective: at or above it, within 10x and 50x its
  // error budget, and worse.
  function barClass(day, slo) {
    if (!day.requests) return "bar none";
    var budget = 1 - slo;
    var a = day.availability;
    if (a >= slo) return "bar ok";
    if (a >= 1 - 10 * budget) return "bar minor";
    if (a >= 1 - 50 * budget) return "bar major";
    return "bar bad";
  }

  function pill(state, text) {
    return el("span", { "class": "pill", "data-state": state }, text || LABELS[state] || state);
  }

  function bars(owner, days, slo) {
    var box = el("div", { "class": "bars", "data-uptime": owner, role: "img",
      "aria-label": "Daily availability of " + owner + " over the last " + days.length + " days" });
    days.forEach(function (d) {
      var title = d.requests
        ? d.date + ": " + count(d.requests) + " requests, " + count(d.failures) + " failed, " + pct(d.availability)
        : d.date + ": no traffic";
      box.appendChild(el("span", {
        "class": barClass(d, slo), "data-day": d.date, "data-requests": d.requests,
        "data-failures": d.failures, "data-availability": d.availability, title: title
      }));
    });
    return box;
  }

  function day(msec) {
    return new Date(msec).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  // A window longer than the data says since when its figures run.
  function figures(windows) {
    var box = el("div", { "class": "figures" });
    WINDOWS.forEach(function (w) {
      var win = windows[w[0]] || {};
      var title = win.requests ? count(win.requests) + " requests, " + count(win.failures) + " failed" : "no traffic";
      var label = win.since_ms ? "since " + day(win.since_ms) : w[1];
      if (win.since_ms) title += " (data since " + win.since + ")";
      box.appendChild(el("div", { "class": "figure", "data-window": w[0], "data-availability": win.availability,
        "data-since": win.since, title: title },
        el("div", { "class": "value" }, pct(win.availability)),
        el("div", { "class": "label" }, label)));
    });
    return box;
  }

  function ttfb(t, attrs) {
    attrs = attrs || {};
    attrs["class"] = "metric";
    attrs["data-ttfb-p50"] = t.p50_ms;
    attrs["data-ttfb-p95"] = t.p95_ms;
    attrs["data-ttfb-p99"] = t.p99_ms;
    attrs.title = "time to first byte over the last hour, within " + (t.relative_error * 100) + "% (" + count(t.samples) + " answers)";
    return el("span", attrs, "TTFB p50 ", el("b", null, ms(t.p50_ms)), " · p95 ", el("b", null, ms(t.p95_ms)));
  }

  // A latency objective: its bound and the share of minute windows that met it.
  function objective(o) {
    var parts = o.objective.split("_");
    var label = (parts[0] === "ttft" ? "TTFT " : parts[0] === "latency" ? "Latency " : parts[0] + " ") + (parts[1] || "");
    var w = o.windows;
    return el("span", { "class": "metric objective", "data-objective": o.objective,
      "data-objective-met": o.met === null ? "" : String(o.met), "data-objective-share": w.share,
      title: count(w.met) + " of " + count(w.judged) + " minutes with answers over the last 24 hours met it (objective: " +
        pct(o.windows_objective) + "); last 5 minutes: " + ms(o.recent_ms) },
      label + " ≤ " + ms(o.bound_ms) + ": ", el("b", null, pct(w.share)), " of minutes");
  }

  function route(r, slo, status) {
    var card = el("article", { "class": "card", "data-route": r.name, "data-state": r.state },
      el("div", { "class": "card-head" }, el("h2", null, r.name), pill(r.state)));
    if (r.reasons.length) {
      var list = el("ul", { "class": "reasons" });
      r.reasons.forEach(function (why) { list.appendChild(el("li", null, why)); });
      card.appendChild(list);
    }
    if (r.note) card.appendChild(el("p", { "class": "note", "data-note": r.name }, r.note));
    card.appendChild(figures(r.availability));
    var metrics = el("div", { "class": "metrics route-metrics" }, ttfb(r.ttfb_ms, { "data-route-ttfb": r.name }));
    r.objectives.forEach(function (o) { metrics.appendChild(objective(o)); });
    card.appendChild(metrics);
    if (r.days.length) {
      card.appendChild(bars(r.name, r.days, slo));
      card.appendChild(el("div", { "class": "bar-legend" },
        el("span", { "class": "wide" }, r.days.length + " days ago"),
        el("span", { "class": "narrow" }, "30 days ago"),
        el("span", null, "today")));
    }
    if (window.ninesPrivate && status.view === "private") window.ninesPrivate.route(card, r);
    return card;
  }

  // An incident as clients saw it: the models that failed requests, and when.
  function incident(i, now) {
    var open = i.resolved_at_ms === null;
    var detail = [open ? "since " + when(i.started_at_ms) + " (" + duration(now - i.started_at_ms) + ")"
                       : when(i.started_at_ms) + ", lasted " + duration(i.duration_ms)];
    detail.push(count(i.failed_requests) + " failed request" + (i.failed_requests === 1 ? "" : "s"));
    if (i.episodes > 1) detail.push(i.episodes + " episodes");
    return el("div", { "class": "incident", "data-incident": i.models.join(","), "data-incident-state": open ? "open" : "closed" },
      el("div", { "class": "what" },
        pill(open ? "down" : "closed", open ? "Ongoing" : "Resolved"),
        el("strong", null, i.models.join(", ")),
        el("span", null, "elevated errors")),
      el("p", { "class": "detail" }, detail.join(" · ")));
  }

  // An operator's notice (incident update or maintenance): its text goes in as textContent.
  function notice(n, now, which) {
    var maintenance = n.kind === "maintenance";
    var detail = [];
    if (n.models.length) detail.push("affects " + n.models.join(", "));
    if (n.starts_at_ms !== null && n.ends_at_ms !== null) detail.push(day(n.starts_at_ms) + " to " + day(n.ends_at_ms));
    else if (n.starts_at_ms !== null) detail.push("from " + day(n.starts_at_ms));
    else if (n.ends_at_ms !== null) detail.push("until " + day(n.ends_at_ms));
    detail.push("posted " + day(n.created_at_ms));
    if (n.resolved_at_ms !== null) detail.push("resolved " + day(n.resolved_at_ms));
    var badge = which === "past" ? pill("closed", "Resolved")
      : maintenance ? pill("maintenance", n.starts_at_ms !== null && n.starts_at_ms > now ? "Scheduled" : "Maintenance")
      : pill("degraded", "Update");
    return el("div", { "class": "notice", "data-notice": n.id, "data-notice-kind": n.kind, "data-notice-state": which },
      el("div", { "class": "what" }, badge, el("strong", null, n.title)),
      n.body ? el("p", { "class": "body" }, n.body) : null,
      el("p", { "class": "detail" }, detail.join(" · ")));
  }

  function bannerText(status) {
    if (status.state === "operational") return "All systems operational";
    if (status.state === "down") return "Major outage";
    var down = status.routes.some(function (r) { return r.state === "down"; });
    return down ? "Partial outage" : "Degraded service";
  }

  function render(status) {
    document.title = status.title;
    $("title").textContent = status.title;
    var banner = $("banner");
    banner.setAttribute("data-overall", status.state);
    $("banner-text").textContent = bannerText(status);

    var notices = el("div", null);
    status.notices.active.forEach(function (n) { notices.appendChild(notice(n, status.generated_at_ms, "active")); });
    $("notices").replaceChildren(notices);

    var routes = el("div", null);
    status.routes.forEach(function (r) { routes.appendChild(route(r, status.slo, status)); });
    if (!status.routes.length) routes.appendChild(el("p", { "class": "empty" }, "No models are configured."));
    $("routes").replaceChildren(routes);

    var list = el("div", null);
    var shown = status.incidents.current.concat(status.incidents.recent.slice(0, RESOLVED_SHOWN));
    var privately = window.ninesPrivate && status.view === "private";
    shown.forEach(function (i) {
      list.appendChild(privately ? window.ninesPrivate.incident(i, status.generated_at_ms) : incident(i, status.generated_at_ms));
    });
    var total = privately ? status.incidents.recent_total : status.incidents.recent.length;
    var more = total - Math.min(RESOLVED_SHOWN, status.incidents.recent.length);
    if (more > 0) {
      list.appendChild(el("p", { "class": "empty" }, "and " + more + " more resolved in the last 7 days (see status.json)"));
    }
    if (!shown.length) {
      list.appendChild(el("p", { "class": "empty", "data-incidents-empty": "" },
        status.ledger ? "No incidents in the last 7 days." : "Incidents are not kept (telemetry.ledger = false)."));
    }
    status.notices.past.forEach(function (n) { list.appendChild(notice(n, status.generated_at_ms, "past")); });
    $("incidents").replaceChildren(list);

    if (privately) window.ninesPrivate.footer($("private-note"));
    $("slo").textContent = "Objective: " + pct(status.slo) + " of requests answered. Data as JSON: /status.json";
    $("updated").textContent = "Updated " + new Date(status.generated_at_ms).toLocaleTimeString() +
      " · refreshes every " + REFRESH_MS / 1000 + " s";
    document.body.setAttribute("data-loaded", "true");
    document.body.setAttribute("data-generated-at", status.generated_at);
  }

  function problem(text) {
    var p = $("problem");
    p.hidden = !text;
    p.textContent = text || "";
  }

  function refresh() {
    fetch("status.json", { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) throw new Error("this status page is private: reload it and sign in with the admin key");
        if (!response.ok) throw new Error("the server answered " + response.status);
        return response.json();
      })
      .then(function (status) {
        lastGood = status;
        render(status);
        problem(null);
      })
      .catch(function (e) {
        var since = lastGood ? " Showing data from " + new Date(lastGood.generated_at_ms).toLocaleTimeString() + "." : "";
        problem("Could not refresh: " + (e && e.message ? e.message : e) + "." + since);
        if (!lastGood) $("banner-text").textContent = "Status unavailable";
      })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }

  // What status-private.js builds with.
  window.ninesStatus = { el: el, pill: pill, pct: pct, ms: ms, ttfb: ttfb, duration: duration, when: when, count: count };
  refresh();
})();

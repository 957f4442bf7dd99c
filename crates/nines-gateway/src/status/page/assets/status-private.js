"use strict";
// The private view's details, sent to admins only (signed in, or with the admin key): each
// model's deployments with their key slots, in-flight counts and upstream figures, and breaker
// incidents with their reasons. Runs after status.js and registers window.ninesPrivate.
(function () {
  var s = window.ninesStatus;
  var el = s.el;

  function deployment(d) {
    var open = d.key_slots.filter(function (k) { return k.breaker !== "closed"; }).length;
    var keys = d.key_slots.length > 1 || open
      ? el("span", { "class": "metric", "data-key-slots": d.key_slots.map(function (k) { return k.name + "=" + k.breaker; }).join(" ") },
          "keys ", el("b", null, (d.key_slots.length - open) + "/" + d.key_slots.length), " serving")
      : null;
    var day = d.availability["24h"] || {};
    return el("div", { "class": "dep", "data-deployment": d.name, "data-state": d.state },
      el("span", { "class": "name" }, d.name),
      el("span", { "class": "metrics" },
        s.ttfb(d.ttfb_ms),
        el("span", { "class": "metric", "data-in-flight": d.in_flight }, "in flight ", el("b", null, String(d.in_flight))),
        el("span", { "class": "metric", title: "what the upstream did over 24 hours" }, "upstream 24h ", el("b", null, s.pct(day.availability))),
        keys),
      s.pill(d.state, d.state === "down" ? "Down" : null));
  }

  window.ninesPrivate = {
    route: function (card, r) {
      if (r.deployment_reasons.length) {
        var list = el("ul", { "class": "reasons internal" });
        r.deployment_reasons.forEach(function (why) { list.appendChild(el("li", null, why)); });
        card.appendChild(list);
      }
      var deps = el("div", { "class": "deployments" });
      r.deployments.forEach(function (d) { deps.appendChild(deployment(d)); });
      card.appendChild(deps);
    },
    incident: function (i, now) {
      var open = i.closed_at_ms === null;
      var detail = [i.reason];
      detail.push(open ? "since " + s.when(i.opened_at_ms) + " (" + s.duration(now - i.opened_at_ms) + ")"
                       : s.when(i.opened_at_ms) + ", lasted " + s.duration(i.duration_ms));
      if (i.routes.length) detail.push("affects " + i.routes.join(", "));
      if (i.trips > 1) detail.push("breaker opened " + i.trips + " times");
      if (i.episodes > 1) detail.push(i.episodes + " episodes (flapping): keys " + i.key_slots.join(", "));
      return el("div", { "class": "incident", "data-incident": i.key_slot, "data-incident-state": open ? "open" : "closed",
        "data-incident-deployment": i.deployment },
        el("div", { "class": "what" },
          s.pill(open ? "down" : "closed", open ? "Ongoing" : "Resolved"),
          el("strong", null, i.deployment),
          el("span", null, "key " + i.key_slot + ": circuit breaker open")),
        el("p", { "class": "detail" }, detail.join(" · ")));
    },
    footer: function (node) {
      node.textContent = "Private view. A deployment's availability is what the upstream did, one entry per " +
        "attempt. A deployment is down while every key's circuit breaker is open, degraded while some are. " +
        "Incidents here are breaker-open periods; the public page lists only those clients saw failures in.";
    }
  };
})();

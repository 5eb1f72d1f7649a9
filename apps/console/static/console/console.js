/* The operations console's live parts (no framework, no CDN): the dashboard and the charge point page
   follow /admin/console/live/ (a WebSocket authenticated by the admin session) and update themselves. */
(function () {
  "use strict";

  function socketUrl(path) {
    return (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + path;
  }

  function follow(root, onSnapshot) {
    var delay = 1000;
    var socket = null;
    function open() {
      socket = new WebSocket(socketUrl(root.dataset.wsPath));
      socket.onopen = function () { delay = 1000; root.dataset.live = "1"; };
      socket.onmessage = function (event) {
        var message = JSON.parse(event.data);
        if (message.type === "snapshot") { onSnapshot(message.snapshot); }
      };
      socket.onclose = function () {
        root.dataset.live = "0";
        window.setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }
    open();
    // Nobody announces that a charger went silent: ask for a fresh read now and then.
    window.setInterval(function () {
      if (socket && socket.readyState === 1) { socket.send(JSON.stringify({ type: "refresh" })); }
    }, 60000);
  }

  function setMetric(root, name, value) {
    root.querySelectorAll('[data-metric="' + name + '"]').forEach(function (el) { el.textContent = value; });
  }

  function dashboard(root) {
    follow(root, function (s) {
      Object.keys(s.counts).forEach(function (key) { setMetric(root, "counts." + key, s.counts[key]); });
      ["active_sessions", "energy_today_kwh", "failed_commands_24h", "failed_payments_24h", "open_alerts",
       "silent_count"].forEach(function (key) { setMetric(root, key, s[key]); });
      setMetric(root, "revenue_today", s.revenue_today.length
        ? s.revenue_today.map(function (r) { return r.amount + " " + r.currency; }).join(", ") : "0");
      s.locations.forEach(function (loc) {
        var marker = root.querySelector('[data-location-id="' + loc.id + '"]');
        if (marker) {
          marker.setAttribute("class", "console-marker state-" + loc.state);
          marker.dataset.state = loc.state;
        }
      });
      var list = root.querySelector('[data-list="silent"]');
      if (list) {
        list.textContent = "";
        s.silent.forEach(function (item) {
          var li = document.createElement("li");
          li.textContent = item.identity + " · " + item.silent_min + " min";
          list.appendChild(li);
        });
      }
      root.dataset.updatedAt = s.generated_at;
    });
  }

  function chargePoint(root) {
    follow(root, function () {
      fetch(root.dataset.liveUrl, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          root.dataset.state = data.state;
          var state = root.querySelector('[data-field="state"]');
          state.textContent = data.state;
          state.setAttribute("class", "console-state state-" + data.state);
          var top = root.querySelector('[data-connector="0-0"] [data-field="status"]');
          if (top) { top.textContent = data.status; }
          data.connectors.forEach(function (c) {
            var row = root.querySelector('[data-connector="' + c.evse_id + "-" + c.connector_id + '"]');
            if (!row) { return; }
            row.querySelector('[data-field="status"]').textContent = c.status;
            row.querySelector('[data-field="error_code"]').textContent = c.error_code || "-";
          });
        });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var board = document.getElementById("console-dashboard");
    if (board) { dashboard(board); }
    var panel = document.getElementById("console-chargepoint");
    if (panel) { chargePoint(panel); }
  });
})();

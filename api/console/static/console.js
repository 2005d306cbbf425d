// The console's behaviour: live rows from server-sent events, and the charts.
// Rows arrive rendered by the server (the same templates as the page); this only places them.
"use strict";

(function () {
  // Error answers carry a fragment that says what went wrong: show it, as htmx does for 2xx.
  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "[23]..", swap: true },
        { code: "401", swap: false, error: true },
        { code: "[45]..", swap: true, error: true },
      ];
    }
    live();
    charts();
  });

  // Measured by bench/console_live.py: event time → row in the page, in milliseconds.
  const stats = (window.omLive = { received: 0, latencies: [] });

  function rowFrom(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function flash(row) {
    row.classList.add("flash");
    setTimeout(function () { row.classList.remove("flash"); }, 1300);
  }

  function cap(tbody, limit) {
    const rows = tbody.querySelectorAll("tr:not(.more)");
    for (let i = limit; i < rows.length; i++) rows[i].remove();
  }

  function upsert(tbody, html, matches, limit) {
    const row = rowFrom(html);
    if (!row) return null;
    const existing = document.getElementById(row.id);
    if (existing) {
      if (matches) {
        existing.replaceWith(row);
        flash(row);
        if (row.querySelector("[hx-get], [hx-post]")) htmx.process(row);
      } else existing.remove();
      return row;
    }
    if (!tbody || !matches) return null;
    const empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    tbody.prepend(row);
    flash(row);
    cap(tbody, limit || 200);
    if (row.querySelector("[hx-get], [hx-post]")) htmx.process(row);
    return row;
  }

  function filterValue(form, name) {
    const field = form && form.elements.namedItem(name);
    return field ? field.value.trim() : "";
  }

  function orderMatches(data) {
    const form = document.getElementById("order-filters");
    const symbol = filterValue(form, "symbol").toUpperCase();
    const status = filterValue(form, "status");
    const side = filterValue(form, "side");
    return (!symbol || symbol === data.symbol) && (!status || status === data.status) && (!side || side === data.side);
  }

  function deadLetterMatches(data) {
    const form = document.getElementById("dead-letter-filters");
    const state = filterValue(form, "state");
    const queue = filterValue(form, "queue");
    return (!state || state === data.state) && (!queue || queue === data.queue);
  }

  function refresh() {
    // After a reconnect, reload what the stream may have missed.
    const orders = document.getElementById("orders-body");
    if (orders) {
      const form = document.getElementById("order-filters");
      htmx.ajax("GET", "/console/fragments/orders?" + new URLSearchParams(new FormData(form)), { target: orders });
    }
    if (document.getElementById("positions-body")) htmx.ajax("GET", "/console/fragments/positions", { target: "#positions-body" });
    if (document.getElementById("signals-body")) htmx.ajax("GET", "/console/fragments/signals", { target: "#signals-body" });
    const dl = document.getElementById("dead-letters-body");
    if (dl) {
      const form = document.getElementById("dead-letter-filters");
      htmx.ajax("GET", "/console/fragments/dead-letters?" + new URLSearchParams(new FormData(form)), { target: dl });
    }
  }

  function live() {
    const status = document.getElementById("live-status");
    if (!status || !window.EventSource) return;
    let opened = false;
    const source = new EventSource("/console/events");
    source.addEventListener("open", function () {
      status.textContent = "live";
      status.classList.add("on");
      if (opened) refresh();
      opened = true;
    });
    source.addEventListener("error", function () {
      status.textContent = "reconnecting…";
      status.classList.remove("on");
    });
    source.addEventListener("order", function (e) {
      const data = JSON.parse(e.data);
      upsert(document.getElementById("orders-body"), data.html, orderMatches(data), 200);
      stats.received += 1;
      if (data.occurred_at) {
        stats.latencies.push(Date.now() - Date.parse(data.occurred_at));
        if (stats.latencies.length > 20000) stats.latencies.shift();
      }
    });
    source.addEventListener("fill", function (e) {
      const tbody = document.getElementById("fills-body");
      if (!tbody) return;
      const row = rowFrom(JSON.parse(e.data).html);
      const empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      tbody.prepend(row);
      flash(row);
      cap(tbody, 50);
    });
    source.addEventListener("signal", function (e) {
      const data = JSON.parse(e.data);
      upsert(document.getElementById("signals-body"), data.html, true, 100);
      document.querySelectorAll(".watch-signal").forEach(function (el) {
        if (el.dataset.signalId === data.signal_id) el.textContent = data.status.replace(/_/g, " ");
      });
    });
    source.addEventListener("positions", function (e) {
      const tbody = document.getElementById("positions-body");
      if (tbody) tbody.innerHTML = JSON.parse(e.data).html;
    });
    function badge(e) {
      const el = document.getElementById("trading-badge");
      if (el) el.innerHTML = JSON.parse(e.data).html;
    }
    source.addEventListener("trading_state", badge);
    source.addEventListener("trading_badge", badge);
    source.addEventListener("dead_letter", function (e) {
      const data = JSON.parse(e.data);
      upsert(document.getElementById("dead-letters-body"), data.html, deadLetterMatches(data), 200);
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  const COLORS = ["#0b5cad", "#b3261e", "#0a7a3d", "#8a5a00", "#6b3fa0", "#00838f", "#c2185b", "#455a64"];

  function charts() {
    const root = document.getElementById("charts");
    if (!root || !window.uPlot) return;
    const plots = {};
    const interval = Math.max(1, parseFloat(root.dataset.interval || "5"));
    async function tick() {
      let data;
      try {
        const response = await fetch(root.dataset.source, { headers: { Accept: "application/json" } });
        if (!response.ok) return;
        data = await response.json();
      } catch (err) {
        return;
      }
      for (const [name, chart] of Object.entries(data.charts)) {
        const figure = document.getElementById("chart-" + name);
        if (!figure) continue;
        const has = data.times.length > 0 && chart.labels.length > 0;
        figure.classList.toggle("has-data", has);
        if (!has) continue;
        const series = [data.times].concat(chart.values);
        const key = chart.labels.join("\u0000");
        let entry = plots[name];
        if (entry && entry.key !== key) { entry.plot.destroy(); entry = null; }
        if (!entry) {
          const el = figure.querySelector(".plot");
          el.innerHTML = "";
          const options = {
            width: Math.max(el.clientWidth, 260),
            height: 200,
            series: [{}].concat(chart.labels.map(function (label, i) {
              return { label: label, stroke: COLORS[i % COLORS.length], width: 1.5 };
            })),
            axes: [{}, { label: chart.unit, size: 64 }],
            scales: { x: { time: true } },
          };
          plots[name] = entry = { key: key, el: el, plot: new uPlot(options, series, el) };
        } else {
          entry.plot.setData(series);
        }
      }
    }
    tick();
    setInterval(tick, interval * 1000);
    window.addEventListener("resize", function () {
      Object.values(plots).forEach(function (entry) {
        entry.plot.setSize({ width: Math.max(entry.el.clientWidth, 260), height: 200 });
      });
    });
  }
})();

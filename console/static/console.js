// tripwire console: live updates (server-sent events), in-place acknowledge, local times.
// Plain JavaScript, no library: every page works without it (forms post, links navigate).
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const page = document.body.dataset.page;

  // Times: the server writes UTC; show the operator's local time, or "x ago".
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }
  function localTimes(root) {
    root.querySelectorAll("time[data-ns]").forEach((t) => {
      if (!t.dataset.ns) return;
      const d = new Date(Number(BigInt(t.dataset.ns) / 1000000n));
      t.title = d.toISOString();
      t.textContent = t.hasAttribute("data-ago") ? ago(Date.now() - d) : d.toLocaleString();
    });
  }
  localTimes(document);

  function setCount(n) {
    const badge = document.getElementById("alert-count");
    if (badge) { badge.textContent = n; badge.classList.toggle("hot", n > 0); }
    const summary = document.getElementById("alerts-summary");
    if (summary) {
      summary.textContent = n > 0 ? n + " unacknowledged" : "all acknowledged";
      summary.className = n > 0 ? "hot-text" : "ok-text";
    }
  }

  // Acknowledge without leaving the page (the form posts normally without this script).
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!form.classList.contains("ack")) return;
    ev.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    const id = form.dataset.alert;
    try {
      const r = await fetch("/v1/alerts/" + encodeURIComponent(id) + "/ack", {
        method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
      });
      if (!r.ok) throw new Error("HTTP " + r.status + ": " + (await r.text()));
      const alert = await r.json();
      const item = document.getElementById("alert-" + id);
      if (item) {
        item.classList.replace("unack", "acked");
        const note = document.createElement("div");
        note.className = "muted small ackd";
        note.textContent = "acknowledged by " + alert.acknowledged_by + " · just now";
        form.replaceWith(note);
      }
      const left = document.querySelectorAll(".alert-item.unack").length;
      const state = document.getElementById("event-alert-state");
      if (state && left === 0) { state.textContent = "acknowledged"; state.className = "badge dim"; }
      const counts = await fetch("/v1/alerts?acknowledged=false&limit=1", { credentials: "same-origin" });
      if (counts.ok) setCount((await counts.json()).unacknowledged);
    } catch (err) {
      button.disabled = false;
      window.alert("Could not acknowledge: " + err.message);
    }
  });

  // The event page: click a frame of the timeline to see it large.
  document.getElementById("timeline")?.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.frame");
    if (!b) return;
    document.querySelectorAll("button.frame.selected").forEach((x) => x.classList.remove("selected"));
    b.classList.add("selected");
    const view = document.getElementById("frame-view");
    if (view) view.src = b.dataset.src;
    const cap = document.getElementById("frame-caption");
    if (cap) cap.textContent = b.dataset.caption;
  });

  // Live updates.
  const live = document.getElementById("live");
  if (!live || live.dataset.configured !== "yes" || !window.EventSource) return;
  const table = document.getElementById("events");
  function matches(e) {
    const f = table.dataset;
    if (f.camera && e.camera !== f.camera) return false;
    if (f.label && !e.labels.includes(f.label)) return false;
    if (f.alerts === "only" && !e.alerts) return false;
    if (f.alerts === "none" && e.alerts) return false;
    if (f.status && e.status !== f.status) return false;
    return true;
  }
  function showEvent(e) {
    if (!table || table.dataset.live !== "yes" || !e.html) return;
    const body = table.tBodies[0];
    const old = document.getElementById("ev-" + e.id);
    const tmp = document.createElement("tbody");
    tmp.innerHTML = e.html.trim();
    const row = tmp.firstElementChild;
    localTimes(row);
    if (old) { old.replaceWith(row); return; }
    if (!matches(e)) return;
    row.classList.add("fresh");
    // Newest first: before the first row that started earlier.
    const after = Array.from(body.rows).find((r) => {
      const t = r.querySelector("time[data-ns]");
      return t && BigInt(t.dataset.ns) <= BigInt(e.start_ns);
    });
    body.insertBefore(row, after || null);
    document.getElementById("no-events")?.remove();
    while (body.rows.length > 200) body.deleteRow(-1);
  }
  let gridTimer = null;
  function refreshGrid() {
    if (page !== "cameras" || gridTimer) return;
    gridTimer = setTimeout(async () => {
      gridTimer = null;
      const r = await fetch("/cameras/grid", { credentials: "same-origin" });
      if (r.ok) {
        const grid = document.getElementById("camera-grid");
        grid.innerHTML = await r.text();
        localTimes(grid);
      }
    }, 2000);
  }
  const source = new EventSource("/v1/live");
  source.addEventListener("open", () => { live.className = "live on"; live.textContent = "live"; });
  source.addEventListener("error", () => { live.className = "live off"; live.textContent = "reconnecting"; });
  source.addEventListener("status", (m) => {
    const on = JSON.parse(m.data).live;
    live.className = on ? "live on" : "live off";
    live.textContent = on ? "live" : "broker down";
  });
  source.addEventListener("event", (m) => { showEvent(JSON.parse(m.data)); refreshGrid(); });
  source.addEventListener("camera", refreshGrid);
  source.addEventListener("alerts", (m) => setCount(JSON.parse(m.data).unacknowledged));
  // Age labels tick.
  setInterval(() => document.querySelectorAll("time[data-ago]").forEach((t) => localTimes(t.parentElement)), 15000);
})();

// Loom's dashboard scripts: live updates over the SSE streams. Every page works without
// them; this only keeps what is on screen current.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf;

  // The unread badge in the header, on every page.
  function followNotifications() {
    const badge = document.getElementById("unread-count");
    if (!badge || !window.EventSource) return;
    const source = new EventSource("/api/v1/notifications/stream");
    source.addEventListener("notification", (e) => {
      const data = JSON.parse(e.data);
      if (typeof data.unread === "number") {
        badge.textContent = String(data.unread);
        badge.classList.toggle("empty", data.unread === 0);
      }
    });
  }

  // Other tabs of this browser learn the count a page was just served with (after "mark
  // read" in one tab, the others' badges follow; the stream only says when one is raised).
  function shareUnread() {
    const badge = document.getElementById("unread-count");
    if (!badge || !window.BroadcastChannel) return;
    const channel = new BroadcastChannel("loom-unread");
    channel.onmessage = (e) => {
      if (typeof e.data !== "number") return;
      badge.textContent = String(e.data);
      badge.classList.toggle("empty", e.data === 0);
    };
    // A page restored from the back/forward cache shows an old count: it does not tell.
    const nav = performance.getEntriesByType("navigation")[0];
    if (nav && nav.type === "back_forward") return;
    channel.postMessage(Number(badge.textContent) || 0);
  }

  // A feed list (`data-live="feed"`): new activity is added at the top.
  function followFeed(list) {
    if (!window.EventSource) return;
    const query = list.dataset.query || "";
    const source = new EventSource("/api/v1/activity/stream" + query);
    const add = (e) => {
      const a = JSON.parse(e.data);
      if (!a.id || list.querySelector(`[data-id="${a.id}"]`)) return;
      const li = document.createElement("li");
      li.dataset.id = a.id;
      li.className = "fresh family-" + String(a.kind).split(".")[0];
      const time = document.createElement("time");
      time.dateTime = a.created_at;
      time.textContent = "just now";
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = a.kind;
      li.append(time, " ", kind, " ");
      if (a.bead_id) {
        const link = document.createElement("a");
        link.href = "/beads/" + encodeURIComponent(a.bead_id);
        const code = document.createElement("code");
        code.textContent = a.bead_id;
        link.append(code);
        li.append(link, " ");
      }
      const d = a.data || {};
      const summary = document.createElement("span");
      summary.className = "summary";
      summary.textContent = String(d.title || d.note || d.reason || d.summary || d.name || "").slice(0, 140);
      li.append(summary);
      const empty = list.querySelector("li.muted");
      if (empty) empty.remove();
      list.prepend(li);
      while (list.children.length > 100) list.lastElementChild.remove();
    };
    // Named events: one listener per kind the stream may send.
    for (const kind of KINDS) source.addEventListener(kind, add);
  }

  // The stored event kinds, from the server (so this list never drifts from Loom's).
  const KINDS = (document.body.dataset.kinds || "").split(",").filter(Boolean);

  // Parts of a page kept current (`data-live="refresh"`): any event of the named families on
  // the activity stream (filtered by `data-stream`) fetches `data-src` (the page itself by
  // default) again and swaps in its elements of the ids in `data-target`, server-rendered, so
  // they show exactly what a reload would. A project's board is one.
  function followRefresh(holder) {
    if (!window.EventSource || !window.fetch) return;
    const targets = (holder.dataset.target || "").split(" ").filter(Boolean);
    const src = holder.dataset.src || window.location.pathname + window.location.search;
    const families = (holder.dataset.families || "").split(",").filter(Boolean);
    const source = new EventSource("/api/v1/activity/stream" + (holder.dataset.stream || ""));
    let timer = null;
    const refresh = () => {
      timer = null;
      fetch(src, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
        .then((html) => {
          const doc = new DOMParser().parseFromString(html, "text/html");
          for (const target of targets) {
            const fresh = doc.getElementById(target);
            const old = document.getElementById(target);
            if (fresh && old) old.replaceWith(document.adoptNode(fresh));
          }
        })
        .catch(() => {});
    };
    const changed = () => { if (!timer) timer = setTimeout(refresh, 150); };
    for (const kind of KINDS) {
      if (families.includes(kind.split(".")[0])) source.addEventListener(kind, changed);
    }
  }

  // Exposed for pages that need more.
  window.loom = { csrf, KINDS };

  document.addEventListener("DOMContentLoaded", () => {
    followNotifications();
    shareUnread();
    document.querySelectorAll('[data-live="feed"]').forEach(followFeed);
    document.querySelectorAll('[data-live="refresh"]').forEach(followRefresh);
  });
})();

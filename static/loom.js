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

  // Fetches `src` and swaps in its elements of the given ids (or of the ids `targets()`
  // names once the page has come), as the server renders them.
  function swap(src, targets) {
    return fetch(src, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => {
        const doc = new DOMParser().parseFromString(html, "text/html");
        for (const target of typeof targets === "function" ? targets() : targets) {
          const fresh = doc.getElementById(target);
          const old = document.getElementById(target);
          if (fresh && old) old.replaceWith(document.adoptNode(fresh));
        }
      })
      .catch(() => {});
  }

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
    const refresh = () => { timer = null; swap(src, targets); };
    const changed = () => { if (!timer) timer = setTimeout(refresh, 150); };
    for (const kind of KINDS) {
      if (families.includes(kind.split(".")[0])) source.addEventListener(kind, changed);
    }
  }

  // A conversation (`#chat`): the reply streams in as text (never as HTML), with a card per
  // action; when it ends the messages are swapped for the server's rendering (markdown made
  // safe there). Sending and stopping use the API, so the stream is never interrupted.
  function followChat(chat) {
    if (!window.EventSource || !window.fetch) return;
    const id = chat.dataset.conversation;
    const api = "/api/v1/conversations/" + id;
    const live = () => document.getElementById("chat-live");
    const problem = document.getElementById("chat-error");
    const say = (text) => { problem.textContent = text; problem.hidden = !text; };
    // Refreshes run one after another, in the order of the events that asked for them, so
    // an older rendering never lands over a newer one.
    let queue = Promise.resolve();
    const refresh = (targets) => {
      queue = queue.then(() => swap(window.location.pathname, targets));
    };
    // Bumped by each message: a reply that ended must not swap away the next one's text.
    let generation = 0;
    const source = new EventSource(api + "/stream?last_event_id=" + chat.dataset.after);
    const start = () => {
      const box = live();
      if (box.hidden) {
        box.hidden = false;
        box.querySelector(".live-text").textContent = "";
        box.querySelector(".live-actions").textContent = "";
      }
      return box;
    };
    source.addEventListener("message", () => {
      generation += 1;
      // The previous reply has ended (one at a time): the next text starts a fresh box.
      live().hidden = true;
      refresh(["chat-messages"]);
    });
    source.addEventListener("delta", (e) => {
      start().querySelector(".live-text").append(JSON.parse(e.data).text || "");
    });
    source.addEventListener("action", (e) => {
      const action = JSON.parse(e.data).action || {};
      const card = document.createElement("details");
      card.className = "action-card";
      const summary = document.createElement("summary");
      const name = document.createElement("code");
      name.className = "action";
      name.textContent = action.action || "?";
      const rest = Object.assign({}, action);
      delete rest.action;
      const detail = document.createElement("code");
      detail.className = "detail";
      detail.textContent = Object.keys(rest).length ? JSON.stringify(rest).slice(0, 400) : "";
      summary.append(name, " ", detail);
      card.append(summary);
      start().querySelector(".live-actions").append(card);
    });
    source.addEventListener("action_result", (e) => {
      const result = JSON.parse(e.data);
      const cards = start().querySelectorAll(".live-actions .action-card");
      const card = cards[cards.length - 1];
      if (!card) return;
      card.classList.add(result.ok ? "ok" : "failed");
      if (result.output) {
        const out = document.createElement("pre");
        out.className = "result";
        out.textContent = result.output;
        card.append(out);
      }
    });
    const ended = () => {
      const at = generation;
      refresh(() => (generation === at ? ["chat-messages", "chat-live"] : ["chat-messages"]));
    };
    source.addEventListener("done", ended);
    // A named `error` event carries data; the browser's own (a dropped connection, which it
    // retries by itself after the last id) does not.
    source.addEventListener("error", (e) => { if (e.data) ended(); });

    const form = document.getElementById("chat-form");
    if (!form) return;
    const body = document.getElementById("chat-body");
    const post = (path, payload) => fetch(api + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: payload === undefined ? undefined : JSON.stringify(payload),
    }).then((r) => r.ok ? r : r.json().then((b) => Promise.reject(b.error ? b.error.message : "the request failed")));
    form.addEventListener("submit", (e) => {
      const via = e.submitter;
      if (via && via.id === "chat-handoff") return; // a whole-page change: the form posts it
      e.preventDefault();
      if (via && via.id === "chat-stop") {
        post("/stop").then(() => say("")).catch(say);
        return;
      }
      const text = body.value.trim();
      if (!text) return;
      post("/messages", { body: text }).then(() => { body.value = ""; say(""); }).catch(say);
    });
    body.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
    });
  }

  // Exposed for pages that need more.
  window.loom = { csrf, KINDS };

  document.addEventListener("DOMContentLoaded", () => {
    followNotifications();
    shareUnread();
    document.querySelectorAll('[data-live="feed"]').forEach(followFeed);
    document.querySelectorAll('[data-live="refresh"]').forEach(followRefresh);
    const chat = document.getElementById("chat");
    if (chat) followChat(chat);
  });
})();

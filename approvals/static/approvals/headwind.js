// Headwind dashboard: toasts, the approve/reject <dialog>, and live updates over a WebSocket.
// Everything else is htmx attributes in the templates; the server renders every row.
(function () {
  "use strict";

  // ---- Toasts -------------------------------------------------------------------------------
  function toast(level, message, href) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast toast-" + level;
    item.setAttribute("role", level === "error" ? "alert" : "status");
    const text = document.createElement(href ? "a" : "span");
    text.className = "toast-text";
    text.textContent = message;
    if (href) text.href = href;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    item.append(text, close);
    box.append(item);
    dismissLater(item, level === "error" ? 12000 : 6000);
  }
  function dismissLater(item, ms) { setTimeout(function () { item.remove(); }, ms); }

  document.addEventListener("click", function (event) {
    const close = event.target.closest(".toast-close");
    if (close) close.closest(".toast").remove();
    const cancel = event.target.closest("[data-dialog-close]");
    if (cancel) cancel.closest("dialog").close();
  });
  // Raised by htmx from the HX-Trigger header of a response (success and refusals alike).
  document.addEventListener("headwind:toast", function (event) {
    toast(event.detail.level || "info", event.detail.message || "");
  });
  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    if ((xhr.getResponseHeader("HX-Trigger") || "").includes("headwind:toast")) return;
    if (xhr.status === 404 && event.detail.requestConfig.verb === "get") return; // gone rows
    toast("error", "Headwind answered " + xhr.status + " " + (xhr.statusText || ""));
  });
  document.addEventListener("htmx:sendError", function () {
    toast("error", "Headwind could not be reached; check your connection.");
  });

  // ---- Dialogs ------------------------------------------------------------------------------
  document.addEventListener("htmx:afterSwap", function (event) {
    const slot = event.detail && event.detail.target;
    if (!slot || slot.id !== "dialog-slot") return;
    const dialog = slot.querySelector("dialog");
    if (!dialog) return;
    if (!dialog.open) dialog.showModal();
    const field = dialog.querySelector("textarea");
    if (field) field.focus();
    dialog.addEventListener("close", function () { dialog.remove(); });
  });
  // A dialog's form closes it once answered, unless the answer is the dialog again (422).
  document.addEventListener("htmx:afterRequest", function (event) {
    const elt = event.detail && event.detail.elt;
    const dialog = elt && elt.closest && elt.closest("dialog");
    if (dialog && event.detail.xhr && event.detail.xhr.status !== 422 && dialog.open) dialog.close();
  });

  // ---- Live updates -------------------------------------------------------------------------
  // The socket only says which request changed; rows are fetched over HTTP, so what is shown
  // (and which buttons) is decided by the same server code as a page load.
  const announced = new Set();
  const queued = new Map();
  let timer = null;

  function firstPage() {
    const page = new URLSearchParams(location.search).get("page");
    return !page || page === "1";
  }
  function refreshList(flashIds) {
    const results = document.getElementById("results");
    if (!results) return;
    htmx.ajax("GET", location.pathname + location.search, { target: results, swap: "outerHTML" })
      .then(function () {
        followTitle();
        flashIds.forEach(function (id) {
          const row = document.getElementById(id);
          if (row) row.classList.add("flash");
        });
      });
  }
  // The summary ("3 requests · 1 pending") and the page title's pending count, fetched again
  // whenever rows change in place: only the server knows what the filters now match.
  function refreshSummary() {
    const summary = document.querySelector("#results .summary");
    if (!summary) return;
    htmx.ajax("GET", location.pathname + location.search,
      { target: summary, swap: "outerHTML", select: "#results .summary" })
      .then(followTitle);
  }
  function followTitle() {
    const summary = document.querySelector("#results .summary");
    if (!summary || summary.dataset.pending === undefined) return;
    const pending = parseInt(summary.dataset.pending, 10) || 0;
    const bare = document.title.replace(/^\(\d+\) /, "");
    document.title = (pending ? "(" + pending + ") " : "") + bare;
  }
  function flush() {
    timer = null;
    const messages = Array.from(queued.values());
    queued.clear();
    const detail = document.getElementById("detail");
    if (detail) {
      const mine = messages.find(function (m) { return m.namespace + "/" + m.name === detail.dataset.key; });
      if (mine) htmx.ajax("GET", mine.detail_url, { target: detail, swap: "outerHTML" });
      return;
    }
    const shown = messages.filter(function (m) { return document.getElementById(m.row_id); });
    const unseen = messages.filter(function (m) { return !document.getElementById(m.row_id) && m.event !== "deleted"; });
    if (shown.length > 8 || (unseen.length && firstPage())) {
      refreshList(unseen.map(function (m) { return m.row_id; }));
      return;
    }
    shown.forEach(function (m) {
      const row = document.getElementById(m.row_id);
      if (m.event === "deleted") row.classList.add("gone");
      else htmx.ajax("GET", m.row_url, { target: row, swap: "outerHTML" });
    });
    if (messages.length) refreshSummary();
  }
  function changed(message) {
    const key = message.namespace + "/" + message.name;
    if (message.event === "created" && !announced.has(key)) {
      announced.add(key);
      toast("info", "New request " + key + ": " + message.target + " → " + message.new_image,
        message.detail_url);
    }
    queued.set(message.row_id, message);
    if (!timer) timer = setTimeout(flush, 200);
  }
  function live(url) {
    let delay = 1000;
    let dropped = false;
    function connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(scheme + location.host + url);
      socket.addEventListener("open", function () {
        delay = 1000;
        document.documentElement.dataset.live = "connected";
        if (dropped) { // changes may have been missed while away: reload what is shown
          const detail = document.getElementById("detail");
          if (detail) htmx.ajax("GET", location.pathname, { target: detail, swap: "outerHTML" });
          else refreshList([]);
        }
      });
      socket.addEventListener("message", function (event) {
        try { changed(JSON.parse(event.data)); } catch (error) { console.error(error); }
      });
      socket.addEventListener("close", function () {
        dropped = true;
        document.documentElement.dataset.live = "disconnected";
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      });
    }
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#toasts .toast").forEach(function (item) { dismissLater(item, 8000); });
    const url = document.body.dataset.liveUrl;
    if (url && window.WebSocket && window.htmx) live(url);
  });
})();

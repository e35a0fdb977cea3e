/* The Call Center screen's own script (no build step): selection and keyboard, keypad, which buttons are enabled,
 * the live channel (WebSocket with back-off), notification windows and the live duration count.
 *
 * Rules: server HTML (escaped by Django's templates) is swapped in by htmx; anything that comes as data (the live
 * messages) is written with textContent only, never as markup. */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("cc-config").textContent);
  const S = config.strings;
  const clockOffset = config.server_now * 1000 - Date.now(); // server clock minus ours, for the live durations
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const urlFor = (template, id) => template.replace("/0/", "/" + encodeURIComponent(id) + "/");
  const body = document.body;

  function csrfToken() {
    const input = $("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  body.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });

  // htmx drops a request whose source element has one in flight, and a request without a source is the body's: so
  // every request names its own element (the one it swaps), and unrelated requests never cancel each other; a
  // second request for the same element waits for the first (hx-sync="this:queue last" in the templates).
  function load(verb, url, target, swap) {
    const element = typeof target === "string" ? $(target) : target;
    if (!element) return;
    const done = htmx.ajax(verb, url, { source: element, target: element, swap: swap || "innerHTML" });
    if (done && done.catch) done.catch(() => {}); // a failed request is reported by the htmx:responseError handler
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ---- messages ---------------------------------------------------------------------------------------------------

  function flash(text, level) {
    const box = $("#cc-flash");
    if (!box) return;
    const line = el("p", "flash " + (level || "info"));
    line.appendChild(el("span", "text", text));
    const close = el("button", "flash-close", "×");
    close.type = "button";
    close.setAttribute("data-close-flash", "");
    close.setAttribute("aria-label", S.close);
    line.appendChild(close);
    box.replaceChildren(line);
    scheduleFlashFade();
  }

  let flashTimer = null;
  function scheduleFlashFade() {
    clearTimeout(flashTimer);
    const line = $("#cc-flash .flash");
    if (line && (line.classList.contains("success") || line.classList.contains("info"))) {
      flashTimer = setTimeout(() => line.remove(), 8000);
    }
  }

  body.addEventListener("click", (event) => {
    const close = event.target.closest("[data-close-flash]");
    if (close) close.closest(".flash").remove();
  });

  body.addEventListener("htmx:responseError", (event) => {
    const status = event.detail.xhr ? event.detail.xhr.status : "";
    if (status === 403) flash(S.forbidden, "error");
    else if (status !== 404) flash(S.server_error + " (" + status + ")", "error");
  });
  body.addEventListener("htmx:sendError", () => flash(S.offline, "error"));

  // ---- selection and keyboard -------------------------------------------------------------------------------------

  let selectedId = ($("#cc-details-data") && $("#cc-details-data").dataset.call) || "";

  function rows() {
    return $$("#cc-rows tr.call");
  }

  function markSelection() {
    let any = false;
    for (const row of rows()) {
      const selected = row.dataset.call === selectedId;
      row.setAttribute("aria-selected", selected ? "true" : "false");
      row.tabIndex = selected ? 0 : -1;
      any = any || selected;
    }
    if (!any && rows().length) rows()[0].tabIndex = 0;
  }

  function select(row, options) {
    const opts = Object.assign({ focus: true, load: true }, options);
    selectedId = row.dataset.call;
    $("#cc-selected-call").value = selectedId;
    $("#cc-number").value = row.dataset.number || ""; // S-4.9: selecting a call fills in its number
    markSelection();
    if (opts.focus) row.focus();
    if (opts.load) loadDetails();
    updateButtons();
  }

  function loadDetails() {
    if (!selectedId) return;
    load("GET", urlFor(config.urls.details, selectedId), "#cc-details");
  }

  function clearSelection() {
    selectedId = "";
    $("#cc-selected-call").value = "";
    const details = $("#cc-details");
    const placeholder = el("div", "details empty");
    placeholder.id = "cc-details-data";
    placeholder.appendChild(el("p", "placeholder", S.select_a_call));
    details.replaceChildren(placeholder);
    updateButtons();
  }

  function openCall(row) {
    // S-4.18: a call with an activity opens it; without, the server creates one of the default type or asks.
    if (row.dataset.activityUrl) {
      openActivity(row.dataset.activityUrl);
      return;
    }
    load("POST", urlFor(config.urls.open, row.dataset.call), dialogBody);
  }

  function openActivity(url) {
    const opened = window.open(url, "_blank");
    if (opened) {
      opened.opener = null;
      return;
    }
    // The browser blocked the new window (no click started it): offer a link instead of leaving the screen.
    const box = $("#cc-flash");
    const line = el("p", "flash info");
    const link = el("a", "", S.open_activity);
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener";
    line.appendChild(link);
    box.replaceChildren(line);
  }

  const table = $("#cc-table");
  table.addEventListener("click", (event) => {
    const row = event.target.closest("tr.call");
    if (!row || event.target.closest("a, input, button")) return;
    select(row);
  });
  table.addEventListener("dblclick", (event) => {
    const row = event.target.closest("tr.call");
    if (!row || event.target.closest("a, input, button")) return;
    window.getSelection().removeAllRanges();
    openCall(row);
  });
  table.addEventListener("keydown", (event) => {
    const row = event.target.closest("tr.call");
    if (!row || event.target.closest("input, a, button")) return;
    const list = rows();
    const index = list.indexOf(row);
    let next = null;
    if (event.key === "ArrowDown") next = list[index + 1];
    else if (event.key === "ArrowUp") next = list[index - 1];
    else if (event.key === "Home") next = list[0];
    else if (event.key === "End") next = list[list.length - 1];
    else if (event.key === "Enter") {
      event.preventDefault();
      openCall(row);
      return;
    } else if (event.key === " ") {
      event.preventDefault();
      const box = $("input[name=ids]", row);
      if (box && !box.disabled) box.checked = !box.checked;
      return;
    } else return;
    event.preventDefault();
    if (next) select(next);
  });

  $("#cc-check-all").addEventListener("change", (event) => {
    for (const box of $$("#cc-rows input[name=ids]")) if (!box.disabled) box.checked = event.target.checked;
  });

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, select, textarea, dialog");
    if (event.key === "/" && !typing) {
      event.preventDefault();
      $("#cc-q").focus();
    }
  });

  // ---- keypad and call controls (S-4.10 - S-4.13) -----------------------------------------------------------------

  const number = $("#cc-number");

  function insertAtCursor(text) {
    const start = number.selectionStart ?? number.value.length;
    const end = number.selectionEnd ?? number.value.length;
    number.value = number.value.slice(0, start) + text + number.value.slice(end);
    number.setSelectionRange(start + text.length, start + text.length);
  }

  for (const key of $$(".keypad .key")) {
    key.addEventListener("click", () => {
      number.focus();
      insertAtCursor(key.dataset.key);
      updateButtons();
    });
  }
  $("#cc-back").addEventListener("click", () => {
    // Back: one character to the left of the cursor (the last one when the field is not focused).
    const focused = document.activeElement === number;
    let start = focused ? number.selectionStart : number.value.length;
    let end = focused ? number.selectionEnd : number.value.length;
    if (start === end && start > 0) start -= 1;
    number.value = number.value.slice(0, start) + number.value.slice(end);
    number.focus();
    number.setSelectionRange(start, start);
    updateButtons();
  });
  $("#cc-delete").addEventListener("click", () => {
    number.value = "";
    number.focus();
    updateButtons();
  });
  number.addEventListener("input", updateButtons);

  function phoneStatus() {
    const data = $("#cc-status-data");
    const flag = (name) => !!data && data.dataset[name] === "1";
    return {
      loggedIn: flag("loggedIn"),
      ringing: flag("ringing"),
      inCall: flag("inCall"),
      answered: flag("callAnswered"),
      lastDialled: flag("lastDialled"),
    };
  }

  function updateButtons() {
    const status = phoneStatus();
    const hasNumber = number.value.trim() !== "";
    const details = $("#cc-details-data");
    const selected = !!selectedId && !!details && details.dataset.call === selectedId;
    $("#cc-call").disabled = !(status.loggedIn && hasNumber);
    $("#cc-redial").disabled = !(status.loggedIn && (hasNumber || status.lastDialled));
    $("#cc-answer").disabled = !(status.loggedIn && status.ringing);
    $("#cc-hangup").disabled = !(status.loggedIn && status.inCall);
    $("#cc-transfer").disabled = !(status.loggedIn && status.inCall && status.answered);
    $("#cc-link").disabled = !(selected && details.dataset.hasContact === "0");
    $("#cc-activity").disabled = !(selected && details.dataset.hasActivity === "0");
    const answer = $("#cc-answer");
    answer.classList.toggle("ringing", status.ringing);
  }

  $("#cc-link").addEventListener("click", () => {
    if (selectedId) load("GET", urlFor(config.urls.link, selectedId), dialogBody);
  });
  $("#cc-activity").addEventListener("click", () => {
    if (selectedId) load("GET", urlFor(config.urls.activity_dialog, selectedId), dialogBody);
  });

  // ---- dialogs (Link to contact, Create activity) -----------------------------------------------------------------

  const dialog = $("#cc-dialog");
  const dialogBody = $("#cc-dialog-body");

  function openDialog() {
    if (!dialog.open) dialog.showModal();
    const focus = $("[autofocus]", dialogBody) || $("input, select, button", dialogBody);
    if (focus) focus.focus();
  }
  function closeDialog() {
    // Emptied at once (the close event comes later), so a swap that follows cannot reopen it.
    dialogBody.replaceChildren();
    if (dialog.open) dialog.close();
  }
  dialog.addEventListener("close", () => dialogBody.replaceChildren());
  dialog.addEventListener("click", (event) => {
    if (event.target.closest("[data-close-dialog]") || event.target === dialog) closeDialog();
  });
  // Asked by a post's answer: closed once htmx has finished with it (its message is swapped in relative to the form
  // that posted, which must still be in the page).
  body.addEventListener("cc-dialog-close", () => setTimeout(closeDialog, 0));
  body.addEventListener("cc-dialog-open", openDialog);

  body.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    if (target === dialogBody && dialogBody.childElementCount) openDialog();
    if (target.id === "cc-rows" || (target.closest && target.closest("#cc-rows")) || target.matches?.("tr.call")) {
      $$("#cc-rows tr.empty").forEach((row) => rows().length && row.remove());
      markSelection();
    }
    if (target.id === "cc-details" || target.id === "cc-status") updateButtons();
    if (target.id === "cc-flash" || event.detail.elt?.id === "cc-flash") scheduleFlashFade();
  });
  body.addEventListener("htmx:oobAfterSwap", scheduleFlashFade);
  body.addEventListener("htmx:afterRequest", (event) => {
    const element = event.detail.elt;
    if (element && element.classList && element.classList.contains("pending") && element.isConnected) {
      element.remove(); // no row came back: the call is outside the filters, or not this user's
    }
  });

  // ---- refreshing parts -------------------------------------------------------------------------------------------

  function filterParams() {
    return new URLSearchParams(new FormData($("#cc-filters"))).toString();
  }

  function refreshList() {
    htmx.trigger("#cc-filters", "submit");
  }

  let statusTimer = null;
  function refreshStatus() {
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => load("GET", config.urls.status, "#cc-status"), 120);
  }

  const callTimers = new Map();
  function refreshCall(id) {
    // A burst of pushes for one call (its events arrive together) makes one request.
    clearTimeout(callTimers.get(id));
    callTimers.set(id, setTimeout(() => {
      callTimers.delete(id);
      let row = document.getElementById("call-" + id);
      if (!row) {
        // A new call: a hidden placeholder at the top takes its row (or is removed when it is filtered out, 204).
        row = el("tr", "call pending");
        row.id = "call-" + id;
        row.hidden = true;
        $("#cc-rows").prepend(row);
      }
      load("GET", urlFor(config.urls.row, id) + "?" + filterParams(), row, "outerHTML");
      if (String(id) === selectedId) loadDetails();
    }, 100));
  }

  function removeCalls(ids) {
    for (const id of ids) {
      const row = document.getElementById("call-" + id);
      if (row) row.remove();
      if (String(id) === selectedId) clearSelection();
    }
  }

  body.addEventListener("cc-call-changed", (event) => refreshCall(String(event.detail.id)));
  body.addEventListener("cc-refresh-list", refreshList);
  body.addEventListener("cc-open-activity", (event) => openActivity(event.detail.url));
  body.addEventListener("cc-status-changed", refreshStatus);

  // ---- notifications (S-4.19, S-3.5, S-3.10) ----------------------------------------------------------------------

  const popped = new Set();
  const legPops = new Map(); // "pbx call id|extension" -> the pop shown from leg.ringing (no row yet, S-3.7)

  function legKey(message) {
    return String(message.pbx_call_id) + "|" + String(message.extension);
  }

  function pop(message) {
    const leg = message.type === "leg.ringing";
    const key = leg ? "leg:" + legKey(message) : message.call_id;
    if (popped.has(key)) return;
    popped.add(key);
    const box = el("div", "pop");
    if (leg) legPops.set(legKey(message), box);
    box.setAttribute("role", "alert");
    const head = el("div", "pop-head");
    head.appendChild(el("span", "pop-title", message.incoming ? S.incoming_call : S.outgoing_call));
    const close = el("button", "pop-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", S.close);
    close.addEventListener("click", () => box.remove());
    head.appendChild(close);
    box.appendChild(head);
    box.appendChild(el("div", "pop-number", message.number || S.unknown_caller));
    const who = message.contact || message.caller_name;
    box.appendChild(el("div", "pop-contact" + (message.contact ? "" : " muted"), who || S.unknown_caller));
    const actions = el("div", "pop-actions");
    if (message.state === "ringing") {
      const answer = el("button", "answer", S.answer);
      answer.type = "button";
      answer.addEventListener("click", () => {
        // A leg has no row: the server answers whatever rings on this phone (the phone state from its legs).
        const row = leg ? null : document.getElementById("call-" + message.call_id);
        if (row) select(row, { focus: false });
        else if (!leg) $("#cc-selected-call").value = String(message.call_id);
        htmx.ajax("POST", config.urls.answer, { source: "#cc-answer", target: "#cc-answer", swap: "none" });
        box.remove();
      });
      actions.appendChild(answer);
    }
    if (message.activity_id) {
      const open = el("button", "open", S.open_activity);
      open.type = "button";
      open.addEventListener("click", () => openActivity(urlFor(config.urls.activity, message.activity_id)));
      actions.appendChild(open);
    }
    if (!leg) {
      const show = el("button", "", S.show);
      show.type = "button";
      show.addEventListener("click", () => {
        const row = document.getElementById("call-" + message.call_id);
        if (row) select(row);
        box.remove();
      });
      actions.appendChild(show);
    }
    box.appendChild(actions);
    placePops();
    $("#cc-pops").prepend(box);
    setTimeout(() => box.remove(), Math.max(1, config.notify_seconds) * 1000);
  }

  function placePops() {
    // Just below the filters bar while it is in view (its height depends on the language and the width).
    const top = $(".cc-top");
    const bottom = top ? top.getBoundingClientRect().bottom : 0;
    $("#cc-pops").style.top = Math.max(8, Math.round(bottom) + 8) + "px";
  }

  function unpopLeg(message) {
    const box = legPops.get(legKey(message));
    legPops.delete(legKey(message));
    if (box) box.remove();
  }

  function desktopNotification(message) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const title = message.incoming ? S.incoming_call : S.outgoing_call;
    const text = [message.number || S.unknown_caller, message.contact || message.caller_name || ""].join("\n").trim();
    const tag = message.type === "leg.ringing" ? "leg-" + legKey(message) : "call-" + message.call_id;
    const notice = new Notification(title, { body: text, tag: tag });
    notice.onclick = () => {
      window.focus();
      const row = message.call_id ? document.getElementById("call-" + message.call_id) : null;
      if (row) select(row);
      notice.close();
    };
    setTimeout(() => notice.close(), Math.max(1, config.notify_seconds) * 1000);
  }

  function onNewCall(message) {
    if (config.auto_show) {
      // S-3.5: bring the screen forward; a hidden tab cannot raise itself, so the system notification does it.
      try { window.focus(); } catch (error) { /* not allowed: the notification below stands in */ }
      if (document.hidden) desktopNotification(message);
    }
    // A row that follows a leg already popped (S-3.7, answered here) does not pop again.
    const poppedAsLeg = message.type === "call.changed" && message.pbx_call_id && popped.has("leg:" + legKey(message));
    if (message.incoming && config.notify && !poppedAsLeg) pop(message);
    if (message.incoming && config.auto_open && message.activity_id) {
      openActivity(urlFor(config.urls.activity, message.activity_id)); // S-3.10
    }
  }

  const notifySetup = $("#cc-notify-setup");
  if ((config.auto_show || config.notify) && "Notification" in window && Notification.permission === "default") {
    notifySetup.hidden = false;
    $("#cc-notify-enable").addEventListener("click", () => {
      // Asked from a click: browsers refuse a permission prompt that no gesture started.
      Notification.requestPermission().then((answer) => {
        notifySetup.hidden = true;
        flash(answer === "granted" ? S.notifications_on : S.notifications_blocked, answer === "granted" ? "success" : "warning");
      });
    });
  }

  // ---- the live channel -------------------------------------------------------------------------------------------

  const liveBadge = $("#cc-live");
  let socket = null;
  let attempts = 0;
  let everOpen = false;
  let pingTimer = null;

  function setLive(state) {
    liveBadge.dataset.state = state;
    liveBadge.textContent = state === "live" ? S.live : state === "down" ? S.reconnecting : "";
  }

  function handle(message) {
    switch (message.type) {
      case "call.changed":
        refreshCall(String(message.call_id));
        if (config.resource_id !== null && message.resource_id === config.resource_id) {
          refreshStatus();
          if (message.new) onNewCall(message);
        }
        break;
      case "leg.ringing":
        // S-3.7 create when answered: no row until someone answers, but this phone rings: pop from the leg.
        if (config.resource_id !== null && message.resource_id === config.resource_id) {
          refreshStatus();
          onNewCall(message);
        }
        break;
      case "leg.ended":
        if (config.resource_id !== null && message.resource_id === config.resource_id) {
          unpopLeg(message);
          refreshStatus();
        }
        break;
      case "calls.cleared":
        removeCalls((message.call_ids || []).map(String));
        break;
      case "agent.changed":
      case "bridge.changed":
        refreshStatus();
        break;
      default:
        break;
    }
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + config.ws);
    socket.addEventListener("open", () => {
      if (everOpen) {
        // Pushes were missed while the socket was down: read everything again.
        refreshList();
        refreshStatus();
      }
      everOpen = true;
      attempts = 0;
      setLive("live");
      clearInterval(pingTimer);
      pingTimer = setInterval(() => socket.readyState === WebSocket.OPEN && socket.send('{"type":"ping"}'), 25000);
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (error) { return; }
      if (message && typeof message === "object") handle(message);
    });
    socket.addEventListener("close", () => {
      clearInterval(pingTimer);
      setLive("down");
      // Refused (1006) may mean the session ended: the status page then redirects to the login.
      fetch(config.urls.status, { redirect: "manual", credentials: "same-origin" }).then((response) => {
        if (response.type === "opaqueredirect") window.location.reload();
      }).catch(() => {});
      const delay = Math.min(30000, 1000 * 2 ** attempts) * (0.5 + Math.random() / 2);
      attempts += 1;
      setTimeout(connect, delay);
    });
  }

  // ---- live duration (S-4.4: h:mm:ss counting while the call is up) -----------------------------------------------

  function hms(seconds) {
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    return h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
  }

  setInterval(() => {
    const now = (Date.now() + clockOffset) / 1000;
    for (const cell of $$(".duration[data-answered]")) {
      cell.textContent = hms(Math.max(0, Math.floor(now - Number(cell.dataset.answered))));
    }
  }, 1000);

  markSelection();
  updateButtons();
  scheduleFlashFade();
  setLive("connecting");
  connect();
})();

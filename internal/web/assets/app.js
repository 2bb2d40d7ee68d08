// zapbus dashboard: vanilla JS, no build step. The mentorado token lives in
// sessionStorage; the live stream uses short-lived tickets
// (POST /v1/stream-tickets) because EventSource cannot send headers. Words
// and formats come from I18N (i18n.js): nothing here is user-visible text.
"use strict";

const $ = (id) => document.getElementById(id);
const t = (key, params) => I18N.t(key, params);
const TOKEN_KEY = "zapbus.token";
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "", phone: "", name: "", lastEventId: "", es: null, qrURL: "", retry: null,
  convTimer: null, convTimer2: null, recent: new Map(),
  st: null, // last connection status shown
  convs: [], // conversations as listed, re-rendered when the language changes
  thread: new Map(), // messages of the open thread by id
  errors: {}, // element id → API error shown there, re-translated with the page
};

// APIError keeps the stable code of the API's error body: the dashboard
// shows its own text for it (I18N.error), not the English message.
class APIError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    const err = new APIError(0, "", String(e));
    err.network = true;
    throw err;
  }
  const ct = res.headers.get("Content-Type") || "";
  if (!res.ok) {
    let code = "", message = res.status + " " + res.statusText;
    if (ct.startsWith("application/json")) {
      try {
        const e = await res.json();
        if (e.error) { code = e.error.code || ""; message = e.error.message || message; }
      } catch (e) { /* not the error shape */ }
    }
    const err = new APIError(res.status, code, message, Number(res.headers.get("Retry-After")) || 0);
    if (res.status === 401) {
      signOut(err);
      err.handled = true;
    }
    throw err;
  }
  return ct.startsWith("application/json") ? res.json() : res.blob();
}

// showError puts the translated text of err (or nothing) in an error line,
// and remembers err so a language switch translates it again.
function showError(id, err) {
  if (err && err.handled && id !== "signin-error") return;
  state.errors[id] = err || null;
  $(id).textContent = err ? I18N.error(err) : "";
}

// ---- session -------------------------------------------------------------

function showApp(on) {
  $("signin").hidden = on;
  $("app").hidden = !on;
  $("sign-out").hidden = !on;
}

async function signIn(token) {
  state.token = token.trim();
  showError("signin-error", null);
  try {
    const st = await api("GET", "/v1/whatsapp/status");
    sessionStorage.setItem(TOKEN_KEY, state.token);
    showApp(true);
    setStatus(st);
    loadConversations();
    openStream();
  } catch (e) {
    if (!e.handled) showError("signin-error", e);
  }
}

function signOut(err) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  if (state.es) state.es.close();
  state.es = null;
  clearTimeout(state.retry);
  showApp(false);
  showError("signin-error", err || null);
}

// ---- connection card -----------------------------------------------------

// Which actions make sense in which state (docs/events.md, connection):
// connect starts a stopped session, disconnect stops a running one, log out
// unpairs a paired device.
const CONNECTABLE = ["disconnected", "logged_out", "conflict"];
const RUNNING = ["connecting", "qr", "pairing", "connected", "backoff"];

// setStatus shows a status from a command reply or a connection event. An
// older status than the one shown is ignored: a command's reply can arrive
// after the stream already told what happened next.
function setStatus(st) {
  const since = sinceOf(st.since);
  if (state.st && since && state.st.since && since < new Date(state.st.since)) return;
  const prev = state.st;
  state.st = { status: st.status, phone: st.phone || "", jid: st.jid || "", since: since ? st.since : "", pairing_code: st.pairing_code || "" };
  if (prev && prev.pairing_code && !state.st.pairing_code && st.status === "pairing") state.st.pairing_code = prev.pairing_code;
  renderStatus();
  if (st.status === "qr" && (!prev || prev.status !== "qr" || !state.qrURL)) refreshQR();
}

// sinceOf is the time of a status, or null for none (a session that never
// ran reports the zero time).
function sinceOf(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !isNaN(d) && d.getFullYear() > 2000 ? d : null;
}

function renderStatus() {
  const st = state.st;
  if (!st) return;
  const s = st.status;
  const badge = $("status-badge");
  badge.textContent = t("status." + s) === "status." + s ? s : t("status." + s);
  badge.dataset.status = s;
  const parts = [];
  if (st.phone) parts.push(I18N.phone(st.phone));
  if (st.since) parts.push(t("conn.since", { when: I18N.when(st.since, true) }));
  $("status-detail").textContent = parts.join(" · ");
  $("status-detail").title = st.since ? I18N.full(st.since) : "";
  // The QR is only for the qr state: once paired (or stopped) it is gone,
  // even if a fetch of it is still on its way.
  if (s !== "qr") hideQR();
  const hint = "hint." + s;
  $("qr-hint").textContent = t(hint) === hint ? "" : t(hint);
  $("qr-hint").hidden = s === "qr" && !!state.qrURL;
  const paired = !!(st.jid || st.phone) && s !== "logged_out";
  $("connect").hidden = !CONNECTABLE.includes(s);
  $("disconnect").hidden = !RUNNING.includes(s);
  $("logout").hidden = !paired;
  $("pairing").hidden = !CONNECTABLE.includes(s);
  if (s === "pairing" && st.pairing_code) showPairingCode(st.pairing_code);
  else $("pairing-code").hidden = true;
}

function hideQR() {
  $("qr").hidden = true;
  $("qr").removeAttribute("src");
  if (state.qrURL) URL.revokeObjectURL(state.qrURL);
  state.qrURL = "";
  $("qr-hint").hidden = false;
}

async function refreshQR() {
  let blob;
  try {
    blob = await api("GET", "/v1/whatsapp/qr.png");
  } catch (e) {
    if (e.status === 404) hideQR();
    return;
  }
  // The session may have left the qr state while the image was loading.
  if (!state.st || state.st.status !== "qr") return;
  const url = URL.createObjectURL(blob);
  if (state.qrURL) URL.revokeObjectURL(state.qrURL);
  state.qrURL = url;
  $("qr").src = url;
  $("qr").hidden = false;
  $("qr-hint").hidden = true;
}

function showPairingCode(code) {
  $("pairing-code").textContent = code;
  $("pairing-code").hidden = false;
}

async function command(path, body) {
  showError("connection-error", null);
  try {
    setStatus(await api("POST", path, body));
  } catch (e) {
    showError("connection-error", e);
  }
}

// ---- conversations and thread ---------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function loadConversations() {
  let data;
  try {
    data = await api("GET", "/v1/conversations?limit=100");
  } catch (e) {
    return;
  }
  state.convs = data.conversations;
  renderConversations();
}

function renderConversations() {
  $("conversations").replaceChildren(...state.convs.map(conversationItem));
  $("conversations-empty").hidden = state.convs.length > 0;
}

function conversationItem(c) {
  const li = el("li");
  li.dataset.phone = c.phone;
  li.dataset.testid = "conversation";
  li.dataset.name = c.name || "";
  li.dataset.unread = String(c.unread || 0);
  const b = el("button", "conv");
  b.type = "button";
  if (c.phone === state.phone) b.setAttribute("aria-current", "true");
  b.append(el("span", "name", c.name || I18N.phone(c.phone)));
  const at = c.last_at || (c.last_message && c.last_message.sent_at);
  if (at) {
    const time = el("time", "when", I18N.when(at, false));
    time.dateTime = at;
    time.title = I18N.full(at);
    b.append(time);
  }
  const lm = c.last_message || {};
  const text = lm.text || t("kind." + (lm.kind || "other"));
  b.append(el("span", "preview", lm.direction === "out" ? t("chat.you", { text }) : text));
  if (c.unread > 0) {
    const u = el("span", "unread", I18N.number(c.unread));
    u.setAttribute("aria-label", t("chat.unread", { count: I18N.number(c.unread) }));
    b.append(u);
  }
  b.addEventListener("click", () => openThread(c.phone, li.dataset.name));
  li.append(b);
  return li;
}

// upsertConversation moves a conversation to the top from a live message
// event, so the list is live even before the persister has stored the row;
// loadConversations reconciles with the database afterwards.
function upsertConversation(d) {
  if (!d.phone || ["edit", "revoke", "reaction"].includes(d.kind)) return;
  const old = state.convs.find((c) => c.phone === d.phone);
  const unread = (old ? Number(old.unread || 0) : 0) + (d.direction === "in" && d.phone !== state.phone ? 1 : 0);
  const name = (old && old.name) || d.push_name || "";
  const c = { phone: d.phone, name, unread, last_at: d.timestamp, last_message: { direction: d.direction, text: d.text || d.caption, kind: d.kind } };
  state.convs = [c, ...state.convs.filter((x) => x.phone !== d.phone)];
  renderConversations();
}

// scheduleConversations reloads the list shortly after live events, and
// once more a little later in case the persister had not caught up yet.
function scheduleConversations() {
  clearTimeout(state.convTimer);
  clearTimeout(state.convTimer2);
  state.convTimer = setTimeout(loadConversations, 300);
  state.convTimer2 = setTimeout(loadConversations, 2000);
}

function messageText(m) {
  if (m.revoked) return t("msg.deleted");
  const text = m.text || m.caption || t("kind." + (m.kind || "other"));
  return m.edited ? t("msg.edited", { text }) : text;
}

function messageItem(m) {
  const li = el("li", m.direction === "out" ? "out" : "in", messageText(m));
  li.dataset.id = m.id;
  const meta = el("span", "meta");
  const time = el("time", "", I18N.when(m.sent_at, true));
  time.dateTime = m.sent_at;
  time.title = I18N.full(m.sent_at);
  meta.append(time);
  if (m.direction === "out" && m.status) meta.append(" · " + t("msgstatus." + m.status));
  li.append(meta);
  return li;
}

function threadTitle() {
  if (!state.phone) return t("chat.pick");
  const phone = I18N.phone(state.phone);
  return state.name ? t("chat.titleNamed", { name: state.name, phone }) : phone;
}

function renderThread() {
  const ol = $("thread");
  const msgs = [...state.thread.values()].sort((a, b) => new Date(a.sent_at) - new Date(b.sent_at));
  // A whole new thread is not news for screen readers: only what arrives
  // after it (addToThread) is announced.
  ol.setAttribute("aria-busy", "true");
  ol.replaceChildren(...msgs.map(messageItem));
  ol.removeAttribute("aria-busy");
  ol.scrollTop = ol.scrollHeight;
}

async function openThread(phone, name) {
  state.phone = phone;
  state.name = name || "";
  state.thread = new Map();
  $("thread-title").textContent = threadTitle();
  $("thread-title").classList.remove("muted");
  $("send-text").disabled = false;
  $("send-button").disabled = false;
  showError("send-error", null);
  for (const b of $("conversations").querySelectorAll("button.conv")) {
    if (b.parentElement.dataset.phone === phone) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
  renderThread();
  let data;
  try {
    data = await api("GET", "/v1/conversations/" + encodeURIComponent(phone) + "/messages?limit=100");
  } catch (e) {
    showError("send-error", e);
    return;
  }
  if (state.phone !== phone) return;
  // Messages seen live may not be stored yet: show them too.
  const byId = new Map(data.messages.map((m) => [m.id, m]));
  for (const m of (state.recent.get(phone) || new Map()).values()) if (!byId.has(m.id)) byId.set(m.id, m);
  for (const m of state.thread.values()) if (!byId.has(m.id)) byId.set(m.id, m);
  state.thread = byId;
  renderThread();
}

// remember keeps the last live messages per phone (bounded), for threads
// opened before the persister stored them.
function remember(m) {
  if (!m.phone) return;
  if (!state.recent.has(m.phone)) state.recent.set(m.phone, new Map());
  const msgs = state.recent.get(m.phone);
  msgs.set(m.id, m);
  if (msgs.size > 50) msgs.delete(msgs.keys().next().value);
}

function replaceInThread(m) {
  const li = $("thread").querySelector('li[data-id="' + CSS.escape(m.id) + '"]');
  if (li) li.replaceWith(messageItem(m));
}

// applyToTarget shows an edit or revoke on the message it applies to (the
// live copy and the stored one may be different objects).
function applyToTarget(d) {
  const targets = new Set();
  for (const msgs of state.recent.values()) if (msgs.has(d.target_id)) targets.add(msgs.get(d.target_id));
  if (state.thread.has(d.target_id)) targets.add(state.thread.get(d.target_id));
  for (const m of targets) {
    if (d.kind === "edit") { m.text = d.text; m.edited = true; } else { m.revoked = true; }
  }
  if (state.thread.has(d.target_id)) replaceInThread(state.thread.get(d.target_id));
}

function addToThread(m) {
  remember(m);
  if (!state.phone || m.phone !== state.phone) return;
  const ol = $("thread");
  const existing = ol.querySelector('li[data-id="' + CSS.escape(m.id) + '"]');
  state.thread.set(m.id, m);
  const li = messageItem(m);
  if (existing) existing.replaceWith(li);
  else ol.append(li);
  ol.scrollTop = ol.scrollHeight;
}

async function send(ev) {
  ev.preventDefault();
  const text = $("send-text").value;
  if (!state.phone || !text.trim()) return;
  showError("send-error", null);
  $("send-button").disabled = true;
  try {
    const m = await api("POST", "/v1/messages", { phone: state.phone, text, client_id: crypto.randomUUID() });
    $("send-text").value = "";
    if (m.phone && m.phone !== state.phone) {
      // A new chat typed by hand: adopt the normalised number.
      state.phone = m.phone;
      $("thread-title").textContent = threadTitle();
    }
    addToThread(m);
    scheduleConversations();
  } catch (e) {
    showError("send-error", e);
  } finally {
    $("send-button").disabled = false;
  }
}

// ---- live stream ----------------------------------------------------------

async function openStream() {
  if (!state.token) return;
  let ticket;
  try {
    ticket = (await api("POST", "/v1/stream-tickets")).ticket;
  } catch (e) {
    if (!e.handled) state.retry = setTimeout(openStream, 3000);
    return;
  }
  let url = "/v1/events?ticket=" + encodeURIComponent(ticket);
  if (state.lastEventId) url += "&last_event_id=" + encodeURIComponent(state.lastEventId);
  const es = new EventSource(url);
  state.es = es;
  const track = (ev) => { if (ev.lastEventId) state.lastEventId = ev.lastEventId; };
  es.addEventListener("connection", (ev) => {
    track(ev);
    const env = JSON.parse(ev.data);
    setStatus({ status: env.data.status, phone: env.data.phone, jid: env.data.jid, since: env.occurred_at });
  });
  es.addEventListener("qr", (ev) => {
    const env = JSON.parse(ev.data);
    if (env.data.pairing_code) {
      if (state.st) state.st.pairing_code = env.data.pairing_code;
      showPairingCode(env.data.pairing_code);
    } else if (state.st && state.st.status === "qr") {
      // A new code while waiting for a scan; before the qr status arrives,
      // setStatus fetches it.
      refreshQR();
    }
  });
  es.addEventListener("message", (ev) => {
    track(ev);
    const env = JSON.parse(ev.data);
    const d = env.data;
    if (d.kind === "edit" || d.kind === "revoke") {
      applyToTarget(d);
    } else if (d.kind !== "reaction") {
      addToThread({ id: d.wa_id, phone: d.phone, direction: d.direction, kind: d.kind, text: d.text, caption: d.caption, status: d.status, sent_at: d.timestamp });
      upsertConversation(d);
    }
    scheduleConversations();
  });
  es.addEventListener("receipt", (ev) => {
    track(ev);
    const d = JSON.parse(ev.data).data;
    for (const id of d.message_ids) {
      const m = state.thread.get(id);
      if (m && m.direction === "out") {
        m.status = d.kind;
        replaceInThread(m);
      }
    }
    scheduleConversations();
  });
  es.addEventListener("contact", (ev) => { track(ev); scheduleConversations(); });
  es.onerror = () => {
    // Tickets are short-lived: reopen with a fresh one, resuming after the
    // last event seen.
    es.close();
    if (state.es === es) state.es = null;
    clearTimeout(state.retry);
    state.retry = setTimeout(openStream, 2000);
  };
}

// ---- language -------------------------------------------------------------

// relabel re-renders what script wrote, in the language just chosen.
function relabel() {
  $("lang").value = I18N.lang;
  renderStatus();
  renderConversations();
  if (state.phone) {
    $("thread-title").textContent = threadTitle();
    renderThread();
  }
  for (const [id, err] of Object.entries(state.errors)) if (err) $(id).textContent = I18N.error(err);
}

// ---- wiring ---------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  try {
    await I18N.ready;
  } catch (e) {
    console.error(e); // the page still works, showing keys
  }
  I18N.onChange(relabel);
  relabel();
  document.documentElement.dataset.ready = "true";
  $("lang").addEventListener("change", () => I18N.setLang($("lang").value, true));
  $("signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("token-input").value); });
  $("sign-out").addEventListener("click", () => signOut());
  $("connect").addEventListener("click", () => command("/v1/whatsapp/connect", { method: "qr" }));
  $("disconnect").addEventListener("click", () => command("/v1/whatsapp/disconnect"));
  $("logout").addEventListener("click", () => $("logout-dialog").showModal());
  $("logout-dialog").addEventListener("close", () => {
    if ($("logout-dialog").returnValue === "confirm") command("/v1/whatsapp/logout");
  });
  $("pair-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    command("/v1/whatsapp/connect", { method: "phone", phone: $("pair-phone").value });
  });
  $("new-chat").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const typed = $("new-phone").value.trim();
    let p = typed.replace(/\D/g, "");
    if (!p) return;
    // Like the API, a number without a country code is Brazilian: DDD and
    // 8 or 9 digits.
    if (!typed.startsWith("+") && (p.length === 10 || p.length === 11)) p = "55" + p;
    $("new-phone").value = "";
    openThread(p, "");
    $("send-text").focus();
  });
  $("send-form").addEventListener("submit", send);
  $("send-text").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) send(ev);
  });
  if (state.token) signIn(state.token);
  else showApp(false);
});

// zapbus dashboard: vanilla JS, no build step. The mentorado token lives in
// sessionStorage; the live stream uses short-lived tickets
// (POST /v1/stream-tickets) because EventSource cannot send headers.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "zapbus.token";
const state = { token: sessionStorage.getItem(TOKEN_KEY) || "", phone: "", lastEventId: "", es: null, qrURL: "", retry: null, convTimer: null, convTimer2: null, recent: new Map() };

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    signOut("Token rejected — sign in again.");
    throw new Error("unauthorized");
  }
  const ct = res.headers.get("Content-Type") || "";
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    if (ct.startsWith("application/json")) {
      const e = await res.json();
      if (e.error) msg = e.error.message || e.error.code;
    }
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return ct.startsWith("application/json") ? res.json() : res.blob();
}

// ---- session -------------------------------------------------------------

function showApp(on) {
  $("signin").hidden = on;
  $("app").hidden = !on;
  $("sign-out").hidden = !on;
}

async function signIn(token) {
  state.token = token.trim();
  try {
    const st = await api("GET", "/v1/whatsapp/status");
    sessionStorage.setItem(TOKEN_KEY, state.token);
    showApp(true);
    setStatus(st);
    loadConversations();
    openStream();
  } catch (e) {
    if (e.message !== "unauthorized") $("signin-error").textContent = e.message;
  }
}

function signOut(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  if (state.es) state.es.close();
  state.es = null;
  clearTimeout(state.retry);
  showApp(false);
  $("signin-error").textContent = msg || "";
}

// ---- connection card -----------------------------------------------------

function setStatus(st) {
  const badge = $("status-badge");
  badge.textContent = st.status.replace("_", " ");
  badge.dataset.status = st.status;
  const parts = [];
  if (st.phone) parts.push("+" + st.phone);
  if (st.since) parts.push("since " + new Date(st.since).toLocaleString());
  if (st.reason) parts.push(st.reason);
  $("status-detail").textContent = parts.join(" · ");
  if (st.status !== "qr") hideQR();
  $("qr-hint").textContent = st.status === "connected"
    ? "Connected. Log out to unpair this device."
    : "Press Connect to show a QR code, then scan it in WhatsApp → Linked devices.";
  if (st.status !== "pairing" && st.status !== "qr") $("pairing-code").hidden = true;
  if (st.pairing_code) showPairingCode(st.pairing_code);
}

function hideQR() {
  $("qr").hidden = true;
  $("qr").removeAttribute("src");
  if (state.qrURL) URL.revokeObjectURL(state.qrURL);
  state.qrURL = "";
  $("qr-hint").hidden = false;
}

async function refreshQR() {
  try {
    const blob = await api("GET", "/v1/whatsapp/qr.png");
    const url = URL.createObjectURL(blob);
    if (state.qrURL) URL.revokeObjectURL(state.qrURL);
    state.qrURL = url;
    $("qr").src = url;
    $("qr").hidden = false;
    $("qr-hint").hidden = true;
  } catch (e) {
    if (e.status === 404) hideQR();
  }
}

function showPairingCode(code) {
  $("pairing-code").textContent = code;
  $("pairing-code").hidden = false;
}

async function command(path, body) {
  $("connection-error").textContent = "";
  try {
    setStatus(await api("POST", path, body));
  } catch (e) {
    if (e.message !== "unauthorized") $("connection-error").textContent = e.message;
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
  $("conversations").replaceChildren(...data.conversations.map(conversationItem));
}

function conversationItem(c) {
  const li = el("li");
  li.dataset.phone = c.phone;
  li.dataset.testid = "conversation";
  li.dataset.name = c.name || "";
  li.dataset.unread = String(c.unread || 0);
  li.setAttribute("aria-selected", String(c.phone === state.phone));
  li.append(el("span", "name", c.name || "+" + c.phone));
  if (c.unread > 0) li.append(el("span", "unread", String(c.unread)));
  li.append(el("span", "preview", (c.last_message.direction === "out" ? "You: " : "") + (c.last_message.text || c.last_message.kind)));
  li.addEventListener("click", () => openThread(c.phone, li.dataset.name));
  return li;
}

// upsertConversation moves a conversation to the top from a live message
// event, so the list is live even before the persister has stored the row;
// loadConversations reconciles with the database afterwards.
function upsertConversation(d) {
  if (!d.phone || ["edit", "revoke", "reaction"].includes(d.kind)) return;
  const ul = $("conversations");
  const old = ul.querySelector('li[data-phone="' + CSS.escape(d.phone) + '"]');
  const unread = (old ? Number(old.dataset.unread) : 0) + (d.direction === "in" && d.phone !== state.phone ? 1 : 0);
  const name = (old && old.dataset.name) || d.push_name || "";
  const li = conversationItem({ phone: d.phone, name, unread, last_message: { direction: d.direction, text: d.text || d.caption, kind: d.kind } });
  if (old) old.remove();
  ul.prepend(li);
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
  if (m.revoked) return "🚫 message deleted";
  return (m.text || m.caption || "[" + m.kind + "]") + (m.edited ? " (edited)" : "");
}

function messageItem(m) {
  const li = el("li", m.direction === "out" ? "out" : "in", messageText(m));
  li.dataset.id = m.id;
  li.append(el("span", "meta", new Date(m.sent_at).toLocaleTimeString() + (m.direction === "out" ? " · " + m.status : "")));
  return li;
}

async function openThread(phone, name) {
  state.phone = phone;
  $("thread-title").textContent = name ? name + " (+" + phone + ")" : "+" + phone;
  $("send-text").disabled = false;
  $("send-button").disabled = false;
  for (const li of $("conversations").children) li.setAttribute("aria-selected", String(li.dataset.phone === phone));
  let data;
  try {
    data = await api("GET", "/v1/conversations/" + encodeURIComponent(phone) + "/messages?limit=100");
  } catch (e) {
    $("send-error").textContent = e.message;
    return;
  }
  if (state.phone !== phone) return;
  // Messages seen live may not be stored yet: show them too.
  const byId = new Map(data.messages.map((m) => [m.id, m]));
  for (const m of (state.recent.get(phone) || new Map()).values()) if (!byId.has(m.id)) byId.set(m.id, m);
  const msgs = [...byId.values()].sort((a, b) => new Date(a.sent_at) - new Date(b.sent_at));
  const ol = $("thread");
  ol.replaceChildren(...msgs.map(messageItem));
  ol.scrollTop = ol.scrollHeight;
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

// applyToTarget shows an edit or revoke on the message it applies to.
function applyToTarget(d) {
  for (const msgs of state.recent.values()) {
    const m = msgs.get(d.target_id);
    if (!m) continue;
    if (d.kind === "edit") { m.text = d.text; m.edited = true; } else { m.revoked = true; }
  }
  const li = $("thread").querySelector('li[data-id="' + CSS.escape(d.target_id) + '"]');
  if (!li) return;
  const meta = li.querySelector(".meta");
  li.firstChild.textContent = d.kind === "edit" ? d.text + " (edited)" : "🚫 message deleted";
  if (meta) li.append(meta);
}

function addToThread(m) {
  remember(m);
  if (!state.phone || m.phone !== state.phone) return;
  const ol = $("thread");
  const existing = ol.querySelector('li[data-id="' + CSS.escape(m.id) + '"]');
  const li = messageItem(m);
  if (existing) existing.replaceWith(li);
  else ol.append(li);
  ol.scrollTop = ol.scrollHeight;
}

async function send(ev) {
  ev.preventDefault();
  const text = $("send-text").value;
  if (!state.phone || !text.trim()) return;
  $("send-error").textContent = "";
  $("send-button").disabled = true;
  try {
    const m = await api("POST", "/v1/messages", { phone: state.phone, text, client_id: crypto.randomUUID() });
    $("send-text").value = "";
    if (m.phone && m.phone !== state.phone) {
      // A new chat typed by hand: adopt the normalised number.
      state.phone = m.phone;
      $("thread-title").textContent = "+" + m.phone;
    }
    addToThread(m);
    scheduleConversations();
  } catch (e) {
    if (e.message !== "unauthorized") $("send-error").textContent = e.message;
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
    state.retry = setTimeout(openStream, 3000);
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
    setStatus({ status: env.data.status, phone: env.data.phone, since: env.occurred_at, reason: env.data.reason });
  });
  es.addEventListener("qr", (ev) => {
    const env = JSON.parse(ev.data);
    if (env.data.pairing_code) showPairingCode(env.data.pairing_code);
    else refreshQR();
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
      const meta = $("thread").querySelector('li[data-id="' + CSS.escape(id) + '"].out .meta');
      if (meta) meta.textContent = meta.textContent.replace(/· \w+$/, "· " + d.kind);
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

// ---- wiring ---------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
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
    const p = $("new-phone").value.replace(/\D/g, "");
    if (p) openThread(p, "");
  });
  $("send-form").addEventListener("submit", send);
  $("send-text").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) send(ev);
  });
  if (state.token) signIn(state.token);
  else showApp(false);
});

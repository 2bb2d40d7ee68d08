// zapbus operator console (/admin): vanilla JS, no build step. The admin
// token lives in sessionStorage; the live stream of every mentorado's
// connection events uses short-lived admin tickets
// (POST /v1/admin/stream-tickets) because EventSource cannot send headers.
// Words and formats come from I18N (i18n.js).
"use strict";

const $ = (id) => document.getElementById(id);
const t = (key, params) => I18N.t(key, params);
const ADMIN_KEY = "zapbus.admin";
const DASHBOARD_TOKEN_KEY = "zapbus.token"; // app.js reads its bearer here
const STATES = ["connected", "pairing", "backoff", "banned", "logged_out", "disconnected", "disabled"];

const state = {
  token: sessionStorage.getItem(ADMIN_KEY) || "",
  rows: new Map(), // id → mentorado as GET /v1/admin/fleet gives it, kept up to date live
  trs: new Map(), // id → its <tr>
  counts: null,
  stream: null,
  es: null, retry: null, reloadTimer: null, searchTimer: null,
  loadSeq: 0,
  deleting: null,
};

class APIError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status; this.code = code; this.retryAfter = retryAfter;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    const err = new APIError(0, "", String(e)); err.network = true; throw err;
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = (data && data.error) || {};
    const err = new APIError(res.status, e.code || "", e.message || res.statusText, Number(res.headers.get("Retry-After")) || 0);
    if (res.status === 401) { signOut(err); err.handled = true; }
    throw err;
  }
  return data;
}

function showError(id, err) { $(id).textContent = err ? I18N.error(err) : ""; }
function notice(text) { $("console-notice").textContent = text || ""; }

// stateOf is the fleet state of a stored status (store.FleetStateOf).
function stateOf(status, disabled) {
  if (disabled) return "disabled";
  switch (status) {
    case "qr": case "pairing": return "pairing";
    case "connecting": case "backoff": return "backoff";
    case "conflict": case "": case undefined: return "disconnected";
  }
  return status;
}

// ---- session ---------------------------------------------------------------

function showConsole(on) {
  $("signin").hidden = on;
  $("console").hidden = !on;
  $("sign-out").hidden = !on;
}

async function signIn(token) {
  state.token = token.trim();
  showError("signin-error", null);
  try {
    await load();
    sessionStorage.setItem(ADMIN_KEY, state.token);
    showConsole(true);
    openStream();
  } catch (e) {
    if (!e.handled) showError("signin-error", e);
  }
}

function signOut(err) {
  sessionStorage.removeItem(ADMIN_KEY);
  state.token = "";
  if (state.es) state.es.close();
  state.es = null;
  clearTimeout(state.retry);
  setLive(false);
  showConsole(false);
  showError("signin-error", err || null);
}

// ---- the fleet -------------------------------------------------------------

function query() {
  const p = new URLSearchParams({ limit: "200" });
  const q = $("search").value.trim();
  if (q) p.set("q", q);
  const s = $("state-filter").value;
  if (s) p.set("status", s);
  return p;
}

// load reads every page of the fleet that the search and filter select
// and renders it; the counts are the whole fleet's.
async function load() {
  const seq = ++state.loadSeq;
  const p = query();
  const rows = [];
  let res;
  for (;;) {
    res = await api("GET", "/v1/admin/fleet?" + p.toString());
    if (seq !== state.loadSeq) return; // a newer load started
    rows.push(...res.mentorados);
    if (!res.next_cursor) break;
    p.set("cursor", res.next_cursor);
  }
  state.counts = res.counts;
  state.stream = res.stream;
  render(rows);
  renderCounts();
  showError("console-error", null);
}

function scheduleReload(ms) {
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(() => load().catch((e) => { if (!e.handled) showError("console-error", e); }), ms);
}

function render(rows) {
  const body = $("fleet-body");
  state.rows = new Map();
  state.trs = new Map();
  const frag = document.createDocumentFragment();
  for (const m of rows) {
    state.rows.set(m.id, m);
    const tr = document.createElement("tr");
    tr.dataset.id = String(m.id);
    state.trs.set(m.id, tr);
    fillRow(tr, m);
    frag.appendChild(tr);
  }
  body.replaceChildren(frag);
  $("fleet-empty").hidden = rows.length > 0;
  renderLag();
}

function cell(tr, cls, text, title) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text !== undefined) td.textContent = text;
  if (title) td.title = title;
  tr.appendChild(td);
  return td;
}

function button(label, cls, action, m) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = label;
  b.dataset.action = action;
  b.addEventListener("click", () => act(action, m.id));
  return b;
}

// fillRow (re)writes one row's cells: a live event touches only its row.
function fillRow(tr, m) {
  tr.replaceChildren();
  tr.dataset.state = m.state;
  tr.dataset.status = m.status;
  const name = cell(tr, "name", m.name, m.name);
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = "#" + m.id;
  name.appendChild(id);

  const st = cell(tr, "status");
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.status = m.state === "disabled" ? "disabled" : m.status;
  badge.dataset.testid = "badge";
  badge.textContent = m.state === "disabled" ? t("console.badge.disabled") : t("status." + m.status);
  st.appendChild(badge);
  if (m.reason && m.state !== "connected") {
    const r = document.createElement("span");
    r.className = "reason";
    r.textContent = m.reason;
    r.title = m.reason;
    st.appendChild(r);
  }

  cell(tr, "phone", m.phone ? I18N.phone(m.phone) : "—");
  const since = m.connected_since
    ? t("console.since.connected", { when: I18N.when(m.connected_since, true) })
    : (m.last_event_at ? t("console.since.lastEvent", { when: I18N.when(m.last_event_at, true) }) : "—");
  cell(tr, "since", since, I18N.full(m.connected_since || m.last_event_at || ""));
  cell(tr, "connector", m.connector || "—");
  cell(tr, "num" + (m.reconnects_24h >= 5 ? " warn" : ""), I18N.number(m.reconnects_24h || 0));
  cell(tr, "num" + (m.bans_24h > 0 ? " warn" : ""), I18N.number(m.bans_24h || 0));
  cell(tr, "num", I18N.number(m.unread || 0));
  cell(tr, "num" + (m.lag > 0 ? " warn" : ""), m.lag === null || m.lag === undefined ? "—" : I18N.number(m.lag),
    m.lag === null || m.lag === undefined ? t("console.lag.unknown") : "");

  const acts = cell(tr, "");
  const box = document.createElement("div");
  box.className = "row-actions";
  box.append(
    button(t("console.action.open"), "secondary", "open", m),
    button(t("console.action.disconnect"), "secondary", "disconnect", m),
    m.disabled ? button(t("console.action.enable"), "secondary", "enable", m) : button(t("console.action.disable"), "secondary", "disable", m),
    button(t("console.action.rotate"), "secondary", "rotate", m),
    button(t("console.action.delete"), "danger", "delete", m),
  );
  acts.appendChild(box);
}

function renderCounts() {
  const c = state.counts || {};
  for (const s of [...STATES, "total"]) $("count-" + s).textContent = I18N.number(c[s] || 0);
}

function renderLag() {
  const s = state.stream;
  const el = $("stream-lag");
  if (!s) { el.textContent = ""; return; }
  if (s.pending === null || s.pending === undefined) {
    el.textContent = t("console.lag.fleetUnknown");
    el.title = s.error || "";
    return;
  }
  el.title = "";
  el.textContent = s.pending === 0
    ? t("console.lag.fleetNone")
    : t("console.lag.fleet", { pending: I18N.number(s.pending), seconds: I18N.number(Math.round(s.oldest_pending_seconds || 0)) });
}

// ---- live ------------------------------------------------------------------

function setLive(on) {
  $("live").dataset.state = on ? "on" : "off";
  $("live").setAttribute("aria-label", on ? t("console.live.on") : t("console.live.off"));
}

async function openStream() {
  if (state.es) state.es.close();
  state.es = null;
  clearTimeout(state.retry);
  let ticket;
  try {
    ticket = (await api("POST", "/v1/admin/stream-tickets")).ticket;
  } catch (e) {
    if (!e.handled) state.retry = setTimeout(openStream, 5000);
    return;
  }
  const es = new EventSource("/v1/admin/events?ticket=" + encodeURIComponent(ticket));
  state.es = es;
  es.onopen = () => {
    setLive(true);
    // Events before the stream opened (or while it was down) are not
    // replayed: read the fleet again now that new ones arrive.
    load().then(() => { document.documentElement.dataset.live = "true"; },
      (e) => { if (!e.handled) showError("console-error", e); });
  };
  es.addEventListener("connection", (ev) => {
    try { onConnection(JSON.parse(ev.data)); } catch (e) { /* not an envelope */ }
  });
  es.onerror = () => {
    setLive(false);
    document.documentElement.dataset.live = "false";
    // The ticket is short-lived: reconnect with a new one.
    es.close();
    if (state.es === es) state.es = null;
    if (state.token) state.retry = setTimeout(openStream, 2000);
  };
}

// onConnection applies a connection event to its row and the counts.
function onConnection(env) {
  const id = env.mentorado_id;
  const d = env.data || {};
  const m = state.rows.get(id);
  if (!m) {
    // Not listed (filtered out, or new): the counts changed all the same.
    scheduleReload(1000);
    return;
  }
  if (m.status_at) {
    const at = new Date(env.occurred_at), shown = new Date(m.status_at);
    if (at < shown) return; // older than what is shown
    if (at.getTime() === shown.getTime() && d.status === m.status) return; // read with the fleet already
  }
  const before = m.state;
  m.status = d.status;
  m.state = stateOf(d.status, m.disabled);
  m.reason = d.reason || "";
  m.status_at = env.occurred_at;
  m.connected_since = d.status === "connected" ? env.occurred_at : null;
  if (!m.last_event_at || new Date(env.occurred_at) > new Date(m.last_event_at)) m.last_event_at = env.occurred_at;
  if (d.connector) m.connector = d.connector;
  if (d.phone) m.phone = d.phone;
  if (d.status === "backoff") m.reconnects_24h = (m.reconnects_24h || 0) + 1;
  if (d.status === "banned") m.bans_24h = (m.bans_24h || 0) + 1;
  if (state.counts && before !== m.state) {
    state.counts[before] = Math.max(0, (state.counts[before] || 0) - 1);
    state.counts[m.state] = (state.counts[m.state] || 0) + 1;
    renderCounts();
  }
  const tr = state.trs.get(id);
  if (tr) {
    fillRow(tr, m);
    tr.classList.remove("flash");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("flash");
  }
}

// ---- actions ---------------------------------------------------------------

async function act(action, id) {
  const m = state.rows.get(id);
  if (!m) return;
  showError("console-error", null);
  notice("");
  try {
    switch (action) {
      case "open": return await openDashboard(m);
      case "disconnect": {
        const res = await api("POST", "/v1/admin/mentorados/" + id + "/disconnect");
        notice(t("console.done.disconnect", { name: m.name, state: t("status." + ((res.session && res.session.state) || "disconnected")) }));
        return;
      }
      case "disable":
        await api("POST", "/v1/admin/mentorados/" + id + "/disable");
        notice(t("console.done.disable", { name: m.name }));
        return await load();
      case "enable":
        await api("POST", "/v1/admin/mentorados/" + id + "/enable");
        notice(t("console.done.enable", { name: m.name }));
        return await load();
      case "rotate": {
        if (!window.confirm(t("console.rotate.confirm", { name: m.name }))) return;
        const res = await api("POST", "/v1/admin/mentorados/" + id + "/tokens");
        $("token-text").textContent = t("console.token.text", { name: m.name });
        $("token-value").value = res.token;
        $("token-dialog").showModal();
        return;
      }
      case "delete": return openDelete(m);
    }
  } catch (e) {
    if (!e.handled) showError("console-error", e);
  }
}

// openDashboard opens the mentorado's dashboard in a new tab with a
// dashboard pass: a new tab starts with a copy of this tab's
// sessionStorage, so the pass is put where the dashboard reads its token
// for that moment only, and the admin token is kept out of the copy.
async function openDashboard(m) {
  const res = await api("POST", "/v1/admin/mentorados/" + m.id + "/dashboard-pass");
  const admin = sessionStorage.getItem(ADMIN_KEY);
  sessionStorage.removeItem(ADMIN_KEY);
  sessionStorage.setItem(DASHBOARD_TOKEN_KEY, res.pass);
  try {
    window.open("/", "_blank");
  } finally {
    sessionStorage.removeItem(DASHBOARD_TOKEN_KEY);
    if (admin) sessionStorage.setItem(ADMIN_KEY, admin);
  }
  notice(t("console.done.open", { name: m.name }));
}

function openDelete(m) {
  state.deleting = m;
  $("delete-text").textContent = t("console.delete.text", { name: m.name });
  $("delete-confirm").value = "";
  $("delete-force").checked = false;
  $("delete-ok").disabled = true;
  showError("delete-error", null);
  $("delete-dialog").showModal();
  $("delete-confirm").focus();
}

async function confirmDelete(ev) {
  ev.preventDefault();
  const m = state.deleting;
  if (!m || $("delete-confirm").value !== m.name) return;
  const p = new URLSearchParams({ confirm: m.name });
  if ($("delete-force").checked) p.set("force", "true");
  $("delete-ok").disabled = true;
  try {
    await api("DELETE", "/v1/admin/mentorados/" + m.id + "?" + p.toString());
    $("delete-dialog").close();
    state.deleting = null;
    notice(t("console.done.delete", { name: m.name }));
    await load();
  } catch (e) {
    $("delete-ok").disabled = false;
    if (!e.handled) showError("delete-error", e);
  }
}

// ---- wiring ----------------------------------------------------------------

function init() {
  $("lang").value = I18N.lang;
  $("lang").addEventListener("change", () => I18N.setLang($("lang").value, true));
  I18N.onChange(() => {
    $("lang").value = I18N.lang;
    for (const [id, tr] of state.trs) fillRow(tr, state.rows.get(id));
    renderCounts();
    renderLag();
    setLive($("live").dataset.state === "on");
  });
  $("signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("admin-token").value); });
  $("sign-out").addEventListener("click", () => signOut(null));
  $("search").addEventListener("input", () => {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(() => scheduleReload(0), 250);
  });
  $("state-filter").addEventListener("change", () => scheduleReload(0));
  $("delete-confirm").addEventListener("input", () => {
    $("delete-ok").disabled = !state.deleting || $("delete-confirm").value !== state.deleting.name;
  });
  $("delete-form").addEventListener("submit", confirmDelete);
  $("delete-cancel").addEventListener("click", () => { state.deleting = null; $("delete-dialog").close(); });
  $("token-copy").addEventListener("click", () => {
    $("token-value").select();
    if (navigator.clipboard) navigator.clipboard.writeText($("token-value").value).catch(() => {});
  });
  $("token-dialog").addEventListener("close", () => { $("token-value").value = ""; });
  setLive(false);
  document.documentElement.dataset.ready = "true";
  if (state.token) signIn(state.token);
}

I18N.ready.then(init, () => { document.documentElement.dataset.ready = "true"; });

// zapbus dashboard: vanilla JS, no build step. The mentorado token lives in
// sessionStorage; the live stream uses short-lived tickets
// (POST /v1/stream-tickets) because EventSource cannot send headers. Words
// and formats come from I18N (i18n.js): nothing here is user-visible text.
"use strict";

const $ = (id) => document.getElementById(id);
const t = (key, params) => I18N.t(key, params);
const TOKEN_KEY = "zapbus.token";
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "", lastEventId: "", es: null, qrURL: "", retry: null,
  // The open chat: its JID (phone JID, LID or group), the phone of a
  // phone chat, its kind, name and participant count.
  chat: "", phone: "", kind: "", name: "", participants: 0,
  convTimer: null, convTimer2: null, recent: new Map(),
  history: null, historyTimer: null, // the history sync in progress: {messages, progress, failed}
  st: null, // last connection status shown
  convs: [], // chats as listed (GET /v1/chats), re-rendered when the language changes
  thread: new Map(), // messages of the open thread by id
  errors: {}, // element id → API error shown there, re-translated with the page
  blobs: new Map(), // media API path → Promise of an object URL, revoked when the thread re-renders
  replyTo: null, // the message the send box quotes
  file: null, // the file attached to the send box
  readTimer: null,
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

// api calls the API with the token. A FormData body goes as multipart; the
// answer is JSON, or a Blob when raw is set (a file may itself be JSON) or
// the answer is not JSON.
async function api(method, path, body, raw) {
  const headers = { Authorization: "Bearer " + state.token };
  const init = { method, headers };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
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
  return ct.startsWith("application/json") && !raw ? res.json() : res.blob();
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
    // The provider first (provider.js): it decides which connection
    // controls make sense. A failure there still shows the page.
    const [st] = await Promise.all([api("GET", "/v1/whatsapp/status"), loadProvider()]);
    sessionStorage.setItem(TOKEN_KEY, state.token);
    showApp(true);
    setStatus(st);
    loadConversations();
    loadWebhooks();
    loadCampaigns(); // campaigns.js
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
  // Nothing of the last session stays on the page, its secret least of all.
  showSecret("");
  wh.list = [];
  wh.open.clear();
  wh.deliveries.clear();
  renderWebhooks();
  resetCampaigns();
  resetProvider(); // provider.js
  // The next sign-in may be another mentorado's: this one's status (which
  // would hide an older-looking one), stream position and open chat go.
  state.st = null;
  state.lastEventId = "";
  hideQR();
  $("status-badge").textContent = "";
  $("status-badge").dataset.status = "unknown";
  $("status-detail").textContent = "";
  state.chat = state.phone = state.kind = state.name = "";
  state.thread = new Map();
  state.recent = new Map();
  state.convs = [];
  setReply(null);
  setFile(null);
  renderConversations();
  renderThread();
  $("thread-title").textContent = t("chat.pick");
  $("thread-title").classList.add("muted");
  for (const id of ["send-text", "send-button", "attach-button"]) $(id).disabled = true;
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
  if (st.status === "qr" && activeProvider() !== "meta" && (!prev || prev.status !== "qr" || !state.qrURL)) refreshQR();
}

// sinceOf is the time of a status, or null for none (a session that never
// ran reports the zero time).
function sinceOf(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !isNaN(d) && d.getFullYear() > 2000 ? d : null;
}

function renderStatus() {
  const st = state.st;
  if (!st) {
    $("verify").hidden = true;
    return;
  }
  const s = st.status;
  const badge = $("status-badge");
  badge.textContent = t("status." + s) === "status." + s ? s : t("status." + s);
  badge.dataset.status = s;
  const parts = [];
  if (st.phone) parts.push(I18N.phone(st.phone));
  if (st.since) parts.push(t("conn.since", { when: I18N.when(st.since, true) }));
  $("status-detail").textContent = parts.join(" · ");
  $("status-detail").title = st.since ? I18N.full(st.since) : "";
  // Meta's Cloud API (provider.js) has no QR code, pairing or unpairing:
  // the number is configured by the operator, and "Verificar conexão"
  // checks its credentials. Z-API pairs by QR like WhatsApp Web.
  const meta = activeProvider() === "meta";
  // The QR is only for the qr state: once paired (or stopped) it is gone,
  // even if a fetch of it is still on its way.
  if (s !== "qr" || meta) hideQR();
  const hint = "hint." + s;
  if (meta) $("qr-hint").textContent = s === "connected" ? t("prov.metaConnected") : t("prov.metaHint");
  else $("qr-hint").textContent = t(hint) === hint ? "" : t(hint);
  $("qr-hint").hidden = s === "qr" && !!state.qrURL;
  const paired = !!(st.jid || st.phone) && s !== "logged_out";
  $("connect").hidden = meta || !CONNECTABLE.includes(s);
  $("verify").hidden = !meta;
  $("disconnect").hidden = !RUNNING.includes(s);
  $("logout").hidden = meta || !paired;
  $("pairing").hidden = meta || !CONNECTABLE.includes(s);
  if (s === "pairing" && st.pairing_code && !meta) showPairingCode(st.pairing_code);
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

// A chat is a phone JID, a LID or a group JID (docs/api.md#chats).
const PHONE_JID = "@s.whatsapp.net";
const isGroup = (chat) => (chat || "").endsWith("@g.us");
const phoneOfChat = (chat) => (chat || "").endsWith(PHONE_JID) ? chat.slice(0, -PHONE_JID.length) : "";

// chatOf is the chat of a live message event, by the API's rule: the
// group, else the person's phone JID, else their LID.
function chatOf(d) {
  if (isGroup(d.chat_jid)) return d.chat_jid;
  if (d.phone) return d.phone + PHONE_JID;
  return d.lid || d.chat_jid || "";
}

async function loadConversations() {
  let data;
  try {
    data = await api("GET", "/v1/chats?limit=100");
  } catch (e) {
    return;
  }
  state.convs = data.chats;
  renderConversations();
}

function renderConversations() {
  $("conversations").replaceChildren(...state.convs.map(conversationItem));
  $("conversations-empty").hidden = state.convs.length > 0;
}

// chatName is how the list and the title name a chat: a phone chat with no
// better name shows its number the local way.
function chatName(c) {
  const phone = phoneOfChat(c.chat);
  if (phone && (!c.name || c.name === "+" + phone)) return I18N.phone(phone);
  return c.name || c.lid || c.chat;
}

function conversationItem(c) {
  const li = el("li");
  li.dataset.chat = c.chat;
  li.dataset.kind = c.kind || (isGroup(c.chat) ? "group" : "direct");
  const phone = phoneOfChat(c.chat);
  if (phone) li.dataset.phone = phone;
  li.dataset.testid = "conversation";
  li.dataset.name = phone && c.name === "+" + phone ? "" : c.name || "";
  li.dataset.unread = String(c.unread || 0);
  const b = el("button", "conv");
  b.type = "button";
  if (c.chat === state.chat) b.setAttribute("aria-current", "true");
  const name = el("span", "name");
  if (li.dataset.kind === "group") {
    const icon = el("span", "group-icon", "👥");
    icon.setAttribute("role", "img");
    icon.setAttribute("aria-label", t("chat.group"));
    name.append(icon, " ");
  }
  name.append(chatName(c));
  b.append(name);
  const at = c.last_at || (c.last_message && c.last_message.sent_at);
  if (at) {
    const time = el("time", "when", I18N.when(at, false));
    time.dateTime = at;
    time.title = I18N.full(at);
    b.append(time);
  }
  const lm = c.last_message || {};
  let text = lm.text || lm.caption || t("kind." + (lm.kind || "other"));
  if (lm.direction === "out") text = t("chat.you", { text });
  else if (li.dataset.kind === "group" && (lm.sender_name || lm.push_name)) {
    text = t("chat.said", { name: lm.sender_name || lm.push_name, text });
  }
  b.append(el("span", "preview", text));
  if (c.unread > 0) {
    const u = el("span", "unread", I18N.number(c.unread));
    u.setAttribute("aria-label", t("chat.unread", { count: I18N.number(c.unread) }));
    b.append(u);
  }
  if (li.dataset.kind === "group" && c.participants) {
    b.append(el("span", "members", t("chat.participants", { count: I18N.number(c.participants) })));
  }
  b.addEventListener("click", () => openThread(c.chat, li.dataset.name, c.participants));
  li.append(b);
  return li;
}

// upsertConversation moves a chat to the top from a live message event, so
// the list is live even before the persister has stored the row;
// loadConversations reconciles with the database afterwards.
function upsertConversation(d) {
  const chat = chatOf(d);
  if (!chat || ["edit", "revoke", "reaction"].includes(d.kind)) return;
  const old = state.convs.find((c) => c.chat === chat);
  const unread = (old ? Number(old.unread || 0) : 0) + (d.direction === "in" && chat !== state.chat ? 1 : 0);
  const group = isGroup(chat);
  const name = (old && old.name) || (group ? "" : d.push_name) || "";
  const c = {
    ...(old || {}), chat, kind: group ? "group" : "direct", name, unread, last_at: d.timestamp,
    last_message: { direction: d.direction, text: d.text || d.caption, kind: d.kind, sender_name: group ? d.push_name : "" },
  };
  state.convs = [c, ...state.convs.filter((x) => x.chat !== chat)];
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

// snippet is a short text for a message: a quote, the reply bar.
function snippet(m) {
  if (!m) return t("msg.quoteMissing");
  if (m.revoked) return t("msg.deleted");
  const s = m.text || m.caption || (m.media && m.media.file_name) || t("kind." + (m.kind || "other"));
  return s.length > 120 ? s.slice(0, 119) + "…" : s;
}

function messageText(m, hasMedia) {
  if (m.revoked) return t("msg.deleted");
  const text = m.text || m.caption || (hasMedia ? "" : t("kind." + (m.kind || "other")));
  if (!text) return "";
  return m.edited ? t("msg.edited", { text }) : text;
}

function messageItem(m) {
  const li = el("li", m.direction === "out" ? "out" : "in");
  li.dataset.id = m.id;
  li.dataset.kind = m.kind || "text";
  if (m.direction !== "out" && isGroup(m.chat)) {
    // In a group, who wrote it.
    const who = m.sender_name || m.push_name || (m.phone ? I18N.phone(m.phone) : m.sender_jid || "");
    if (who) li.append(el("span", "sender", who));
  }
  if (m.reply_to_id && !m.revoked) {
    const q = el("blockquote", "quote", snippet(state.thread.get(m.reply_to_id)));
    q.dataset.replyTo = m.reply_to_id;
    li.append(q);
  }
  const hasMedia = !m.revoked && !!m.media;
  if (hasMedia) li.append(mediaBlock(m));
  // A Meta message template (issue #16) says so above its text.
  if (m.kind === "template" && !m.revoked) li.append(el("span", "tpl-tag", t("msg.template")));
  const text = messageText(m, hasMedia);
  if (text) li.append(el("span", "body", text));
  if (!m.revoked && m.reactions && m.reactions.length) li.append(reactionChips(m));
  const meta = el("span", "meta");
  const time = el("time", "", I18N.when(m.sent_at, true));
  time.dateTime = m.sent_at;
  time.title = I18N.full(m.sent_at);
  meta.append(time);
  if (m.direction === "out" && m.status) {
    li.dataset.status = m.status;
    meta.append(" · " + t("msgstatus." + m.status));
    // Why a send failed or expired (issue #14: the outbox).
    if (m.status_reason) meta.append(" " + t("msg.statusReason", { reason: m.status_reason }));
  }
  li.append(meta);
  if (!m.revoked) li.append(messageActions(m));
  return li;
}

// ---- media -----------------------------------------------------------------

// Files need the token, so the page fetches them and shows object URLs;
// they are revoked when the thread re-renders.
function releaseBlobs() {
  for (const p of state.blobs.values()) p.then((u) => URL.revokeObjectURL(u), () => {});
  state.blobs = new Map();
}

// blobURL is an object URL for a media path (or for a file this page just
// sent, which it still has).
function blobURL(path, file) {
  let p = state.blobs.get(path);
  if (!p) {
    p = file ? Promise.resolve(URL.createObjectURL(file)) : fetchMedia(path).then((b) => URL.createObjectURL(b));
    state.blobs.set(path, p);
    p.catch(() => { if (state.blobs.get(path) === p) state.blobs.delete(path); });
  }
  return p;
}

// fetchMedia waits out a file the API has not recorded yet: the live
// events can reach the page before the persister.
async function fetchMedia(path) {
  for (let i = 0; ; i++) {
    try {
      return await api("GET", path, undefined, true);
    } catch (e) {
      if (e.status !== 404 || i >= 8) throw e;
      await new Promise((r) => setTimeout(r, 250 * 2 ** Math.min(i, 4)));
    }
  }
}

// liveMedia is the media of a live message event, as the API would list it.
function liveMedia(d) {
  if (!d.media) return undefined;
  const md = { ...d.media, url: "/v1/messages/" + encodeURIComponent(d.wa_id) + "/media" };
  md.state = d.direction === "out" ? "stored" : "pending";
  if (md.thumbnail) md.thumbnail_data = "data:image/jpeg;base64," + md.thumbnail;
  delete md.thumbnail;
  return md;
}

// setSrc points a media element at a file once it is fetched; a failure
// shows on the message.
function setSrc(node, path, box, file) {
  blobURL(path, file).then((u) => { node.src = u; }, (e) => {
    if (e.handled) return;
    box.append(el("span", "media-state error", mediaError(e)));
  });
}

// mediaError is the text for a file the API would not serve.
function mediaError(e) {
  switch (e.code) {
    case "media_not_ready": return t("error.media_not_ready");
    case "media_failed": return t("error.media_failed");
    case "no_media": return t("error.no_media");
    default: return I18N.error(e);
  }
}

// mediaLabel names a kind of file, for labels and file-less documents.
function mediaLabel(kind) {
  switch (kind) {
    case "image": return t("media.image");
    case "sticker": return t("media.sticker");
    case "video": return t("media.video");
    case "ptv": return t("media.ptv");
    case "audio": return t("media.audio");
    case "ptt": return t("media.ptt");
    default: return t("media.document");
  }
}

function thumbnailOf(md) {
  return md.thumbnail_data || md.thumbnail_url || "";
}

function mediaBlock(m) {
  const md = m.media;
  const kind = m.kind === "video" && md.round ? "ptv" : m.kind;
  const box = el("div", "media media-" + kind);
  const st = md.state || "stored";
  box.dataset.state = st;
  const name = md.file_name || mediaLabel(kind);
  const thumb = thumbnailOf(md);
  const showThumb = () => {
    if (!thumb) return;
    const img = el("img", "thumb");
    img.alt = t("media.preview");
    if (md.thumbnail_data) img.src = md.thumbnail_data;
    else setSrc(img, md.thumbnail_url, box);
    box.append(img);
  };
  if (st !== "stored") {
    if (kind !== "document") showThumb();
    if (kind === "document") box.append(el("span", "doc-name", name));
    if (md.seconds) box.append(el("span", "muted", I18N.duration(md.seconds)));
    box.append(st === "failed"
      ? el("span", "media-state error", t("media.failed", { reason: md.error || "?" }))
      : el("span", "media-state", t("media.pending")));
    return box;
  }
  const file = m.file;
  switch (kind) {
    case "image":
    case "sticker": {
      const img = el("img", kind === "sticker" ? "sticker" : "picture");
      img.alt = m.caption || mediaLabel(kind);
      // Shown at its own proportions while only the preview is there.
      if (md.width > 0 && md.height > 0) {
        img.width = Math.min(220, md.width);
        img.style.aspectRatio = md.width + " / " + md.height;
      }
      // A picture shows its preview first; a click loads the full file
      // (and the message keeps showing it).
      if (kind === "image" && thumb && !file && !m.fullShown) {
        const b = el("button", "media-open");
        b.type = "button";
        b.setAttribute("aria-label", t("media.openFull"));
        b.title = t("media.openFull");
        if (md.thumbnail_data) img.src = md.thumbnail_data;
        else setSrc(img, md.thumbnail_url, box);
        b.addEventListener("click", () => {
          if (img.dataset.full === "true") {
            img.classList.toggle("big");
            return;
          }
          img.dataset.full = "true";
          img.classList.add("big");
          m.fullShown = true;
          setSrc(img, md.url, box);
        });
        b.append(img);
        box.append(b);
      } else {
        img.dataset.full = "true";
        setSrc(img, md.url, box, file);
        box.append(img);
      }
      break;
    }
    case "audio":
    case "ptt": {
      const a = document.createElement("audio");
      a.controls = true;
      a.preload = "metadata";
      a.setAttribute("aria-label", mediaLabel(kind));
      setSrc(a, md.url, box, file);
      box.append(a);
      break;
    }
    case "video":
    case "ptv": {
      const v = document.createElement("video");
      v.controls = true;
      v.preload = "metadata";
      v.playsInline = true;
      v.setAttribute("aria-label", mediaLabel(kind));
      if (md.thumbnail_data) v.poster = md.thumbnail_data;
      setSrc(v, md.url, box, file);
      box.append(v);
      break;
    }
    default: {
      box.append(el("span", "doc-icon", t("media.docIcon")), el("span", "doc-name", name));
      if (md.size) box.append(el("span", "muted", I18N.bytes(md.size)));
      const a = el("a", "download", t("media.download"));
      a.href = md.url;
      a.download = md.file_name || "";
      a.setAttribute("aria-label", t("media.downloadNamed", { name }));
      // The file needs the token: fetch it, then let the browser save it.
      a.addEventListener("click", (ev) => {
        if (a.dataset.ready === "true") return;
        ev.preventDefault();
        blobURL(md.url, file).then((u) => {
          a.href = u;
          a.dataset.ready = "true";
          a.click();
        }, (e) => showError("send-error", e));
      });
      box.append(a);
    }
  }
  return box;
}

// ---- replies and reactions ---------------------------------------------------

const EMOJIS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

function reactionChips(m) {
  const ul = el("ul", "reactions");
  ul.setAttribute("aria-label", t("react.listLabel"));
  for (const r of m.reactions) {
    const li = el("li", r.mine ? "chip mine" : "chip", r.count > 1 ? r.emoji + " " + I18N.number(r.count) : r.emoji);
    li.dataset.emoji = r.emoji;
    const params = { emoji: r.emoji, count: I18N.number(r.count) };
    li.setAttribute("aria-label", r.mine ? t("react.chipMine", params) : t("react.chip", params));
    ul.append(li);
  }
  return ul;
}

function messageActions(m) {
  const bar = el("div", "msg-actions");
  const reply = el("button", "link", t("msg.reply"));
  reply.type = "button";
  reply.dataset.action = "reply";
  reply.setAttribute("aria-label", t("msg.replyTo", { text: snippet(m) }));
  reply.addEventListener("click", () => { setReply(m); $("send-text").focus(); });
  const react = el("button", "link", t("msg.react"));
  react.type = "button";
  react.dataset.action = "react";
  react.setAttribute("aria-label", t("msg.reactTo", { text: snippet(m) }));
  react.setAttribute("aria-expanded", "false");
  const picker = el("div", "picker");
  picker.setAttribute("role", "group");
  picker.setAttribute("aria-label", t("react.pickerLabel"));
  picker.hidden = true;
  const mine = (m.reactions || []).find((r) => r.mine);
  for (const e of EMOJIS) {
    const b = el("button", mine && mine.emoji === e ? "emoji mine" : "emoji", e);
    b.type = "button";
    b.dataset.emoji = e;
    b.setAttribute("aria-label", t("react.with", { emoji: e }));
    b.addEventListener("click", () => reactTo(m, e));
    picker.append(b);
  }
  if (mine) {
    const b = el("button", "link", t("react.remove"));
    b.type = "button";
    b.dataset.emoji = "";
    b.addEventListener("click", () => reactTo(m, ""));
    picker.append(b);
  }
  react.addEventListener("click", () => {
    picker.hidden = !picker.hidden;
    react.setAttribute("aria-expanded", String(!picker.hidden));
    if (!picker.hidden) picker.querySelector("button").focus();
  });
  picker.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { picker.hidden = true; react.setAttribute("aria-expanded", "false"); react.focus(); }
  });
  bar.append(reply, react, picker);
  return bar;
}

async function reactTo(m, emoji) {
  showError("send-error", null);
  try {
    await api("POST", "/v1/messages/" + encodeURIComponent(m.id) + "/reactions", { emoji, client_id: crypto.randomUUID() });
  } catch (e) {
    showError("send-error", e);
    return;
  }
  updateMessage(m.id, (x) => applyReaction(x, emoji, true));
}

// setReply quotes a message above the send box (null: none).
function setReply(m) {
  state.replyTo = m || null;
  $("reply-bar").hidden = !m;
  $("reply-text").textContent = m ? snippet(m) : "";
}

// setFile attaches a file to the send box (null: none).
function setFile(f) {
  state.file = f || null;
  $("attachment").hidden = !f;
  $("attachment-name").textContent = f ? t("attach.named", { name: f.name, size: I18N.bytes(f.size) }) : "";
}

function threadTitle() {
  if (!state.chat) return t("chat.pick");
  if (isGroup(state.chat)) {
    const name = state.name || state.chat;
    return state.participants ? t("chat.titleGroup", { name, count: I18N.number(state.participants) }) : name;
  }
  // A LID chat: its name and its LID (the API names it by the LID when
  // nothing better is known).
  if (!state.phone) return state.name && state.name !== state.chat ? t("chat.titleNamed", { name: state.name, phone: state.chat }) : state.chat;
  const phone = I18N.phone(state.phone);
  return state.name ? t("chat.titleNamed", { name: state.name, phone }) : phone;
}

function renderThread() {
  const ol = $("thread");
  const msgs = [...state.thread.values()].sort((a, b) => new Date(a.sent_at) - new Date(b.sent_at));
  // A whole new thread is not news for screen readers: only what arrives
  // after it (addToThread) is announced.
  ol.setAttribute("aria-busy", "true");
  releaseBlobs();
  ol.replaceChildren(...msgs.map(messageItem));
  ol.removeAttribute("aria-busy");
  ol.scrollTop = ol.scrollHeight;
}

async function openThread(chat, name, participants) {
  if (chat !== state.chat) {
    setReply(null);
    setFile(null);
    $("tpl-form").hidden = true; // provider.js
  }
  state.chat = chat;
  state.phone = phoneOfChat(chat);
  state.kind = isGroup(chat) ? "group" : "direct";
  state.name = name || "";
  state.participants = participants || 0;
  state.thread = new Map();
  $("thread-title").textContent = threadTitle();
  $("thread-title").classList.remove("muted");
  $("send-text").disabled = false;
  $("send-button").disabled = false;
  $("attach-button").disabled = false;
  $("tpl-open").hidden = !canSendTemplate() || !$("tpl-form").hidden;
  showError("send-error", null);
  for (const b of $("conversations").querySelectorAll("button.conv")) {
    if (b.parentElement.dataset.chat === chat) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
  renderThread();
  let data;
  try {
    data = await api("GET", "/v1/chats/" + encodeURIComponent(chat) + "/messages?limit=100");
  } catch (e) {
    showError("send-error", e);
    return;
  }
  if (state.chat !== chat) return;
  // Messages seen live may not be stored yet: show them too.
  const byId = new Map(data.messages.map((m) => [m.id, m]));
  for (const m of (state.recent.get(chat) || new Map()).values()) if (!byId.has(m.id)) byId.set(m.id, m);
  for (const m of state.thread.values()) if (!byId.has(m.id)) byId.set(m.id, m);
  state.thread = byId;
  renderThread();
  markRead(chat);
}

// markRead tells WhatsApp the open chat was read (read receipts for its
// unread inbound messages) and clears its unread count.
async function markRead(chat) {
  clearTimeout(state.readTimer);
  try {
    await api("POST", "/v1/chats/" + encodeURIComponent(chat) + "/read");
  } catch (e) {
    return;
  }
  const c = state.convs.find((x) => x.chat === chat);
  if (c && c.unread) {
    c.unread = 0;
    renderConversations();
  }
  // The stored count follows once the persister has the receipts.
  scheduleConversations();
}

// remember keeps the last live messages per chat (bounded), for threads
// opened before the persister stored them.
function remember(m) {
  if (!m.chat) return;
  if (!state.recent.has(m.chat)) state.recent.set(m.chat, new Map());
  const msgs = state.recent.get(m.chat);
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
  updateMessage(d.target_id, (m) => {
    if (d.kind === "edit") {
      m.text = d.text;
      m.edited = true;
    } else if (d.kind === "revoke") {
      m.revoked = true;
    } else {
      applyReaction(m, d.text || "", d.direction === "out");
    }
  });
}

// updateMessage changes every copy of a message (the live one and the
// stored one may be different objects) and re-renders it in the thread.
function updateMessage(id, fn) {
  const targets = new Set();
  for (const msgs of state.recent.values()) if (msgs.has(id)) targets.add(msgs.get(id));
  if (state.thread.has(id)) targets.add(state.thread.get(id));
  for (const m of targets) fn(m);
  if (state.thread.has(id)) replaceInThread(state.thread.get(id));
}

// applyReaction shows a reaction on the aggregated chips the API gives
// ({emoji, count, mine}). A chat is one-to-one: a reaction replaces the
// previous one of the same side, ours or the contact's.
function applyReaction(m, emoji, mine) {
  const list = (m.reactions || []).map((r) => ({ ...r }));
  const prev = mine ? list.find((r) => r.mine) : list.find((r) => r.count > (r.mine ? 1 : 0));
  if (prev) {
    prev.count--;
    if (mine) prev.mine = false;
  }
  if (emoji) {
    let r = list.find((x) => x.emoji === emoji);
    if (!r) {
      r = { emoji, count: 0, mine: false };
      list.push(r);
    }
    r.count++;
    if (mine) r.mine = true;
  }
  m.reactions = list.filter((r) => r.count > 0);
}

// applyMedia records a media event: the file is stored, or failed for good.
function applyMedia(d) {
  updateMessage(d.wa_id, (m) => {
    const md = m.media || { url: "/v1/messages/" + encodeURIComponent(d.wa_id) + "/media" };
    m.media = { ...md, state: d.state, error: d.reason || "", mime: d.mime || md.mime, size: d.size || md.size };
  });
}

function addToThread(m) {
  // A later copy of a message (the live event of one we sent, say) keeps
  // what the page already knows of it: its file, reactions, media state.
  const old = state.thread.get(m.id) || (state.recent.get(m.chat) || new Map()).get(m.id);
  if (old) {
    m = { ...old, ...m, reactions: m.reactions || old.reactions, file: old.file };
    if (old.media) {
      const st = old.media.state === "pending" && m.media ? m.media.state : old.media.state;
      m.media = { ...old.media, ...(m.media || {}), state: st };
    }
  }
  remember(m);
  if (!state.chat || m.chat !== state.chat) return;
  const ol = $("thread");
  const existing = ol.querySelector('li[data-id="' + CSS.escape(m.id) + '"]');
  state.thread.set(m.id, m);
  const li = messageItem(m);
  if (existing) existing.replaceWith(li);
  else ol.append(li);
  ol.scrollTop = ol.scrollHeight;
}

// kindFor picks the message kind for an uploaded file from the type the
// API sniffed: OGG/Opus goes as a voice note, pictures and videos WhatsApp
// plays inline as such, anything else as a document.
function kindFor(mime) {
  const full = (mime || "").toLowerCase();
  const base = full.split(";")[0].trim();
  if (base === "audio/ogg" && full.includes("opus")) return "ptt";
  if (["image/jpeg", "image/png", "image/webp"].includes(base)) return "image";
  if (["video/mp4", "video/3gpp"].includes(base)) return "video";
  if (["audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr", "audio/opus"].includes(base)) return "audio";
  return "document";
}

const CAPTIONED = ["image", "video", "document"];

// shown puts a message the API accepted in the thread.
function shown(m, typed) {
  if (state.phone && phoneOfChat(m.chat) && m.chat !== state.chat && state.chat === typed) {
    // A new chat typed by hand: adopt the normalised number.
    state.chat = m.chat;
    state.phone = phoneOfChat(m.chat);
    $("thread-title").textContent = threadTitle();
  }
  addToThread(m);
  scheduleConversations();
}

// send sends what the send box holds: the attached file (uploaded, then
// sent with the text as its caption when its kind has one), then the text,
// quoting the message being answered. What went through leaves the box,
// so a retry after an error sends only the rest.
async function send(ev) {
  ev.preventDefault();
  const text = $("send-text").value;
  const file = state.file;
  const chat = state.chat;
  if (!chat || (!text.trim() && !file)) return;
  // A phone chat goes by phone, which the API normalises (a number typed
  // in "new chat" may not be in E.164 form yet); LIDs and groups by chat.
  const to = state.phone ? { phone: state.phone } : { chat };
  showError("send-error", null);
  $("send-button").disabled = true;
  try {
    if (file) {
      const fd = new FormData();
      fd.append("file", file, file.name);
      const up = await api("POST", "/v1/media", fd);
      const kind = kindFor(up.mime);
      const body = { ...to, kind, media_id: up.media_id, client_id: crypto.randomUUID() };
      if (CAPTIONED.includes(kind) && text.trim()) body.caption = text;
      if (kind === "document") body.file_name = file.name;
      if (state.replyTo) body.reply_to = state.replyTo.id;
      const r = await api("POST", "/v1/messages", body);
      const m = r.message || r;
      m.file = file; // shown from the page's copy, no download needed
      if (!m.media) m.media = { id: up.media_id, mime: up.mime, size: up.size, file_name: body.file_name };
      m.media.state = "stored";
      m.media.url = m.media.url || "/v1/messages/" + encodeURIComponent(m.id) + "/media";
      setFile(null);
      setReply(null);
      if (body.caption !== undefined) $("send-text").value = "";
      shown(m, chat);
    }
    const rest = $("send-text").value;
    if (rest.trim()) {
      const body = { ...to, text: rest, client_id: crypto.randomUUID() };
      if (state.replyTo) body.reply_to = state.replyTo.id;
      const r = await api("POST", "/v1/messages", body);
      $("send-text").value = "";
      setReply(null);
      shown(r.message || r, chat);
    }
  } catch (e) {
    showError("send-error", e);
    // Meta refuses free-form messages to a chat that did not write in 24
    // hours: only an approved template goes (provider.js).
    if (e.code === "outside_window") showTemplateForm(true);
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
    noteProviderActivity(); // provider.js: webhook health
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
    if (d.kind === "edit" || d.kind === "revoke" || d.kind === "reaction") {
      applyToTarget(d);
    } else {
      const chat = chatOf(d);
      addToThread({
        id: d.wa_id, chat, phone: d.phone, lid: d.lid, sender_jid: d.sender_jid, push_name: d.push_name,
        direction: d.direction, kind: d.kind, text: d.text, caption: d.caption,
        reply_to_id: d.reply_to_id, status: d.status, sent_at: d.timestamp, media: liveMedia(d),
        status_reason: d.status_reason, client_id: d.client_id, campaign_id: d.campaign_id,
      });
      upsertConversation(d);
      if (d.direction === "in") noteProviderActivity(); // provider.js: webhook health
      if (d.direction === "in" && chat === state.chat && document.visibilityState === "visible") {
        clearTimeout(state.readTimer);
        state.readTimer = setTimeout(() => markRead(chat), 500);
      }
    }
    scheduleConversations();
  });
  // A media message's file was stored (or failed for good): show it.
  es.addEventListener("media", (ev) => {
    track(ev);
    applyMedia(JSON.parse(ev.data).data);
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
  // Groups changed, leads created, merged or renamed: the list shows them.
  es.addEventListener("group", (ev) => { track(ev); scheduleConversations(); });
  es.addEventListener("lead", (ev) => { track(ev); scheduleConversations(); });
  // A webhook endpoint changed state without the user (paused after
  // failing, disabled by a 410): the list shows it.
  es.addEventListener("webhook", (ev) => { track(ev); scheduleWebhooks(); });
  // A campaign's progress, and bulk sending paused or resumed (campaigns.js).
  es.addEventListener("campaign", (ev) => { track(ev); onCampaignEvent(JSON.parse(ev.data).data); });
  es.addEventListener("sending", (ev) => { track(ev); loadSending(); scheduleCampaigns(); });
  // A history sync streams its progress, not its messages.
  es.addEventListener("history", (ev) => {
    track(ev);
    showHistory(JSON.parse(ev.data).data);
    scheduleConversations();
  });
  es.onerror = () => {
    // Tickets are short-lived: reopen with a fresh one, resuming after the
    // last event seen.
    es.close();
    if (state.es === es) state.es = null;
    clearTimeout(state.retry);
    state.retry = setTimeout(openStream, 2000);
  };
}

// showHistory adds one chunk of the phone's history sync to the progress
// line; it says so when the sync is done and then hides.
function showHistory(d) {
  const h = state.history || { messages: 0, progress: 0, failed: false };
  h.messages += Number(d.messages || 0);
  h.progress = Math.max(h.progress, Number(d.progress || 0));
  h.failed = h.failed || !!d.failed;
  state.history = h;
  renderHistory();
  clearTimeout(state.historyTimer);
  // WhatsApp sends chunks a few seconds apart; a quiet minute, or 100 %,
  // ends the line.
  state.historyTimer = setTimeout(() => {
    state.history = null;
    renderHistory();
  }, h.progress >= 100 ? 10000 : 60000);
}

function renderHistory() {
  const p = $("history-progress");
  const h = state.history;
  p.hidden = !h;
  if (!h) return;
  const count = I18N.number(h.messages);
  let text = h.progress >= 100 ? t("history.done", { count }) : t("history.importing", { count });
  if (h.progress > 0 && h.progress < 100) text += " " + t("history.percent", { percent: I18N.number(h.progress) });
  if (h.failed) text += " " + t("history.failed");
  p.textContent = text;
}

// ---- webhooks -------------------------------------------------------------

// The mentorado's webhook endpoints (docs/api.md#webhooks): listed with
// their state and health, created, paused and resumed, deleted after a
// confirmation, with the last deliveries of one. The signing secret is in
// the API's answer to create and rotate only: it is shown once, then
// forgotten.
const WH_STATE = {
  active: () => t("wh.state.active"),
  paused: () => t("wh.state.paused"),
  disabled: () => t("wh.state.disabled"),
};
const WH_OUTCOME = {
  delivered: () => t("wh.outcome.delivered"),
  retry: () => t("wh.outcome.retry"),
  dead: () => t("wh.outcome.dead"),
  gone: () => t("wh.outcome.gone"),
  refused: () => t("wh.outcome.refused"),
};
const wh = {
  list: [], // endpoints as listed (GET /v1/webhooks)
  open: new Set(), // ids whose deliveries are shown
  deliveries: new Map(), // id → the last deliveries
  deleting: null, // the endpoint the delete dialog asks about
  timer: null,
};

// Answers can arrive out of order (a reload after a pause still in
// flight when the delete's reload returns): only the newest request's
// answer is rendered, so a deleted endpoint never comes back.
async function loadWebhooks() {
  const seq = (wh.loadSeq = (wh.loadSeq || 0) + 1);
  let r;
  try {
    r = await api("GET", "/v1/webhooks?limit=200");
  } catch (e) {
    if (seq === wh.loadSeq) showError("wh-error", e);
    return;
  }
  if (seq !== wh.loadSeq) return;
  wh.list = r.webhooks;
  for (const id of [...wh.open]) if (!wh.list.some((w) => w.id === id)) wh.open.delete(id);
  renderWebhooks();
  for (const id of wh.open) loadDeliveries(id);
}

// scheduleWebhooks reloads the list soon (a webhook event: an endpoint
// was paused or disabled by the dispatcher).
function scheduleWebhooks() {
  clearTimeout(wh.timer);
  wh.timer = setTimeout(loadWebhooks, 300);
}

function renderWebhooks() {
  $("wh-list").replaceChildren(...wh.list.map(webhookItem));
  $("wh-empty").hidden = wh.list.length > 0;
}

function webhookItem(w) {
  const li = el("li", "wh-item");
  li.dataset.id = String(w.id);
  li.dataset.state = w.state;
  const head = el("div", "wh-head");
  const badge = el("span", "badge wh-state", (WH_STATE[w.state] || (() => w.state))());
  badge.dataset.state = w.state;
  head.append(badge, el("span", "wh-url", w.url));
  li.append(head);
  if (w.description) li.append(el("p", "muted wh-desc", w.description));
  li.append(el("p", "muted wh-types-line", t("wh.events", { types: w.event_types.join(", ") })));
  li.append(el("p", "muted wh-health", webhookHealth(w)));

  const actions = el("div", "actions wh-actions");
  const pause = el("button", "secondary wh-pause", w.state === "active" ? t("wh.pause") : t("wh.resume"));
  pause.type = "button";
  pause.addEventListener("click", () => webhookAction(w, w.state === "active" ? "pause" : "resume"));
  const rotate = el("button", "secondary wh-rotate", t("wh.rotate"));
  rotate.type = "button";
  rotate.addEventListener("click", () => webhookAction(w, "rotate-secret"));
  const shown = wh.open.has(w.id);
  const log = el("button", "secondary wh-log", shown ? t("wh.hideDeliveries") : t("wh.showDeliveries"));
  log.type = "button";
  log.setAttribute("aria-expanded", String(shown));
  log.addEventListener("click", () => toggleDeliveries(w.id));
  const del = el("button", "danger wh-delete", t("wh.delete"));
  del.type = "button";
  del.addEventListener("click", () => {
    wh.deleting = w;
    $("wh-delete-url").textContent = w.url;
    $("wh-delete-dialog").showModal();
  });
  actions.append(pause, rotate, log, del);
  li.append(actions);
  if (shown) li.append(deliveryList(w.id));
  return li;
}

// webhookHealth says how the endpoint is doing: its state's reason, the
// current run of failures, the last success.
function webhookHealth(w) {
  const h = w.health || {};
  const parts = [];
  // The API's own reason is translated; the dispatcher's (automatic pause,
  // 410) show as they come.
  if (w.state !== "active" && w.state_reason) parts.push(w.state_reason === "paused by user" ? t("wh.pausedByUser") : w.state_reason);
  if (h.consecutive_failures > 0) {
    parts.push(t("wh.failing", { count: I18N.number(h.consecutive_failures), when: I18N.when(h.failing_since || h.last_failure_at, true) }));
  }
  parts.push(h.last_success_at ? t("wh.lastSuccess", { when: I18N.when(h.last_success_at, true) }) : t("wh.noSuccess"));
  return parts.join(" · ");
}

function deliveryList(id) {
  const box = el("div", "wh-deliveries");
  const list = wh.deliveries.get(id);
  if (!list) {
    box.append(el("p", "muted", t("wh.loading")));
    return box;
  }
  if (!list.length) {
    box.append(el("p", "muted", t("wh.noDeliveries")));
    return box;
  }
  const ol = el("ol", "wh-log-list");
  for (const d of list) {
    const row = el("li", "wh-delivery");
    row.dataset.outcome = d.outcome;
    row.dataset.delivery = d.delivery_id;
    const when = el("span", "when", I18N.when(d.attempted_at, true));
    when.title = I18N.full(d.attempted_at);
    const outcome = el("span", "badge wh-outcome", (WH_OUTCOME[d.outcome] || (() => d.outcome))());
    outcome.dataset.outcome = d.outcome;
    const detail = [d.event_type, t("wh.attempt", { n: I18N.number(d.attempt) })];
    if (d.status_code) detail.push("HTTP " + d.status_code);
    detail.push(t("wh.latency", { ms: I18N.number(d.latency_ms) }));
    row.append(when, outcome, el("span", "wh-detail", detail.join(" · ")));
    if (d.error) row.append(el("span", "wh-error-text", d.error));
    ol.append(row);
  }
  box.append(ol);
  return box;
}

async function loadDeliveries(id) {
  try {
    const r = await api("GET", "/v1/webhooks/" + id + "/deliveries?limit=20");
    if (!wh.open.has(id)) return; // closed or deleted meanwhile
    wh.deliveries.set(id, r.deliveries);
  } catch (e) {
    if (wh.open.has(id)) showError("wh-error", e);
    return;
  }
  renderWebhooks();
}

function toggleDeliveries(id) {
  if (wh.open.has(id)) {
    wh.open.delete(id);
  } else {
    wh.open.add(id);
    loadDeliveries(id);
  }
  renderWebhooks();
}

async function webhookAction(w, action) {
  showError("wh-error", null);
  try {
    const r = await api("POST", "/v1/webhooks/" + w.id + "/" + action);
    if (action === "rotate-secret") showSecret(r.secret);
  } catch (e) {
    showError("wh-error", e);
  }
  loadWebhooks();
}

async function createWebhook(ev) {
  ev.preventDefault();
  showError("wh-error", null);
  const types = [...document.querySelectorAll('#wh-types input[name="wh-type"]:checked')].map((c) => c.value);
  const body = { url: $("wh-url").value.trim(), event_types: types };
  const desc = $("wh-description").value.trim();
  if (desc) body.description = desc;
  $("wh-create").disabled = true;
  try {
    const r = await api("POST", "/v1/webhooks", body);
    showSecret(r.secret);
    $("wh-url").value = "";
    $("wh-description").value = "";
    $("wh-new").open = false;
  } catch (e) {
    showError("wh-error", e);
  } finally {
    $("wh-create").disabled = false;
  }
  loadWebhooks();
}

// showSecret shows a signing secret once; hiding it forgets it.
function showSecret(secret) {
  $("wh-secret").value = secret || "";
  $("wh-copied").hidden = true;
  $("wh-secret-box").hidden = !secret;
}

async function copySecret() {
  const input = $("wh-secret");
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch (e) {
    document.execCommand("copy"); // no clipboard API (plain http): the selection
  }
  $("wh-copied").hidden = false;
}

async function deleteWebhook(w) {
  showError("wh-error", null);
  try {
    await api("DELETE", "/v1/webhooks/" + w.id);
  } catch (e) {
    showError("wh-error", e);
  }
  wh.open.delete(w.id);
  wh.deliveries.delete(w.id);
  loadWebhooks();
}

// ---- language -------------------------------------------------------------

// relabel re-renders what script wrote, in the language just chosen.
function relabel() {
  $("lang").value = I18N.lang;
  renderStatus();
  renderConversations();
  renderHistory();
  renderWebhooks();
  renderCampaigns();
  renderProvider(); // provider.js
  if (state.chat) {
    $("thread-title").textContent = threadTitle();
    renderThread();
  }
  for (const [id, err] of Object.entries(state.errors)) if (err) $(id).textContent = I18N.error(err);
  setReply(state.replyTo);
  setFile(state.file);
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
    openThread(p + PHONE_JID, "");
    $("send-text").focus();
  });
  $("send-form").addEventListener("submit", send);
  $("attach-button").addEventListener("click", () => $("attach-input").click());
  $("attach-input").addEventListener("change", () => {
    const f = $("attach-input").files[0];
    $("attach-input").value = "";
    if (f) setFile(f);
  });
  $("attachment-remove").addEventListener("click", () => setFile(null));
  $("reply-cancel").addEventListener("click", () => setReply(null));
  $("send-text").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) send(ev);
    if (ev.key === "Escape") setReply(null);
  });
  $("wh-form").addEventListener("submit", createWebhook);
  $("wh-copy").addEventListener("click", copySecret);
  $("wh-secret-done").addEventListener("click", () => showSecret(""));
  $("wh-delete-dialog").addEventListener("close", () => {
    // "close" is dispatched as a task: a cancel's event can arrive after
    // the dialog was opened again for the next delete. It is stale then.
    if ($("wh-delete-dialog").open) return;
    const w = wh.deleting;
    wh.deleting = null;
    if (w && $("wh-delete-dialog").returnValue === "confirm") deleteWebhook(w);
  });
  if (state.token) signIn(state.token);
  else showApp(false);
});

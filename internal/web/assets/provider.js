// zapbus dashboard: the mentorado's WhatsApp provider (issue #16). It shares
// app.js's helpers ($, t, api, el, showError, state, shown) and is driven by
// it: app.js calls loadProvider on sign-in, renderProvider when the
// language changes, resetProvider on sign-out, activeProvider from the
// connection card (Meta has no QR code or pairing) and showTemplateForm when
// a send is refused with outside_window.
//
// GET /v1/whatsapp/provider says which provider is active and, for Meta
// and Z-API, the number's non-secret settings and the health of the
// provider's webhooks; credentials are never in it.
"use strict";

const prov = {
  info: null, // GET /v1/whatsapp/provider, null until loaded (or when it failed)
  seq: 0,
  timer: null,
};

const PROV_NAME = {
  meta: () => t("prov.name.meta"),
  whatsapp_web: () => t("prov.name.whatsapp_web"),
  zapi: () => t("prov.name.zapi"),
};

// activeProvider is the provider the number runs on: meta, whatsapp_web or
// zapi; "" while unknown. None configured is the connector, WhatsApp Web.
function activeProvider() {
  if (!prov.info) return "";
  return prov.info.active || "whatsapp_web";
}

function activeProviderRow() {
  return (prov.info && (prov.info.providers || []).find((p) => p.active)) || null;
}

// loadProvider reads the provider and re-renders what depends on it. Only
// the newest request's answer is used; a failure keeps what was shown.
async function loadProvider() {
  const seq = ++prov.seq;
  let r;
  try {
    r = await api("GET", "/v1/whatsapp/provider");
  } catch (e) {
    return;
  }
  if (seq !== prov.seq || !state.token) return;
  prov.info = r;
  renderProvider();
  renderStatus(); // app.js: the controls depend on the provider
}

// noteProviderActivity refreshes the webhook health a while after live
// events that came through a provider's webhook (at most every 5 s).
function noteProviderActivity() {
  const p = activeProvider();
  if ((p !== "meta" && p !== "zapi") || prov.timer) return;
  prov.timer = setTimeout(() => {
    prov.timer = null;
    loadProvider();
  }, 5000);
}

function resetProvider() {
  prov.seq++;
  prov.info = null;
  clearTimeout(prov.timer);
  prov.timer = null;
  showTemplateForm(false);
  renderProvider();
}

function providerField(field, term, value, cls, title) {
  const div = el("div", "provider-field");
  div.dataset.field = field;
  const dd = el("dd", cls || "", value);
  if (title) dd.title = title;
  div.append(el("dt", "", term), dd);
  return div;
}

function renderProvider() {
  const p = activeProvider();
  const box = $("provider");
  box.hidden = !p;
  box.dataset.provider = p;
  $("tpl-open").hidden = !canSendTemplate() || !$("tpl-form").hidden;
  if (!p) {
    $("provider-info").replaceChildren();
    return;
  }
  const badge = $("provider-badge");
  badge.textContent = (PROV_NAME[p] || (() => p))();
  badge.dataset.provider = p;
  const row = activeProviderRow();
  const s = (row && row.settings) || {};
  const fields = [];
  if (p === "meta") {
    // The number: as written locally when Meta told its digits, else the
    // Cloud API's id for it.
    const number = s.display_phone ? I18N.phone(s.display_phone)
      : s.phone_number_id ? t("prov.numberId", { id: s.phone_number_id }) : t("prov.unknown");
    fields.push(providerField("number", t("prov.number"), number, "", s.phone_number_id ? t("prov.numberId", { id: s.phone_number_id }) : ""));
    fields.push(providerField("waba", t("prov.waba"), s.waba_id || t("prov.unknown")));
  } else if (p === "zapi") {
    fields.push(providerField("instance", t("prov.instance"), s.instance_id || t("prov.unknown")));
  }
  if (row && row.webhook) {
    const w = row.webhook;
    fields.push(providerField("webhook-last", t("prov.webhookLast"),
      w.last_at ? I18N.when(w.last_at, true) : t("prov.webhookNever"), w.last_at ? "" : "muted", w.last_at ? I18N.full(w.last_at) : ""));
    if (w.last_error) {
      // Still failing when the refusal is newer than the last success.
      const current = !w.last_at || (w.last_error_at && new Date(w.last_error_at) >= new Date(w.last_at));
      const text = w.last_error_at ? t("prov.webhookErrorAt", { error: w.last_error, when: I18N.when(w.last_error_at, true) }) : w.last_error;
      const f = providerField("webhook-error", t("prov.webhookError"), text, current ? "error" : "muted", w.last_error_at ? I18N.full(w.last_error_at) : "");
      f.dataset.current = String(!!current);
      fields.push(f);
    }
  }
  $("provider-info").replaceChildren(...fields);
}

// ---- template sends (Meta) ---------------------------------------------------

// canSendTemplate: a chat is open and the number is on Meta, the only
// provider with message templates.
function canSendTemplate() {
  return activeProvider() === "meta" && !!state.chat;
}

// showTemplateForm opens (or closes) the template form under the send box.
function showTemplateForm(on) {
  $("tpl-form").hidden = !on;
  $("tpl-open").hidden = on || !canSendTemplate();
  if (on) $("tpl-name").focus();
}

// templateParams are the form's parameters, one per line (blank lines
// left out).
function templateParams() {
  return $("tpl-params").value.split("\n").map((l) => l.replace(/\r$/, "")).filter((l) => l.trim() !== "");
}

async function sendTemplate(ev) {
  ev.preventDefault();
  const chat = state.chat;
  if (!chat) return;
  const template = { name: $("tpl-name").value.trim(), language: $("tpl-language").value.trim() || "pt_BR" };
  const params = templateParams();
  if (params.length) template.params = params;
  const to = state.phone ? { phone: state.phone } : { chat };
  showError("send-error", null);
  $("tpl-send").disabled = true;
  try {
    const r = await api("POST", "/v1/messages", { ...to, kind: "template", template, client_id: crypto.randomUUID() });
    $("tpl-name").value = "";
    $("tpl-params").value = "";
    showTemplateForm(false);
    shown(r.message || r, chat);
  } catch (e) {
    showError("send-error", e);
  } finally {
    $("tpl-send").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("verify").addEventListener("click", async () => {
    // Meta has no pairing: connect checks the credentials and reports.
    await command("/v1/whatsapp/connect", { method: "qr" });
    loadProvider();
  });
  $("tpl-open").addEventListener("click", () => showTemplateForm(true));
  $("tpl-cancel").addEventListener("click", () => showTemplateForm(false));
  $("tpl-form").addEventListener("submit", sendTemplate);
});

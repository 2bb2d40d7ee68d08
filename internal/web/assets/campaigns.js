// zapbus dashboard: the campaigns card (issue #14). It shares app.js's
// helpers ($, t, api, el, showError) and is driven by it: app.js calls
// loadCampaigns on sign-in, onCampaignEvent and loadSending on the live
// stream's campaign and sending events, renderCampaigns when the language
// changes and resetCampaigns on sign-out.
"use strict";

const camp = {
  list: [], // GET /v1/campaigns, newest first
  open: new Set(), // campaign ids whose recipients are shown
  recipients: new Map(), // id → recipients as last loaded
  sending: null, // GET /v1/sending
  timer: null,
  rcptTimers: new Map(),
};

const CAMP_STATE = {
  draft: () => t("camp.state.draft"),
  scheduled: () => t("camp.state.scheduled"),
  running: () => t("camp.state.running"),
  paused: () => t("camp.state.paused"),
  completed: () => t("camp.state.completed"),
  cancelled: () => t("camp.state.cancelled"),
};
const RCPT_STATUS = {
  pending: () => t("camp.rcpt.pending"),
  sending: () => t("camp.rcpt.sending"),
  sent: () => t("camp.rcpt.sent"),
  delivered: () => t("camp.rcpt.delivered"),
  read: () => t("camp.rcpt.read"),
  played: () => t("camp.rcpt.played"),
  failed: () => t("camp.rcpt.failed"),
  skipped: () => t("camp.rcpt.skipped"),
  cancelled: () => t("camp.rcpt.cancelled"),
};
const CAMP_REASON = {
  user: () => t("camp.reason.user"),
  temporary_ban: () => t("camp.reason.temporary_ban"),
  send_errors: () => t("camp.reason.send_errors"),
  opted_out: () => t("camp.reason.opted_out"),
  not_on_whatsapp: () => t("camp.reason.not_on_whatsapp"),
  duplicate: () => t("camp.reason.duplicate"),
};
const label = (table, key) => (table[key] || (() => key))();

// Answers can arrive out of order: only the newest request's is rendered.
async function loadCampaigns() {
  const seq = (camp.loadSeq = (camp.loadSeq || 0) + 1);
  let r;
  try {
    r = await api("GET", "/v1/campaigns?limit=50");
  } catch (e) {
    if (seq === camp.loadSeq) showError("camp-error", e);
    return;
  }
  if (seq !== camp.loadSeq) return;
  camp.list = r.campaigns;
  for (const id of [...camp.open]) if (!camp.list.some((c) => c.id === id)) camp.open.delete(id);
  renderCampaigns();
  for (const id of camp.open) loadRecipients(id);
  loadSending();
}

function scheduleCampaigns() {
  clearTimeout(camp.timer);
  camp.timer = setTimeout(loadCampaigns, 300);
}

async function loadSending() {
  try {
    camp.sending = await api("GET", "/v1/sending");
  } catch (e) {
    return;
  }
  renderBulk();
}

function renderBulk() {
  const s = camp.sending;
  const paused = !!(s && s.bulk && s.bulk.state === "paused");
  $("camp-bulk").hidden = !paused;
  $("camp-bulk-text").textContent = paused ? t("camp.bulkPaused", { reason: label(CAMP_REASON, s.bulk.reason) }) : "";
}

// onCampaignEvent applies a campaign event (its state and counts) to the
// campaign shown; one the page does not know yet reloads the list.
function onCampaignEvent(d) {
  const c = camp.list.find((x) => x.id === d.campaign_id);
  if (!c) {
    scheduleCampaigns();
    return;
  }
  c.state = d.state;
  c.counts = d.counts;
  c.pause_reason = d.state === "paused" ? d.reason || c.pause_reason : "";
  const li = document.querySelector('#camp-list li[data-id="' + d.campaign_id + '"]');
  if (li) li.replaceWith(campaignItem(c));
  if (camp.open.has(c.id)) {
    clearTimeout(camp.rcptTimers.get(c.id));
    camp.rcptTimers.set(c.id, setTimeout(() => loadRecipients(c.id), 300));
  }
}

function resetCampaigns() {
  camp.list = [];
  camp.open.clear();
  camp.recipients.clear();
  camp.sending = null;
  renderCampaigns();
}

function renderCampaigns() {
  $("camp-list").replaceChildren(...camp.list.map(campaignItem));
  $("camp-empty").hidden = camp.list.length > 0;
  renderBulk();
}

// done counts the recipients the campaign is through with.
function doneOf(c) {
  const n = c.counts || {};
  return (n.sent || 0) + (n.skipped || 0) + (n.failed || 0);
}

function campaignItem(c) {
  const li = el("li", "wh-item camp-item");
  li.dataset.id = String(c.id);
  li.dataset.state = c.state;
  const head = el("div", "wh-head");
  const badge = el("span", "badge wh-state camp-state", label(CAMP_STATE, c.state));
  badge.dataset.state = c.state;
  head.append(badge, el("span", "camp-name", c.name));
  li.append(head);

  const n = c.counts || {};
  const total = n.total || 0;
  const done = doneOf(c);
  const bar = el("progress", "camp-progress");
  bar.max = Math.max(total, 1);
  bar.value = Math.min(done, bar.max);
  bar.dataset.done = String(done);
  bar.dataset.total = String(total);
  bar.setAttribute("aria-label", t("camp.progressLabel", { name: c.name }));
  li.append(bar);
  li.append(el("p", "muted camp-counts", t("camp.counts", {
    done, total, sent: n.sent || 0, delivered: n.delivered || 0, read: n.read || 0,
    failed: n.failed || 0, skipped: n.skipped || 0,
  })));
  if (c.state === "paused" && c.pause_reason) li.append(el("p", "muted camp-reason", t("camp.pausedBecause", { reason: label(CAMP_REASON, c.pause_reason) })));
  if (c.start_at && (c.state === "scheduled" || c.state === "draft")) li.append(el("p", "muted camp-start", t("camp.startsAt", { when: I18N.full(c.start_at) })));

  const actions = el("div", "actions wh-actions");
  const button = (cls, text, fn) => {
    const b = el("button", cls, text);
    b.type = "button";
    b.addEventListener("click", fn);
    actions.append(b);
  };
  if (c.state === "draft") button("secondary camp-schedule", t("camp.schedule"), () => campaignAction(c, "schedule"));
  if (c.state === "scheduled" || c.state === "running") button("secondary camp-pause", t("camp.pause"), () => campaignAction(c, "pause"));
  if (c.state === "paused") button("secondary camp-resume", t("camp.resume"), () => campaignAction(c, "resume"));
  if (c.state !== "completed" && c.state !== "cancelled") button("danger camp-cancel", t("camp.cancel"), () => campaignAction(c, "cancel"));
  if (c.state === "draft" || c.state === "completed" || c.state === "cancelled") button("danger camp-delete", t("camp.delete"), () => deleteCampaign(c));
  const shown = camp.open.has(c.id);
  button("secondary camp-show", shown ? t("camp.hideRecipients") : t("camp.showRecipients"), () => toggleRecipients(c.id));
  li.append(actions);
  if (shown) li.append(recipientTable(c.id));
  return li;
}

function recipientTable(id) {
  const rs = camp.recipients.get(id);
  if (!rs) return el("p", "muted camp-loading", t("camp.loading"));
  if (!rs.length) return el("p", "muted", t("camp.noRecipients"));
  const table = el("table", "camp-recipients");
  const head = el("tr");
  head.append(el("th", "", t("camp.col.phone")), el("th", "", t("camp.col.name")), el("th", "", t("camp.col.status")));
  table.append(head);
  for (const r of rs) {
    const tr = el("tr", "camp-rcpt");
    tr.dataset.status = r.status;
    tr.append(el("td", "", I18N.phone(r.phone)), el("td", "", r.name || ""));
    const st = el("td", "camp-rcpt-status", label(RCPT_STATUS, r.status));
    if (r.reason) st.title = label(CAMP_REASON, r.reason);
    tr.append(st);
    table.append(tr);
  }
  return table;
}

async function loadRecipients(id) {
  let r;
  try {
    r = await api("GET", "/v1/campaigns/" + id + "/recipients?limit=200");
  } catch (e) {
    showError("camp-error", e);
    return;
  }
  camp.recipients.set(id, r.recipients);
  const li = document.querySelector('#camp-list li[data-id="' + id + '"]');
  const c = camp.list.find((x) => x.id === id);
  if (li && c) li.replaceWith(campaignItem(c));
}

function toggleRecipients(id) {
  if (camp.open.has(id)) {
    camp.open.delete(id);
  } else {
    camp.open.add(id);
    loadRecipients(id);
  }
  renderCampaigns();
}

async function campaignAction(c, action) {
  showError("camp-error", null);
  try {
    await api("POST", "/v1/campaigns/" + c.id + "/" + action);
  } catch (e) {
    showError("camp-error", e);
  }
  loadCampaigns();
}

async function deleteCampaign(c) {
  showError("camp-error", null);
  try {
    await api("DELETE", "/v1/campaigns/" + c.id);
  } catch (e) {
    showError("camp-error", e);
  }
  camp.open.delete(c.id);
  camp.recipients.delete(c.id);
  loadCampaigns();
}

async function resumeBulk() {
  showError("camp-error", null);
  try {
    await api("POST", "/v1/sending/resume");
  } catch (e) {
    showError("camp-error", e);
  }
  loadCampaigns();
}

function campaignTo() {
  const filter = $("camp-to-filter").checked;
  $("camp-phones").hidden = filter;
  $("camp-filter").hidden = !filter;
}

async function createCampaign(ev) {
  ev.preventDefault();
  showError("camp-error", null);
  const body = {
    name: $("camp-name").value.trim(),
    message: { kind: "text", text: $("camp-text").value },
    pacing: $("camp-pacing").value,
  };
  if ($("camp-to-filter").checked) {
    const f = {};
    if ($("camp-tag").value.trim()) f.tag = $("camp-tag").value.trim();
    if ($("camp-status").value.trim()) f.status = $("camp-status").value.trim();
    body.recipients = { lead_filter: f };
  } else {
    body.recipients = { phones: $("camp-phones").value.split(/[\n,;]+/).map((p) => p.trim()).filter(Boolean) };
  }
  if ($("camp-start").value) body.start_at = new Date($("camp-start").value).toISOString();
  if ($("camp-draft").checked) body.draft = true;
  $("camp-create").disabled = true;
  try {
    await api("POST", "/v1/campaigns", body);
    for (const id of ["camp-name", "camp-text", "camp-phones", "camp-tag", "camp-status", "camp-start"]) $(id).value = "";
    $("camp-draft").checked = false;
    $("camp-new").open = false;
  } catch (e) {
    showError("camp-error", e);
  } finally {
    $("camp-create").disabled = false;
  }
  loadCampaigns();
}

document.addEventListener("DOMContentLoaded", () => {
  $("camp-form").addEventListener("submit", createCampaign);
  $("camp-to-phones").addEventListener("change", campaignTo);
  $("camp-to-filter").addEventListener("change", campaignTo);
  $("camp-bulk-resume").addEventListener("click", resumeBulk);
});

-- Sending at scale (issue #14, docs/decisions/0020-outbox-pacing-campaigns.md):
-- a durable per-mentorado outbox, per-number pacing settings, campaigns and
-- opt-outs. The connector that owns a mentorado's session is the only
-- writer of that mentorado's outbox and recipient send states (the lease
-- makes it one process); the notifier writes campaigns, recipients and
-- settings; the persister writes opt-outs from inbound replies.

-- A mentorado's sending settings: overrides of the defaults
-- (internal/outbound.Defaults), bounded by the operator's maxima. No row
-- means the defaults. bulk_paused_* is set when a temporary ban or a burst
-- of send errors paused bulk sending, and cleared by resuming.
CREATE TABLE send_settings (
    mentorado_id       bigint PRIMARY KEY REFERENCES mentorados (id) ON DELETE CASCADE,
    settings           jsonb NOT NULL DEFAULT '{}',
    bulk_paused_at     timestamptz,
    bulk_paused_reason text,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The outbox: sends accepted while the session could not send them at once
-- (connecting, in backoff, paced, or behind earlier queued sends), in order
-- per mentorado (id). wa_message_id is chosen when queued, so the message
-- has one id from the queued row in the thread to its receipts, and a send
-- retried after a crash reuses it (the phone shows a repeated id once).
-- state: queued → sending → sent, or expired / failed (reason).
CREATE TABLE outbox (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    wa_message_id  text NOT NULL,
    client_id      text,
    request        jsonb NOT NULL, -- event.SendRequest
    state          text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sending', 'sent', 'expired', 'failed')),
    reason         text,
    attempts       int NOT NULL DEFAULT 0,
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    UNIQUE (mentorado_id, wa_message_id)
);
CREATE UNIQUE INDEX outbox_client_id ON outbox (mentorado_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX outbox_pending ON outbox (mentorado_id, id) WHERE state IN ('queued', 'sending');
CREATE INDEX outbox_expiry ON outbox (expires_at) WHERE state = 'queued';

-- Campaigns: one message to many recipients, paced as bulk.
-- state: draft → scheduled → running ↔ paused → completed | cancelled.
CREATE TABLE campaigns (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentorado_id  bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    name          text NOT NULL,
    state         text NOT NULL CHECK (state IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
    message       jsonb NOT NULL, -- store.CampaignMessage
    pacing        jsonb NOT NULL, -- outbound.Pacing, resolved when created
    source        jsonb NOT NULL DEFAULT '{}', -- how recipients were chosen (phones or a lead filter)
    start_at      timestamptz,
    pause_reason  text,
    total         int NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    -- The counts the last campaign event carried (the persister's progress
    -- reporter publishes when they change).
    published     jsonb
);
CREATE INDEX campaigns_mentorado ON campaigns (mentorado_id, id DESC);
CREATE INDEX campaigns_active ON campaigns (mentorado_id, id) WHERE state IN ('scheduled', 'running');

-- One row per recipient of a campaign, one per phone (normalised E.164
-- digits). text is the message rendered for this recipient when the
-- campaign was created. state: pending → sending → sent, or skipped
-- (opted_out, not_on_whatsapp, duplicate), failed, cancelled (reason).
-- Delivered and read come from the message's row (wa_message_id).
CREATE TABLE campaign_recipients (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id    bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    phone          text NOT NULL,
    lead_id        bigint REFERENCES leads (id) ON DELETE SET NULL,
    name           text NOT NULL DEFAULT '',
    text           text NOT NULL DEFAULT '',
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'skipped', 'failed', 'cancelled')),
    reason         text,
    wa_message_id  text,
    jid            text, -- the WhatsApp JID the phone resolved to
    attempts       int NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    UNIQUE (campaign_id, phone)
);
CREATE INDEX campaign_recipients_next ON campaign_recipients (campaign_id, id) WHERE state IN ('pending', 'sending');
CREATE UNIQUE INDEX campaign_recipients_wa ON campaign_recipients (mentorado_id, wa_message_id) WHERE wa_message_id IS NOT NULL;
CREATE INDEX campaign_recipients_jid ON campaign_recipients (campaign_id, jid) WHERE jid IS NOT NULL;

-- Contacts who asked not to receive bulk messages: by an inbound reply
-- matching the mentorado's opt-out keywords (source keyword), or through
-- the API (source api). Every later campaign skips them.
CREATE TABLE opt_outs (
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    phone          text NOT NULL,
    source         text NOT NULL CHECK (source IN ('keyword', 'api')),
    keyword        text,
    wa_message_id  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, phone)
);

-- Unsolicited sends (to someone who has not written in the last 24 h) per
-- mentorado and UTC day, against the daily cap. The session's pacer
-- counts in memory and writes through, so a restart keeps the count.
CREATE TABLE send_counters (
    mentorado_id  bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    day           date NOT NULL,
    unsolicited   int NOT NULL DEFAULT 0,
    PRIMARY KEY (mentorado_id, day)
);

-- Why an outbound message failed or expired, shown in the thread.
ALTER TABLE whatsapp_messages ADD COLUMN status_reason text;

-- zapbus core schema.

CREATE TABLE mentorados (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- SHA-256 of the API token; the token itself is shown once and never stored.
    token_hash        bytea UNIQUE,
    token_created_at  timestamptz,
    wa_status         text NOT NULL DEFAULT 'disconnected',
    wa_phone          text,
    wa_jid            text,
    wa_reason         text,
    -- Version of the stored status: the event time and JetStream sequence of
    -- the connection event it came from. Older events never overwrite newer.
    wa_status_at      timestamptz,
    wa_status_seq     bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- The connector's own table: which whatsmeow device serves a mentorado and
-- whether it should be connected (restored at start-up).
CREATE TABLE wa_devices (
    mentorado_id   bigint PRIMARY KEY REFERENCES mentorados (id) ON DELETE CASCADE,
    device_jid     text UNIQUE,
    phone          text,
    desired_state  text NOT NULL DEFAULT 'disconnected'
                   CHECK (desired_state IN ('connected', 'disconnected')),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- One number, one mentorado.
CREATE UNIQUE INDEX wa_devices_phone_key ON wa_devices (phone) WHERE phone IS NOT NULL;
CREATE INDEX wa_devices_desired ON wa_devices (desired_state) WHERE desired_state = 'connected';

CREATE TABLE leads (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentorado_id  bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    -- E.164 digits; NULL while only the WhatsApp LID of the person is known.
    phone         text,
    lid           text,
    name          text NOT NULL DEFAULT '',
    source        text NOT NULL DEFAULT 'whatsapp',
    stage         text NOT NULL DEFAULT 'new',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (phone IS NOT NULL OR lid IS NOT NULL),
    UNIQUE (mentorado_id, phone)
);
CREATE UNIQUE INDEX leads_lid_key ON leads (mentorado_id, lid) WHERE lid IS NOT NULL AND phone IS NULL;

CREATE TABLE whatsapp_messages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    wa_message_id  text NOT NULL,
    chat_jid       text NOT NULL,
    sender_jid     text NOT NULL,
    -- Counterpart: E.164 digits when known, LID otherwise (or both).
    phone          text,
    lid            text,
    push_name      text NOT NULL DEFAULT '',
    direction      text NOT NULL CHECK (direction IN ('in', 'out')),
    kind           text NOT NULL,
    body           text NOT NULL DEFAULT '',
    caption        text NOT NULL DEFAULT '',
    reply_to_id    text,
    target_id      text,
    status         text NOT NULL,
    -- pending 0, sent/received 1, delivered 2, read 3, played 4, failed 9.
    status_rank    smallint NOT NULL,
    edited         boolean NOT NULL DEFAULT false,
    revoked        boolean NOT NULL DEFAULT false,
    lead_id        bigint REFERENCES leads (id) ON DELETE SET NULL,
    sent_at        timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mentorado_id, wa_message_id)
);
-- Messages of one conversation, newest first (keyset pagination).
CREATE INDEX whatsapp_messages_phone ON whatsapp_messages (mentorado_id, phone, sent_at DESC, id DESC);
-- Conversations ordered by last message.
CREATE INDEX whatsapp_messages_recent ON whatsapp_messages (mentorado_id, sent_at DESC, id DESC);
CREATE INDEX whatsapp_messages_orphans ON whatsapp_messages (mentorado_id, phone) WHERE lead_id IS NULL;
CREATE INDEX whatsapp_messages_lead ON whatsapp_messages (lead_id);

-- Receipts that arrived before their message; applied when it lands.
CREATE TABLE whatsapp_pending_receipts (
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    wa_message_id  text NOT NULL,
    status         text NOT NULL,
    status_rank    smallint NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, wa_message_id)
);

CREATE TABLE whatsapp_contacts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    jid            text NOT NULL,
    phone          text,
    lid            text,
    name           text NOT NULL DEFAULT '',
    push_name      text NOT NULL DEFAULT '',
    business_name  text NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mentorado_id, jid)
);
CREATE INDEX whatsapp_contacts_phone ON whatsapp_contacts (mentorado_id, phone) WHERE phone IS NOT NULL;
CREATE INDEX whatsapp_contacts_lid ON whatsapp_contacts (mentorado_id, lid) WHERE lid IS NOT NULL;

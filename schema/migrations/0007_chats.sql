-- Chats, groups, history and lead events (issue #12).

-- The chat a message belongs to, derived from what the row says so that it
-- follows every merge: the group for group messages; for direct messages
-- the person's phone JID when the phone is known, else their LID. When the
-- persister learns a LID's phone it sets the rows' phone, and their chat
-- moves from <lid> to <phone>@s.whatsapp.net with it: one thread, one
-- unread count. Outbound messages to a broadcast list keep their chat_jid.
ALTER TABLE whatsapp_messages
    ADD COLUMN chat text GENERATED ALWAYS AS (
        CASE
            WHEN chat_jid LIKE '%@g.us' THEN chat_jid
            WHEN phone IS NOT NULL THEN phone || '@s.whatsapp.net'
            WHEN lid IS NOT NULL THEN lid
            ELSE chat_jid
        END) STORED,
    -- Imported from the phone's history sync (event.Message.History).
    ADD COLUMN history boolean NOT NULL DEFAULT false;
-- Threads by chat, newest first (keyset pagination), and the chat list.
CREATE INDEX whatsapp_messages_chat ON whatsapp_messages (mentorado_id, chat, sent_at DESC, id DESC);

-- Groups the mentorado's number is (or was) in: the newest snapshot of a
-- group event, versioned like contact names (occurred_at, stream seq).
CREATE TABLE whatsapp_groups (
    mentorado_id  bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    jid           text NOT NULL,
    subject       text NOT NULL DEFAULT '',
    topic         text NOT NULL DEFAULT '',
    -- [{"jid":…,"phone":…,"lid":…,"admin":true}] as in the group event.
    participants  jsonb NOT NULL DEFAULT '[]',
    "left"        boolean NOT NULL DEFAULT false,
    info_at       timestamptz,
    info_seq      bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, jid)
);

-- Per-mentorado settings of lead creation (docs/api.md#settings).
ALTER TABLE mentorados
    -- Group messages create leads for their senders (default: never).
    ADD COLUMN group_leads boolean NOT NULL DEFAULT false,
    -- History messages create leads: none, recent (direct chats with an
    -- inbound message in the last history_lead_days days before the
    -- sync), all.
    ADD COLUMN history_leads text NOT NULL DEFAULT 'recent'
        CHECK (history_leads IN ('none', 'recent', 'all')),
    ADD COLUMN history_lead_days integer NOT NULL DEFAULT 30
        CHECK (history_lead_days BETWEEN 1 AND 3650);

-- Where a lead's name came from: crm (set outside zapbus: never
-- replaced), address_book, push, business. NULL on rows written before
-- this migration: read as crm when name_at is NULL and the name is set
-- (the old rule), as push when name_at is set.
ALTER TABLE leads ADD COLUMN name_source text
    CHECK (name_source IN ('crm', 'address_book', 'push', 'business'));
UPDATE leads SET name_source = CASE WHEN name_at IS NOT NULL THEN 'push' WHEN name <> '' THEN 'crm' END;

-- Lead events waiting to be published (transactional outbox): the
-- persister writes them in the transaction that changed the lead and
-- publishes them after it commits, then deletes them; rows left by a crash
-- are published again at start-up (ids are deterministic: duplicates are
-- dropped by JetStream).
CREATE TABLE lead_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentorado_id  bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    event_id      text NOT NULL,      -- envelope id and Nats-Msg-Id
    occurred_at   timestamptz NOT NULL,
    data          jsonb NOT NULL,     -- event.Lead
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mentorado_id, event_id)
);

-- The connector's history sync queue: one row per history notification
-- until its chunk is published. It holds what decrypts the blob (media
-- key, direct path), so like media_downloads it lives next to whatsmeow's
-- keys, never on a subject.
CREATE TABLE history_syncs (
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    wa_message_id  text NOT NULL,     -- the notification message
    notification   bytea NOT NULL,    -- serialized waE2E.HistorySyncNotification
    synced_at      timestamptz NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    next_at        timestamptz NOT NULL DEFAULT now(),
    locked_until   timestamptz,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, wa_message_id)
);
CREATE INDEX history_syncs_due ON history_syncs (mentorado_id, next_at);

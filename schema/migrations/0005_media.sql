-- Media (issue #11): file metadata on the message row, the connector's
-- durable download queue, and the per-tenant ledger of stored files.

-- What the message event says about its file, and what became of it.
-- media_state is NULL for messages without a file, else pending (message
-- stored, file not yet), stored or failed (media event).
ALTER TABLE whatsapp_messages
    ADD COLUMN media_id        text,
    ADD COLUMN media_mime      text,
    ADD COLUMN media_size      bigint,
    ADD COLUMN media_file_name text,
    ADD COLUMN media_seconds   integer,
    ADD COLUMN media_width     integer,
    ADD COLUMN media_height    integer,
    ADD COLUMN media_round     boolean NOT NULL DEFAULT false,
    ADD COLUMN media_thumbnail bytea,
    ADD COLUMN media_state     text,
    ADD COLUMN media_error     text;

-- The connector's download queue: one row per received media message
-- until its file is stored or failed for good. It holds what decrypts the
-- file (the downloadable WhatsApp message: media key, direct path, hashes)
-- and so lives here, next to whatsmeow's Signal keys, never on a NATS
-- subject (docs/decisions/0011-media.md).
CREATE TABLE media_downloads (
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    wa_message_id  text NOT NULL,
    chat_jid       text NOT NULL,
    kind           text NOT NULL,
    media_id       text NOT NULL,
    message        bytea NOT NULL, -- serialized waE2E.Message holding the media
    source         jsonb NOT NULL, -- chat, sender, from_me, is_group: for a re-upload request
    attempts       integer NOT NULL DEFAULT 0,
    next_at        timestamptz NOT NULL DEFAULT now(),
    locked_until   timestamptz,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, wa_message_id)
);
CREATE INDEX media_downloads_due ON media_downloads (mentorado_id, next_at);

-- Every file in the media store, per tenant: storage accounting (metrics)
-- and what to delete with a tenant.
CREATE TABLE media_objects (
    mentorado_id bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    media_id     text NOT NULL,
    size         bigint NOT NULL,
    mime         text NOT NULL,
    origin       text NOT NULL, -- download | upload
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, media_id)
);

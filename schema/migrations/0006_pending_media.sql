-- Media events (issue #11) that arrived before their message; applied
-- (and removed) when the message lands, like whatsapp_pending_receipts.
-- state_rank orders the states so a redelivered or replayed event never
-- moves a file back: pending 0 (the message row only), failed 1, stored 2.
CREATE TABLE whatsapp_pending_media (
    mentorado_id   bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    wa_message_id  text NOT NULL,
    state          text NOT NULL CHECK (state IN ('stored', 'failed')),
    state_rank     smallint NOT NULL,
    media_size     bigint,
    media_error    text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, wa_message_id)
);

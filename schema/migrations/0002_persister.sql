-- zapbus persister: LID mapping memory and the indexes its set-based
-- statements need.

-- What the persister has learned about WhatsApp LIDs: the phone number behind
-- each (first mapping wins). A contact or message carrying both a LID and a
-- phone records it; later events carrying only the LID resolve through it, so
-- a person is one lead and one contact, whatever order the events arrive in.
CREATE TABLE whatsapp_lid_phones (
    mentorado_id  bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    lid           text NOT NULL,
    phone         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, lid)
);

-- Edits, revokes and reactions by the message they apply to.
CREATE INDEX whatsapp_messages_target ON whatsapp_messages (mentorado_id, target_id)
    WHERE target_id IS NOT NULL;
-- Messages whose counterpart is only known by LID (filled when the phone is learned).
CREATE INDEX whatsapp_messages_lid_only ON whatsapp_messages (mentorado_id, lid)
    WHERE phone IS NULL AND lid IS NOT NULL;

-- Version of the stored phone and JID: the newest connection event that
-- carried a phone, so an older event (or one without a phone) never
-- replaces a newer number, whatever order events are applied in.
ALTER TABLE mentorados
    ADD COLUMN wa_phone_at  timestamptz,
    ADD COLUMN wa_phone_seq bigint NOT NULL DEFAULT 0;

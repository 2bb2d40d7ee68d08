-- Versions of the names zapbus learns from WhatsApp, so that an older fact
-- applied late (a batch redelivered after AckWait, a replay, partitioned
-- persisters) never replaces a newer one: every field converges to the
-- same value whatever order events are applied in.
--
-- A version is (occurred_at of the event, its stream sequence), compared as
-- a pair; NULL means "no version" and loses to any versioned fact.
--
-- Contacts: each name follows its newest fact (an empty value in an event
-- means "not carried" and never erases).
ALTER TABLE whatsapp_contacts
    ADD COLUMN name_at           timestamptz,
    ADD COLUMN name_seq          bigint NOT NULL DEFAULT 0,
    ADD COLUMN push_name_at      timestamptz,
    ADD COLUMN push_name_seq     bigint NOT NULL DEFAULT 0,
    ADD COLUMN business_name_at  timestamptz,
    ADD COLUMN business_name_seq bigint NOT NULL DEFAULT 0;

-- Leads: the name is the push name of the earliest inbound message that
-- carried one. A lead named outside zapbus (name set, name_at NULL) keeps
-- its name.
ALTER TABLE leads
    ADD COLUMN name_at  timestamptz,
    ADD COLUMN name_seq bigint NOT NULL DEFAULT 0;

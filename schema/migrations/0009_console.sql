-- The operator console (issue #13, docs/decisions/0019-operator-console.md)
-- shows each mentorado's unread count: inbound messages not read yet, as
-- the chats API counts them (internal/store/chats.go). Only unread rows are
-- in this index, so counting them for 200 mentorados reads only those rows,
-- not every message of every tenant. The chat column serves the chats'
-- per-chat count as well.
CREATE INDEX whatsapp_messages_unread ON whatsapp_messages (mentorado_id, chat)
    WHERE direction = 'in' AND status_rank < 3 AND NOT revoked AND kind NOT IN ('edit', 'revoke', 'reaction');

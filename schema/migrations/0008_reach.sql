-- Reach (issue #13): webhooks, the CRM's leads API and the operator
-- console. docs/decisions/0017-webhooks.md explains the webhook tables.

-- A webhook endpoint. mentorado_id NULL is an admin-level endpoint that
-- receives the events of every mentorado. Each endpoint is one durable
-- JetStream consumer on WA_EVENTS (named by internal/webhook), created by
-- the dispatcher from this row: from start_seq when set, else from
-- start_time. Bumping generation makes the dispatcher recreate the
-- consumer from the current start_* (redeliver from an id or a time).
CREATE TABLE webhooks (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentorado_id          bigint REFERENCES mentorados (id) ON DELETE CASCADE,
    url                   text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description           text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    -- Event types delivered (event.Type values); never empty.
    event_types           text[] NOT NULL CHECK (cardinality(event_types) > 0),
    -- Signing secret, "whsec_" + base64 of 32 random bytes (Standard
    -- Webhooks). Kept so it can sign; shown by the API only when created
    -- or rotated. After a rotation the previous secret also signs until
    -- previous_secret_until, so receivers can switch without a gap.
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    -- active: delivering; paused: by the user or automatically after
    -- failing continuously (state_reason says which); disabled: the
    -- receiver answered 410 Gone. Paused and disabled endpoints keep their
    -- consumer: resuming delivers what arrived meanwhile (within the
    -- stream's retention).
    state                 text NOT NULL DEFAULT 'active'
                          CHECK (state IN ('active', 'paused', 'disabled')),
    state_reason          text NOT NULL DEFAULT '',
    state_at              timestamptz NOT NULL DEFAULT now(),
    start_time            timestamptz NOT NULL DEFAULT now(),
    start_seq             bigint CHECK (start_seq > 0),
    generation            integer NOT NULL DEFAULT 1,
    -- Health: the current run of failed attempts.
    consecutive_failures  integer NOT NULL DEFAULT 0,
    failing_since         timestamptz,
    last_success_at       timestamptz,
    last_failure_at       timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_mentorado ON webhooks (mentorado_id, id);

-- The delivery log: every attempt, newest kept (the dispatcher prunes to
-- the last N per endpoint). Diagnostics only: delivery state lives in the
-- JetStream consumer, not here.
CREATE TABLE webhook_deliveries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id    bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    delivery_id   text NOT NULL,     -- the webhook-id header: stable across retries
    event_id      text NOT NULL,     -- the envelope id
    event_type    text NOT NULL,
    mentorado_id  bigint NOT NULL,
    stream_seq    bigint NOT NULL,   -- WA_EVENTS sequence (redeliver from here)
    attempt       integer NOT NULL,  -- 1 for the first try
    -- delivered (2xx), retry (will be tried again), dead (last try failed:
    -- dead-lettered), gone (410: endpoint disabled), refused (the URL's
    -- address is not allowed).
    outcome       text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead', 'gone', 'refused')),
    status_code   integer,           -- NULL when no response came
    latency_ms    integer NOT NULL DEFAULT 0,
    error         text NOT NULL DEFAULT '',
    attempted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id DESC);
CREATE INDEX webhook_deliveries_delivery ON webhook_deliveries (webhook_id, delivery_id);

-- Leads in the CRM (the leads API): the existing `stage` column is the
-- API's `status`. Tags and custom fields are the CRM's own.
ALTER TABLE leads
    ADD COLUMN tags   text[] NOT NULL DEFAULT '{}',
    ADD COLUMN fields jsonb NOT NULL DEFAULT '{}'::jsonb;
-- The leads list: newest first, keyset-paginated.
CREATE INDEX leads_created ON leads (mentorado_id, created_at DESC, id DESC);

-- Connection history for the operator console (reconnects and bans in the
-- last 24 h): one row per connection event, written by the persister,
-- idempotent by the event id; rows older than 7 days are pruned.
CREATE TABLE connection_log (
    mentorado_id  bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    event_id      text NOT NULL,
    status        text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    occurred_at   timestamptz NOT NULL,
    PRIMARY KEY (mentorado_id, event_id)
);
CREATE INDEX connection_log_recent ON connection_log (mentorado_id, occurred_at DESC);

-- The connector holding the session when the stored status was written
-- (event.Connection.Connector).
ALTER TABLE mentorados ADD COLUMN wa_connector text;

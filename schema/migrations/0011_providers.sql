-- Providers (issue #16, docs/decisions/0021-providers.md): a mentorado's
-- number runs on Meta's WhatsApp Cloud API, on WhatsApp Web (whatsmeow,
-- the connector) or on Z-API. Each configured provider is one row; the
-- active one is mentorados.active_provider when set and configured,
-- otherwise the first configured of meta > whatsapp_web > zapi
-- (event.PickProvider). Every provider writes the same tables through the
-- same events.
CREATE TABLE provider_configs (
    mentorado_id  bigint NOT NULL REFERENCES mentorados (id) ON DELETE CASCADE,
    provider      text NOT NULL CHECK (provider IN ('meta', 'whatsapp_web', 'zapi')),
    -- What the API shows: Meta's phone_number_id, waba_id and display
    -- number; Z-API's instance_id. Never a secret.
    settings      jsonb NOT NULL DEFAULT '{}',
    -- The credentials (JSON), sealed with AES-256-GCM (internal/secretbox):
    -- nonce || ciphertext, under the key named key_id. NULL for
    -- whatsapp_web, whose device keys live in whatsmeow's store.
    credentials   bytea,
    key_id        text,
    CHECK ((credentials IS NULL) = (key_id IS NULL)),
    -- The provider's id of the number (Meta phone_number_id, Z-API
    -- instance id): one mentorado per number and provider.
    external_id   text,
    -- Webhook health, written by the provider gateway: the last accepted
    -- webhook and the last rejected one (with why).
    last_webhook_at        timestamptz,
    last_webhook_error     text,
    last_webhook_error_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mentorado_id, provider)
);

CREATE UNIQUE INDEX provider_configs_external ON provider_configs (provider, external_id)
    WHERE external_id IS NOT NULL;

-- The admin's choice of active provider; NULL means the priority rule.
ALTER TABLE mentorados ADD COLUMN active_provider text
    CHECK (active_provider IN ('meta', 'whatsapp_web', 'zapi'));

-- Every mentorado so far runs on WhatsApp Web.
INSERT INTO provider_configs (mentorado_id, provider) SELECT id, 'whatsapp_web' FROM mentorados;

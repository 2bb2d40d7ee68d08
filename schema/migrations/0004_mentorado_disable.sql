-- Tenants can be disabled by an admin: every token and stream of a disabled
-- mentorado is refused, its session is disconnected and not restored by a
-- connector at start-up, and its data is kept. NULL means enabled.
ALTER TABLE mentorados ADD COLUMN disabled_at timestamptz;

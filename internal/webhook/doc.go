// Package webhook delivers events to HTTP endpoints (issue #13,
// docs/decisions/0017-webhooks.md): each endpoint in the webhooks table is
// one durable JetStream consumer on WA_EVENTS, filtered to its mentorado
// and event types. Deliveries are signed the Standard Webhooks way
// (webhook-id, webhook-timestamp, webhook-signature = HMAC-SHA256 with a
// whsec_ secret), in stream order per endpoint, at least once, retried
// with exponential backoff and jitter for more than 24 hours, then
// dead-lettered. Dispatchers (cmd/webhooks, or in-process in the dev
// binary) share the work: any number may run.
package webhook

// Package metafake is a stand-in for Meta's Graph API (WhatsApp Cloud
// API) over real HTTP, for tests of the meta driver, the provider gateway
// and the provider contract suite. Its payloads have the shapes of
// internal/provider/meta/testdata (Meta's documented examples).
//
// Graph side (point meta.Config.BaseURL at Server.URL()):
//
//	srv := metafake.New(t)                      // closed by t.Cleanup
//	num := srv.AddAccount(metafake.Account{PhoneNumberID: "106540352242922",
//		DisplayPhone: "15550783881", Token: "EAAG-test"})
//
//	POST /{phone_number_id}/messages   text, template, reaction, media by id, read status
//	POST /{phone_number_id}/media      multipart upload (file, type, messaging_product)
//	GET  /{phone_number_id}?fields=…   display_phone_number, verified_name, quality_rating
//	GET  /{media-id}                   url (on the fake), mime_type, sha256 (base64), file_size
//	GET  /download/{media-id}          the bytes (bearer checked, as Meta's lookaside URLs)
//
// Every request must carry "Authorization: Bearer <token>" of the account
// whose number it names (else 401, code 190). Requests() records every
// request (secrets are not recorded: only whether the bearer matched),
// Sent() every accepted message, Uploaded(id) every uploaded file.
//
// Failure knobs, consumed in order by the next requests (any endpoint):
// FailNext(n, status, body) answers the next n requests with status and
// body (ErrorBody(code, message) builds a Graph error); RateLimit(n)
// answers the next n with 429, code 130429 and "Retry-After: 1";
// Outage(true) answers every request 503 until Outage(false). Attempts()
// counts the requests that reached the fake, failed ones included.
//
// Webhook side: the Number returned by AddAccount builds deliveries for
// its phone_number_id — InboundText(from, name, text), InboundImage(from,
// caption) (the image is then served by GET /{media-id}), InboundMedia,
// Status(wamid, recipient, "sent"|"delivered"|"read"|"failed"),
// StatusFailed(wamid, recipient, code, title) — each returning the wamid
// (where it makes one) and the body. Deliver(ctx, url, appSecret, body)
// POSTs a body signed with X-Hub-Signature-256 and returns the HTTP
// status; DeliverUnsigned and DeliverBadSignature send it without or with
// a wrong signature. A replay is Deliver with the same body again: Meta
// redelivers byte-identical bodies.
package metafake

// Package zapifake is an in-process stand-in for Z-API (z-api.io) for
// tests: an httptest server answering the REST endpoints the zapi driver
// calls, and builders of the webhook bodies Z-API posts, made from the
// payloads of Z-API's documentation (templates/, copied from
// ../testdata, whose README names the sources).
//
// REST side (base URL: Server.URL(); paths
// /instances/{id}/token/{token}/<endpoint>):
//
//   - every call checks the instance token (else 404 {"error": "Instance
//     not found"}) and the Client-Token header (else 400 {"error": "<sent
//     value or null> not allowed"}, as Z-API does — which echoes what was
//     sent, so tests can see the driver scrubs it);
//   - GET status, device, qr-code, phone-code/{phone}, disconnect; PUT
//     update-every-webhooks (Instance.Webhook reads it back; the fake does
//     not deliver by itself: tests call Deliver);
//   - POST send-text, send-image, send-video, send-audio,
//     send-document/{ext}, send-sticker, send-reaction,
//     send-remove-reaction, read-message; DELETE messages. Sends need the
//     instance connected (else 400 {"error": "You are not connected."}),
//     check their fields and data URIs, are recorded (Server.Sent) and
//     answer {zaapId, messageId, id};
//   - GET /media/{name}: files added with AddMedia (no credentials, like
//     Z-API's storage URLs).
//
// Knobs: FailNext(n, status) answers the next n calls with status;
// Outage(true) breaks every connection (garbage instead of an HTTP answer) until
// Outage(false); Attempts(endpoint) and TotalAttempts count calls as they
// arrive (before knobs apply).
//
// Instances: AddInstance registers one (connected or not); while not
// connected it has a QR code string (Instance.QR), and Instance.Scan
// simulates the phone scanning it. Disconnect (REST) unpairs it and makes
// a new QR code.
//
// Webhook side: Instance.ReceivedText, ReceivedImage, Status, Connected and
// Disconnected build bodies; Server.Deliver posts one to a URL and returns
// the HTTP status, recording it; Redeliver(i) posts the i-th delivery
// again, byte for byte (Z-API retries deliveries that did not get a 200).
//
//	srv := zapifake.New(t)
//	inst := srv.AddInstance(zapifake.InstanceConfig{Connected: true})
//	acc := provider.Account{Mentorado: 7, Provider: event.ProviderZAPI, ZAPI: inst.Credentials("s3cret")}
//	d := zapi.New(zapi.Config{BaseURL: srv.URL(), MediaHTTP: http.DefaultClient})
//	id, body := inst.ReceivedText("5544999999999", "Maria", "oi")
//	status, err := srv.Deliver(ctx, gatewayURL+"/providers/zapi/7/webhook/s3cret", body)
package zapifake

package web

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestAdminListMentorados(t *testing.T) {
	e := newEnv(t)
	var ids []int64
	for _, n := range []string{"Ana", "Bia", "Caio"} {
		ids = append(ids, e.createMentorado(n).ID)
	}
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE mentorados SET wa_status = 'connected', wa_phone = '5511944440000', wa_status_at = now() WHERE id = $1`, ids[1]); err != nil {
		t.Fatal(err)
	}
	e.expect(e.do("GET", "/v1/admin/mentorados", "", nil), 401)
	var p1, p2 mentoradosResponse
	e.expect(e.do("GET", "/v1/admin/mentorados?limit=2", testAdminToken, nil), 200).json(t, &p1)
	if len(p1.Mentorados) != 2 || p1.NextCursor == "" || p1.Mentorados[0].ID != ids[0] || p1.Mentorados[1].Status != "connected" ||
		p1.Mentorados[1].Phone != "5511944440000" || p1.Mentorados[0].Status != "disconnected" || p1.Mentorados[0].Disabled {
		t.Fatalf("page 1: %+v", p1)
	}
	e.expect(e.do("GET", "/v1/admin/mentorados?limit=2&cursor="+p1.NextCursor, testAdminToken, nil), 200).json(t, &p2)
	if len(p2.Mentorados) != 1 || p2.NextCursor != "" || p2.Mentorados[0].ID != ids[2] || p2.Mentorados[0].Name != "Caio" {
		t.Fatalf("page 2: %+v", p2)
	}
	e.expect(e.do("GET", "/v1/admin/mentorados?cursor=nope", testAdminToken, nil), 400)
	e.expect(e.do("GET", "/v1/admin/mentorados?limit=0", testAdminToken, nil), 400)
}

// Disabling refuses the tenant's token, tickets and streams, ends its
// open streams and disconnects its session; data stays; enable restores
// access with the same token.
func TestAdminDisableEnable(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	fc := e.fakeConnector(defaultAnswer)
	e.insertMessage(a.ID, msgRow{WAID: "A-1", Phone: "5511922220000", Text: "kept"})
	ticket := e.ticket(a.Token)
	sse := e.openSSE(bearerAuth(a.Token), "")
	other := e.openSSE(bearerAuth(b.Token), "")

	var st adminStateResponse
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/disable", testAdminToken, nil), 200).json(t, &st)
	if !st.Disabled || st.DisabledAt == nil || st.Session == nil || st.Session.State != "disconnected" {
		t.Fatalf("disable answer %+v", st)
	}
	if subj := fc.Subjects(); len(subj) != 1 || subj[0] != event.CommandSubject(a.ID, event.VerbDisconnect) {
		t.Fatalf("commands %v, want one disconnect of A", subj)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return closed(sse.done) }, "disabled tenant's stream ended")
	if closed(other.done) {
		t.Fatal("another tenant's stream ended")
	}
	for _, res := range []response{
		e.do("GET", "/v1/whatsapp/status", a.Token, nil),
		e.do("POST", "/v1/messages", a.Token, map[string]string{"phone": "5511922220000", "text": "x"}),
		e.do("POST", "/v1/stream-tickets", a.Token, nil),
		e.getStream("/v1/events?ticket="+ticket, ""),
		e.getStream("/v1/events", a.Token),
	} {
		if code := e.expect(res, 403).errorCode(t); code != event.CodeDisabled {
			t.Fatalf("disabled tenant's request answered %q, want %s", code, event.CodeDisabled)
		}
	}
	e.expect(e.do("GET", "/v1/whatsapp/status", b.Token, nil), 200)
	var n int
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM whatsapp_messages WHERE mentorado_id = $1`, a.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("data of the disabled tenant: %d rows, %v", n, err)
	}
	// Disable is idempotent; enable gives the same token back its access.
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/disable", testAdminToken, nil), 200)
	st = adminStateResponse{}
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/enable", testAdminToken, nil), 200).json(t, &st)
	if st.Disabled || st.DisabledAt != nil {
		t.Fatalf("enable answer %+v", st)
	}
	e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 200)
	e.openSSE(bearerAuth(a.Token), "")
	e.expect(e.do("POST", "/v1/admin/mentorados/999999/disable", testAdminToken, nil), 404)
	e.expect(e.do("POST", "/v1/admin/mentorados/x/enable", testAdminToken, nil), 400)
}

func TestAdminDeleteMentorado(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana Maria")
	b := e.createMentorado("Bia")
	fc := e.fakeConnector(defaultAnswer)
	for _, m := range []int64{a.ID, b.ID} {
		lead := e.insertLead(m, "5511922220000", "Lead", "whatsapp")
		e.insertMessage(m, msgRow{WAID: "W-1", Phone: "5511922220000", Text: "hello", LeadID: &lead})
		e.insertContact(m, "5511933330000", "Contact")
		e.publishMessage(m, "ev-1", "stored event")
		e.expect(e.upload(map[int64]string{a.ID: a.Token, b.ID: b.Token}[m], "f.pdf", "application/pdf", pdfBytes), 201)
	}
	e.publishQR(a.ID, "2@qr-of-a", time.Now().Add(time.Minute))
	sse := e.openSSE(bearerAuth(a.Token), "")
	path := "/v1/admin/mentorados/" + itoa(a.ID)

	// Without or with a wrong confirmation nothing happens.
	for _, q := range []string{"", "?confirm=", "?confirm=Ana", "?confirm=" + itoa(b.ID)} {
		if code := e.expect(e.do("DELETE", path+q, testAdminToken, nil), 400).errorCode(t); code != codeBadRequest {
			t.Fatalf("delete%s: %s", q, code)
		}
	}
	e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 200)
	if len(fc.Subjects()) != 0 {
		t.Fatalf("commands before a confirmed delete: %v", fc.Subjects())
	}

	var dr deleteResponse
	e.expect(e.do("DELETE", path+"?confirm="+url.QueryEscape("Ana Maria"), testAdminToken, nil), 200).json(t, &dr)
	if !dr.Deleted || dr.Session == nil || dr.Session.State != string(event.StatusLoggedOut) || !dr.EventsPurged || !dr.MediaDeleted {
		t.Fatalf("delete answer %+v", dr)
	}
	if e.stored(a.ID, sha(pdfBytes)) || !e.stored(b.ID, sha(pdfBytes)) {
		t.Fatal("the deleted tenant's files stayed, or the other tenant's went")
	}
	if subj := fc.Subjects(); len(subj) != 1 || subj[0] != event.CommandSubject(a.ID, event.VerbLogout) {
		t.Fatalf("commands %v, want one logout of A", subj)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return closed(sse.done) }, "deleted tenant's stream ended")
	e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 401)
	for _, table := range []string{"mentorados WHERE id", "whatsapp_messages WHERE mentorado_id", "leads WHERE mentorado_id", "whatsapp_contacts WHERE mentorado_id",
		"media_objects WHERE mentorado_id"} {
		var na, nb int
		if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table+` = $1`, a.ID).Scan(&na); err != nil {
			t.Fatal(err)
		}
		if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table+` = $1`, b.ID).Scan(&nb); err != nil {
			t.Fatal(err)
		}
		if na != 0 || nb != 1 {
			t.Fatalf("%s: deleted tenant %d rows, other tenant %d rows", table, na, nb)
		}
	}
	st, err := e.bus.JS.Stream(t.Context(), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(t.Context(), event.MentoradoEvents(a.ID)); err != jetstream.ErrMsgNotFound {
		t.Fatalf("deleted tenant's events still stored: %v", err)
	}
	if _, err := st.GetLastMsgForSubject(t.Context(), event.MentoradoEvents(b.ID)); err != nil {
		t.Fatalf("other tenant's events: %v", err)
	}
	e.expect(e.do("DELETE", path+"?confirm="+itoa(a.ID), testAdminToken, nil), 404)

	// No connector answering: 503 and nothing deleted, unless forced.
	_ = fc.sub.Unsubscribe()
	_ = e.nc.Flush()
	pb := "/v1/admin/mentorados/" + itoa(b.ID)
	res := e.expect(e.do("DELETE", pb+"?confirm="+itoa(b.ID), testAdminToken, nil), 503)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	var n int
	_ = e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM whatsapp_messages WHERE mentorado_id = $1`, b.ID).Scan(&n)
	if n != 1 {
		t.Fatalf("unforced delete without logout removed data (%d rows left)", n)
	}
	e.expect(e.do("DELETE", pb+"?confirm=Bia&force=true", testAdminToken, nil), 200).json(t, &dr)
	if !dr.Deleted || dr.Session.State != "unreachable" {
		t.Fatalf("forced delete %+v", dr)
	}
}

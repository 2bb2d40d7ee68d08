package connector_test

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// captureLogs makes e log JSON into a buffer (and to t.Log) at debug level.
func captureLogs(t *testing.T, e *env) *testenv.Buffer {
	t.Helper()
	buf := &testenv.Buffer{}
	e.log = zerolog.New(zerolog.MultiLevelWriter(buf, zerolog.ConsoleWriter{Out: logT{t}, NoColor: true, TimeFormat: "15:04:05.000"})).
		Level(zerolog.DebugLevel).With().Timestamp().Logger()
	return buf
}

type logT struct{ t *testing.T }

func (w logT) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// secretsAboveDebug returns the log lines above debug level (JSON lines
// of zerolog) that contain any of secrets.
func secretsAboveDebug(t *testing.T, logs string, secrets map[string]string) []string {
	t.Helper()
	var bad []string
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines, above := 0, 0
	for sc.Scan() {
		line := sc.Text()
		var rec struct {
			Level string `json:"level"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		lines++
		lvl, err := zerolog.ParseLevel(rec.Level)
		if err != nil {
			t.Fatalf("log line with level %q: %s", rec.Level, line)
		}
		if lvl <= zerolog.DebugLevel && lvl != zerolog.NoLevel {
			continue
		}
		above++
		for what, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				bad = append(bad, what+": "+line)
			}
		}
	}
	if lines == 0 || above == 0 {
		t.Fatalf("captured %d log lines, %d above debug: the capture is not working", lines, above)
	}
	t.Logf("scanned %d log lines (%d above debug) for %d secrets", lines, above, len(secrets))
	return bad
}

// qrSecrets adds every QR code of m stored in WA_QR, whole and by its
// comma-separated parts (the ref and the keys are each secret).
func (e *env) qrSecrets(m int64, into map[string]string) int {
	n := 0
	for _, env := range e.stored(bus.StreamQR, event.QRSubject(m)) {
		p, err := env.Payload()
		if err != nil {
			e.t.Fatal(err)
		}
		q := p.(*event.QR)
		if q.Code != "" {
			n++
			into["qr code"+q.Code[:min(8, len(q.Code))]] = q.Code
			for i, part := range strings.Split(q.Code, ",") {
				if len(part) >= 12 {
					into["qr code part "+string(rune('0'+i))+" of "+q.Code[:min(8, len(q.Code))]] = part
				}
			}
		}
		if q.PairingCode != "" {
			into["pairing code (stored)"] = q.PairingCode
		}
	}
	return n
}

// TestConnectorNeverLogsPairingSecrets pairs one session by QR and one by
// phone code through the real whatsmeow client, with the connector (and
// whatsmeow under it) logging at debug, and checks that no QR code or
// pairing code appears in any log line above debug.
func TestConnectorNeverLogsPairingSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	logs := captureLogs(t, e)
	re := newRealEnv(t, e)
	ids := re.mentorados(2)
	re.start("a", re.factory(t), nil)
	secrets := map[string]string{}

	// QR pairing.
	re.pair(t, ids[0], "5511955553001")
	if n := re.qrSecrets(ids[0], secrets); n == 0 {
		t.Fatal("no QR code stored")
	}

	// Phone pairing.
	const number = "5511955553002"
	r := re.mustRequest(ids[1], event.VerbConnect, event.ConnectRequest{Method: event.ConnectPhone, Phone: number})
	if r.Error != nil || r.Status == nil || r.Status.PairingCode == "" {
		t.Fatalf("connect by phone: %+v", r)
	}
	code := r.Status.PairingCode
	secrets["pairing code"] = code
	secrets["pairing code without dash"] = strings.ReplaceAll(code, "-", "")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := re.srv.EnterPairingCode(ctx, number, code); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return re.status(ids[1]) == event.StatusConnected }, "connected by phone code")
	re.qrSecrets(ids[1], secrets)

	if bad := secretsAboveDebug(t, logs.String(), secrets); len(bad) > 0 {
		t.Fatalf("pairing secrets logged above debug:\n%s", strings.Join(bad, "\n"))
	}
}

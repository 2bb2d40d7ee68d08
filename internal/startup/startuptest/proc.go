package startuptest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

// Proc is a process main (its run function) running in a goroutine, with
// its output captured.
type Proc struct {
	t       testing.TB
	name    string
	Out     *testenv.Buffer
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// Start runs run until Stop or the end of the test. run writes its output
// to the Proc's Out.
func Start(t testing.TB, name string, run func(ctx context.Context, out io.Writer) error) *Proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proc{t: t, name: name, Out: &testenv.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- run(ctx, p.Out) }()
	t.Cleanup(func() {
		if !p.stopped {
			cancel()
			<-p.done
		}
	})
	return p
}

// Alive fails the test when the process has exited.
func (p *Proc) Alive() {
	p.t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		p.t.Fatalf("%s exited while a dependency was down: %v\n%s", p.name, err, p.Out.String())
	default:
	}
}

// Stop cancels the process and fails the test unless it returns nil
// within 30 s.
func (p *Proc) Stop() {
	p.t.Helper()
	p.cancel()
	p.stopped = true
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Fatalf("%s: %v", p.name, err)
		}
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop; goroutines:\n%s", p.name, testenv.Goroutines())
	}
}

// LoggedHTTPAddr matches the "http_addr" a service logs when it listens.
var LoggedHTTPAddr = regexp.MustCompile(`"http_addr":"([^"]+)"`)

// BaseURL waits for addr (the first group of re) in the output and
// returns http://addr.
func (p *Proc) BaseURL(re *regexp.Regexp) string {
	p.t.Helper()
	var base string
	testenv.Eventually(p.t, 20*time.Second, func() bool {
		p.Alive()
		if m := re.FindStringSubmatch(p.Out.String()); m != nil {
			base = "http://" + m[1]
		}
		return base != ""
	}, "%s logged no address:\n%s", p.name, p.Out)
	return base
}

// Get fetches url: status and body, or 0 when it cannot connect.
func Get(url string) (int, string) {
	res, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// WaitsForPostgresThenNATS checks the start-up of a process whose
// Postgres is behind gate (shut) and whose NATS is not running: /healthz
// is 200 and /readyz a JSON 503 naming postgres while retries are logged
// and refused; once the gate opens onto pgAddr, /readyz names nats only.
func (p *Proc) WaitsForPostgresThenNATS(base string, gate *Gate, pgAddr string) {
	p.t.Helper()
	testenv.Eventually(p.t, 20*time.Second, func() bool {
		p.Alive()
		hc, _ := Get(base + "/healthz")
		code, body := Get(base + "/readyz")
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal([]byte(body), &e)
		return hc == http.StatusOK && code == http.StatusServiceUnavailable && e.Error.Code == "unavailable" &&
			strings.Contains(e.Error.Message, "waiting for postgres") &&
			gate.Refused() >= 2 && strings.Count(p.Out.String(), "postgres unavailable; retrying") >= 2
	}, "%s: no JSON 503 readyz naming postgres with two logged, refused retries:\n%s", p.name, p.Out)
	gate.Open(pgAddr)
	testenv.Eventually(p.t, 30*time.Second, func() bool {
		p.Alive()
		code, body := Get(base + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for nats") && !strings.Contains(body, "postgres")
	}, "%s: readyz never moved on to waiting for nats:\n%s", p.name, p.Out)
}

// WaitReady waits until /readyz answers 200.
func (p *Proc) WaitReady(base string) {
	p.t.Helper()
	testenv.Eventually(p.t, 60*time.Second, func() bool {
		p.Alive()
		code, _ := Get(base + "/readyz")
		return code == http.StatusOK
	}, "%s never ready after its dependencies came back:\n%s", p.name, p.Out)
}

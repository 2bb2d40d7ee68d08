package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/webhook"
)

func TestCheckURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	strict := webhook.Policy{}
	// A resolver with no DNS server: every lookup fails.
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS here")
	}}
	lax := webhook.Policy{AllowHTTP: true, AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("::1/128")}}
	cases := []struct {
		name   string
		p      webhook.Policy
		url    string
		target error // nil: accepted
	}{
		{"public https", strict, "https://93.184.215.14/hook", nil},
		{"public https port", strict, "https://93.184.215.14:8443/hook?x=1", nil},
		{"http refused", strict, "http://93.184.215.14/hook", webhook.ErrBadURL},
		{"http allowed", webhook.Policy{AllowHTTP: true}, "http://93.184.215.14/hook", nil},
		{"private 10", strict, "https://10.0.0.5/hook", webhook.ErrRefusedAddress},
		{"private 192.168", strict, "https://192.168.1.1/", webhook.ErrRefusedAddress},
		{"private 172.16", strict, "https://172.16.0.1/", webhook.ErrRefusedAddress},
		{"cgnat", strict, "https://100.64.0.1/", webhook.ErrRefusedAddress},
		{"metadata ip", strict, "https://169.254.169.254/latest/meta-data", webhook.ErrRefusedAddress},
		{"loopback", strict, "https://127.0.0.1/", webhook.ErrRefusedAddress},
		{"loopback v6", strict, "https://[::1]/", webhook.ErrRefusedAddress},
		{"mapped v4 loopback", strict, "https://[::ffff:127.0.0.1]/", webhook.ErrRefusedAddress},
		{"unspecified", strict, "https://0.0.0.0/", webhook.ErrRefusedAddress},
		{"link-local v6", strict, "https://[fe80::1]/", webhook.ErrRefusedAddress},
		{"unique local v6", strict, "https://[fd00::1]/", webhook.ErrRefusedAddress},
		{"localhost", strict, "https://localhost/hook", webhook.ErrRefusedAddress},
		{"localhost subdomain", strict, "https://api.localhost/hook", webhook.ErrRefusedAddress},
		{"metadata name", strict, "https://metadata.google.internal/computeMetadata/v1/", webhook.ErrRefusedAddress},
		{"userinfo", strict, "https://user:pass@93.184.215.14/hook", webhook.ErrBadURL},
		{"user only", strict, "https://user@93.184.215.14/hook", webhook.ErrBadURL},
		{"relative", strict, "/hook", webhook.ErrBadURL},
		{"no host", strict, "https:///hook", webhook.ErrBadURL},
		{"ftp", strict, "ftp://93.184.215.14/x", webhook.ErrBadURL},
		{"empty", strict, "", webhook.ErrBadURL},
		{"bad port", strict, "https://93.184.215.14:99999/", webhook.ErrBadURL},
		{"too long", strict, "https://93.184.215.14/" + strings.Repeat("a", 2100), webhook.ErrBadURL},
		{"allowed loopback net", lax, "http://127.0.0.1:8080/hook", nil},
		{"allowed localhost by net", lax, "http://localhost:8080/hook", nil},
		{"allowed private net", lax, "https://10.1.2.3/hook", nil},
		{"other private net", lax, "https://10.2.0.1/hook", webhook.ErrRefusedAddress},
		{"v6 loopback not in allowed nets", webhook.Policy{AllowNets: lax.AllowNets[:1]}, "https://[::1]:8080/", webhook.ErrRefusedAddress},
		{"unresolvable", strict, "https://no-such-host.invalid/hook", webhook.ErrUnresolvable},
		// Not resolvable now (no such name, or no DNS at all): accepted,
		// the connection checks the address.
		{"not resolvable yet", webhook.Policy{Resolver: noDNS}, "https://crm.example.com/hook", nil},
		{"localhost without DNS", webhook.Policy{Resolver: noDNS}, "https://localhost/hook", webhook.ErrRefusedAddress},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.p.CheckURL(ctx, c.url)
			if c.target == nil {
				if err != nil {
					t.Fatalf("%s refused: %v", c.url, err)
				}
				return
			}
			if !errors.Is(err, c.target) {
				t.Fatalf("%s: err %v, want %v", c.url, err, c.target)
			}
		})
	}
}

// A name is checked by every address it resolves to: one private address
// among public ones is enough to refuse it.
func TestCheckURLResolvesNames(t *testing.T) {
	ctx := context.Background()
	// A resolver that answers every name from a fake DNS server.
	dns := fakeDNS(t, map[string][]string{
		"public.example.":  {"93.184.215.14"},
		"mixed.example.":   {"93.184.215.14", "10.0.0.7"},
		"rebind.example.":  {"169.254.169.254"},
		"internal.example": {"10.1.0.9"},
	})
	p := webhook.Policy{Resolver: dns}
	if _, err := p.CheckURL(ctx, "https://public.example/hook"); err != nil {
		t.Fatalf("public name refused: %v", err)
	}
	for _, u := range []string{"https://mixed.example/hook", "https://rebind.example/hook"} {
		if _, err := p.CheckURL(ctx, u); !errors.Is(err, webhook.ErrRefusedAddress) {
			t.Fatalf("%s: %v", u, err)
		}
	}
	p.AllowNets = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if _, err := p.CheckURL(ctx, "https://mixed.example/hook"); err != nil {
		t.Fatalf("allowed net refused: %v", err)
	}
}

func TestParseAllowNets(t *testing.T) {
	got, err := webhook.ParseAllowNets("127.0.0.0/8, 10.1.2.3 fd00::/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.0/8", "10.1.2.3/32", "fd00::/8", "::1/128"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if got, err := webhook.ParseAllowNets(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "10.0.0/8", "10.1.2.3/8", "0.0.0.0/0", "::/0"} {
		if _, err := webhook.ParseAllowNets(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

// fakeDNS is a resolver whose queries go to a tiny UDP DNS server on
// loopback answering A records from names.
func fakeDNS(t *testing.T, names map[string][]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go serveDNS(pc, names)
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

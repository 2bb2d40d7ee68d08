package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"code.dny.dev/ssrf"
)

// Policy says which webhook URLs may be used. Webhook URLs are user input:
// by default only https URLs whose host resolves to public addresses are
// allowed; loopback, link-local, private, CGNAT, multicast and cloud
// metadata addresses are refused, both when the URL is saved (CheckURL) and
// at every connection (the dialer checks the resolved IP, so a name that
// later resolves elsewhere — DNS rebinding — is refused too).
//
// Any port is allowed: the address, not the port, is what keeps requests
// off the internal network, and receivers often listen on 8443 or 3000.
type Policy struct {
	// AllowNets are networks the operator allows explicitly
	// (ZAPBUS_WEBHOOK_ALLOW_NETS, e.g. a receiver on the internal
	// network, or 127.0.0.0/8 in tests).
	AllowNets []netip.Prefix
	// AllowHTTP allows plain http:// URLs (ZAPBUS_WEBHOOK_ALLOW_HTTP).
	AllowHTTP bool
	// Resolver resolves names, in CheckURL and when connecting (nil:
	// net.DefaultResolver).
	Resolver *net.Resolver
}

// Errors of CheckURL, for the API to tell a bad URL from a refused one.
var (
	// ErrBadURL: not an absolute http(s) URL the dispatcher can call.
	ErrBadURL = errors.New("webhook URL is not valid")
	// ErrRefusedAddress: the host is, or resolves to, an address the
	// policy does not allow (loopback, private, link-local, metadata…).
	ErrRefusedAddress = errors.New("webhook URL points to an address that is not allowed")
	// ErrUnresolvable: the host name does not resolve.
	ErrUnresolvable = errors.New("webhook URL host does not resolve")
)

// blockedNames are host names refused unless every address they resolve
// to is in an allowed network: the machine itself and cloud metadata
// services, whatever they resolve to here.
var blockedNames = []string{
	"localhost",
	"metadata",
	"metadata.google.internal",
	"metadata.goog",
	"instance-data",
	"instance-data.ec2.internal",
	"metadata.azure.internal",
	"kubernetes.default.svc",
}

func blockedName(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, n := range blockedNames {
		if host == n || strings.HasSuffix(host, "."+n) {
			return true
		}
	}
	return false
}

// ParseAllowNets parses ZAPBUS_WEBHOOK_ALLOW_NETS for Policy.AllowNets:
// networks separated by commas or spaces, each a CIDR prefix ("10.0.0.0/8")
// or a single address ("192.168.1.20", taken as /32 or /128; an
// IPv4-mapped IPv6 address is its IPv4 address). Empty allows nothing
// beyond public addresses. A prefix with host bits set ("10.1.2.3/8") is
// refused rather than silently widened, and 0.0.0.0/0 or ::/0 is refused:
// turning the protection off entirely is not what this setting is for.
// The notifier (saving URLs) and the dispatcher (connecting) both parse it
// here, so they apply one policy.
func ParseAllowNets(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		var p netip.Prefix
		if strings.Contains(f, "/") {
			var err error
			if p, err = netip.ParsePrefix(f); err != nil {
				return nil, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8)", f)
			}
			if p != p.Masked() {
				return nil, fmt.Errorf("%q has host bits set; did you mean %s?", f, p.Masked())
			}
		} else {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an IP address", f)
			}
			a = a.Unmap().WithZone("")
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("%q allows every address; list the networks your receivers are on", f)
		}
		out = append(out, p)
	}
	return out, nil
}

// guardian is the ssrf check under the policy.
func (p Policy) guardian() *ssrf.Guardian {
	var v4, v6 []netip.Prefix
	for _, n := range p.AllowNets {
		if n.Addr().Is4() {
			v4 = append(v4, n)
		} else {
			v6 = append(v6, n)
		}
	}
	return ssrf.New(ssrf.WithAllowedV4Prefixes(v4...), ssrf.WithAllowedV6Prefixes(v6...), ssrf.WithAnyPort())
}

// allowed reports whether a is allowed, with the reason when not.
func allowed(g *ssrf.Guardian, a netip.Addr) error {
	a = a.Unmap().WithZone("")
	if err := g.SafeAddr(a); err != nil {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, a)
	}
	return nil
}

// control is the dialer's Control: it runs after the name was resolved,
// on the address about to be connected to.
func control(g *ssrf.Guardian) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if network != "tcp4" && network != "tcp6" {
			return fmt.Errorf("%w: network %s", ErrRefusedAddress, network)
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrRefusedAddress, address)
		}
		return allowed(g, ap.Addr())
	}
}

// CheckURL validates raw as a webhook URL under the policy: syntax, scheme,
// no credentials in it, and a host that is allowed (literal IPs are checked
// as they are; names are resolved with ctx and every address must be
// allowed). A name that does not resolve now is accepted — its DNS may not
// be set up yet, and the notifier's resolver need not be the dispatcher's —
// because the address is checked again at every connection, which is the
// check that counts; only names under .invalid (RFC 6761: never resolves)
// are refused as unresolvable. The error is meant for the API user: it
// wraps ErrBadURL, ErrRefusedAddress or ErrUnresolvable.
func (p Policy) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	u, err := p.parseURL(raw)
	if err != nil {
		return nil, err
	}
	host := u.Hostname()
	g := p.guardian()
	if a, err := netip.ParseAddr(host); err == nil {
		if err := allowed(g, a); err != nil {
			return nil, err
		}
		return u, nil
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		switch {
		case blockedName(host):
			return nil, fmt.Errorf("%w: %s", ErrRefusedAddress, host)
		case host == "invalid" || strings.HasSuffix(strings.TrimSuffix(host, "."), ".invalid"):
			return nil, fmt.Errorf("%w: %s", ErrUnresolvable, host)
		}
		return u, nil
	}
	for _, a := range addrs {
		if err := allowed(g, a); err != nil {
			return nil, fmt.Errorf("%w (%s resolves to it)", err, host)
		}
	}
	if blockedName(host) && !p.inAllowedNets(addrs) {
		return nil, fmt.Errorf("%w: %s", ErrRefusedAddress, host)
	}
	return u, nil
}

func (p Policy) inAllowedNets(addrs []netip.Addr) bool {
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		in := false
		for _, n := range p.AllowNets {
			if n.Contains(a) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// parseURL checks raw's syntax without resolving anything.
func (p Policy) parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadURL)
	}
	if len(raw) > 2048 {
		return nil, fmt.Errorf("%w: longer than 2048 characters", ErrBadURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot parse it", ErrBadURL)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !p.AllowHTTP {
			return nil, fmt.Errorf("%w: only https URLs are allowed", ErrBadURL)
		}
	case "":
		return nil, fmt.Errorf("%w: must be an absolute https URL", ErrBadURL)
	default:
		return nil, fmt.Errorf("%w: scheme %q is not http(s)", ErrBadURL, u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: no host", ErrBadURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in the URL are not allowed (put a secret in the path or query, or verify the signature)", ErrBadURL)
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: port %q", ErrBadURL, port)
		}
	}
	return u, nil
}

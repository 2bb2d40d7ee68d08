package webhook

import (
	"context"
	"net/netip"
	"net/url"
)

// Policy says which webhook URLs may be used. Webhook URLs are user input:
// by default only https URLs whose host resolves to public addresses are
// allowed; loopback, link-local, private, CGNAT, multicast and cloud
// metadata addresses are refused, both when the URL is saved (CheckURL) and
// at every connection (the dialer checks the resolved IP, so a name that
// later resolves elsewhere — DNS rebinding — is refused too).
type Policy struct {
	// AllowNets are networks the operator allows explicitly
	// (ZAPBUS_WEBHOOK_ALLOW_NETS, e.g. a receiver on the internal
	// network, or 127.0.0.0/8 in tests).
	AllowNets []netip.Prefix
	// AllowHTTP allows plain http:// URLs (ZAPBUS_WEBHOOK_ALLOW_HTTP).
	AllowHTTP bool
}

// CheckURL validates raw as a webhook URL under the policy: syntax, scheme,
// no credentials in it, and a host that is allowed (literal IPs are checked
// as they are; names are resolved with ctx and every address must be
// allowed). The error is meant for the API user.
func (p Policy) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	return url.Parse(raw) // TODO(#13): the policy (helper A)
}

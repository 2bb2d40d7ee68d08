package bus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
)

// MinServerVersion is the oldest nats-server zapbus runs on: WA_LEASES needs
// limit-marker TTLs (2.11) and nats.conf sets sync_interval.
const MinServerVersion = "2.11.0"

// ServerInstallHint says how to get a recent enough nats-server (the version
// go.mod pins for the embedded test server).
const ServerInstallHint = "go install github.com/nats-io/nats-server/v2@v2.15.2 (or the nats:2.11 or newer container image)"

// ErrServerTooOld matches (errors.Is) the error Open returns when the
// server is older than MinServerVersion. Waiting does not fix it: the
// error also has Permanent() == true, so start-up retry loops stop.
var ErrServerTooOld = errors.New("bus: nats-server too old")

// ErrNotProvisioned matches the error Open returns when a stream or bucket
// the service needs does not exist. It is not permanent: an operator runs
// the provision step and the next attempt succeeds.
var ErrNotProvisioned = errors.New("bus: streams not provisioned")

type serverTooOldError struct{ have string }

func (e *serverTooOldError) Error() string {
	return fmt.Sprintf("bus: nats-server %s is too old: zapbus needs nats-server >= %s (limit-marker TTLs, sync_interval); get it with: %s",
		e.have, MinServerVersion, ServerInstallHint)
}
func (e *serverTooOldError) Is(target error) bool { return target == ErrServerTooOld }

// Permanent tells start-up retry loops not to retry.
func (e *serverTooOldError) Permanent() bool { return true }

// CheckServerVersion returns an ErrServerTooOld error when version (as the
// server announces it, e.g. "2.9.10" or "2.12.0-RC.1") is older than
// MinServerVersion or cannot be read.
func CheckServerVersion(version string) error {
	if !versionAtLeast(version, MinServerVersion) {
		if version == "" {
			version = "(unknown version)"
		}
		return &serverTooOldError{have: version}
	}
	return nil
}

func versionAtLeast(have, want string) bool {
	h, ok1 := parseVersion(have)
	w, ok2 := parseVersion(want)
	if !ok1 || !ok2 {
		return false
	}
	for i := range h {
		if h[i] != w[i] {
			return h[i] > w[i]
		}
	}
	return true
}

func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

// InboxPrefix is the reply-inbox prefix of the service connecting as name:
// "zapbus-connector" gets "_INBOX_connector". nats.conf lets each service
// user subscribe to its own prefix only, so no user can read another's
// replies.
func InboxPrefix(name string) string {
	name = strings.TrimPrefix(name, "zapbus-")
	var b strings.Builder
	b.WriteString("_INBOX_")
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Requires returns the streams (buckets as KV_<bucket>) the service
// connecting as name uses, which Open verifies: exactly what nats.conf lets
// that service user look up.
func Requires(name string) []string {
	switch name {
	case "zapbus-connector":
		return []string{StreamEvents, StreamQR, StreamDLQ, "KV_" + BucketLeases, "KV_" + BucketSends, StreamMedia}
	case "zapbus-persister":
		return []string{StreamEvents, StreamDLQ}
	case "zapbus-notifier":
		return []string{StreamEvents, StreamQR, StreamMedia}
	case "zapbus-webhooks":
		return []string{StreamEvents, StreamDLQ}
	case "zapbus-gateway":
		return []string{StreamEvents, StreamQR, "KV_" + BucketSends, StreamMedia}
	default:
		return []string{StreamEvents, StreamQR, StreamDLQ, "KV_" + BucketLeases, "KV_" + BucketSends, StreamMedia}
	}
}

// Open connects to NATS as name with the service's inbox prefix, checks the
// server version, and then provisions the streams and buckets when
// cfg.Provision is set, or verifies that those the service needs exist
// (bounded to 30 s): what every zapbus process does at start. Close the
// returned bus's NC (or Drain it) when done.
//
// Errors: ErrServerTooOld (permanent), ErrNotProvisioned (run the
// provision step), or connection and permission errors (transient).
func Open(ctx context.Context, url, name string, cfg Config, log zerolog.Logger) (*Bus, error) {
	nc, err := Connect(url, name, log, nats.CustomInboxPrefix(InboxPrefix(name)))
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitConnected(pctx, nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: connect %s: %w", name, err)
	}
	if err := CheckServerVersion(nc.ConnectedServerVersion()); err != nil {
		nc.Close()
		return nil, err
	}
	b, err := New(nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	b.requires = Requires(name)
	if err := b.Ensure(pctx); err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

// waitConnected waits until nc is connected (Connect retries in the
// background when the server is not up yet).
func waitConnected(ctx context.Context, nc *nats.Conn) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			if err := nc.LastError(); err != nil {
				return fmt.Errorf("not connected: %w", err)
			}
			return fmt.Errorf("not connected: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Ensure provisions the streams and buckets when this bus's Config has
// Provision set, and otherwise verifies that those it requires exist (and,
// with ProvisionIfMissing, provisions them when they do not).
func (b *Bus) Ensure(ctx context.Context) error {
	if b.raw.Provision {
		return b.Provision(ctx)
	}
	req := b.requires
	if len(req) == 0 {
		req = Requires("")
	}
	err := b.Verify(ctx, req...)
	if !errors.Is(err, ErrNotProvisioned) || !b.raw.ProvisionIfMissing {
		return err
	}
	if perr := b.Provision(ctx); perr != nil {
		return fmt.Errorf("%w (and provisioning them failed: %v)", err, perr)
	}
	return b.Verify(ctx, req...)
}

// Verify checks with STREAM.INFO that the named streams (buckets as
// KV_<bucket>) exist. A missing one is an ErrNotProvisioned error saying to
// run the provision step. For WA_LEASES it also adopts the server's TTL
// when this process did not choose one, and reports a conflict when it did.
func (b *Bus) Verify(ctx context.Context, names ...string) error {
	for _, name := range names {
		st, err := b.JS.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: %s does not exist; run `zapbus-admin provision` with the NATS admin credential (docs/operations.md)", ErrNotProvisioned, name)
		}
		if err != nil {
			return fmt.Errorf("bus: look up stream %s: %w", name, err)
		}
		if name == StreamEvents {
			// Provisioned by an older zapbus with a smaller envelope cap,
			// the stream would refuse events this build accepts.
			if have := st.CachedInfo().Config.MaxMsgSize; have > 0 && have < event.MaxEnvelopeBytes {
				return fmt.Errorf("%w: %s takes messages up to %d bytes, this zapbus needs %d; run `zapbus-admin provision` again (docs/operations.md)",
					ErrNotProvisioned, name, have, event.MaxEnvelopeBytes)
			}
		}
		if name != "KV_"+BucketLeases {
			continue
		}
		ttl := st.CachedInfo().Config.MaxAge
		switch {
		case b.raw.LeaseTTL == 0:
			b.cfg.LeaseTTL = ttl
		case b.raw.LeaseTTL != ttl:
			return fmt.Errorf("%w: %s has a key TTL of %s on the server but this process is configured for %s; provision again with the same lease TTL (zapbus-admin provision -lease-ttl %s)",
				ErrNotProvisioned, BucketLeases, ttl, b.raw.LeaseTTL, b.raw.LeaseTTL)
		}
	}
	return nil
}

// ProvisionEnv is the environment variable that tells a service main
// whether to provision the streams itself at start:
//
//	auto (default)  only on a server reached without credentials (a
//	                development or test server); with credentials, verify
//	true            always (tests, single-user development servers)
//	false           never: verify, and wait for `zapbus-admin provision`
//
// In production, run zapbus-admin provision with the admin credential.
const ProvisionEnv = "ZAPBUS_NATS_PROVISION"

// ProvisionFromEnv reads ProvisionEnv for a service connecting to natsURL
// and returns Config.Provision and Config.ProvisionIfMissing.
func ProvisionFromEnv(getenv func(string) string, natsURL string) (always, ifMissing bool, err error) {
	switch v := strings.ToLower(strings.TrimSpace(getenv(ProvisionEnv))); v {
	case "", "auto":
		return false, !hasCredentials(natsURL), nil
	default:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, false, fmt.Errorf("%s: %q is not auto, true or false", ProvisionEnv, v)
		}
		return b, false, nil
	}
}

// hasCredentials reports whether any of the comma-separated NATS URLs
// carries a user (or token).
func hasCredentials(natsURL string) bool {
	for _, u := range strings.Split(natsURL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err == nil && pu.User != nil {
			return true
		}
	}
	return false
}

// ProvisionConsumer creates or updates a durable pull consumer on WA_EVENTS
// for a backend team (admin step): explicit acks, from the first stored
// event, filtered to filter (e.g. "wa.*.evt.>" or "wa.42.evt.>"). Teams may
// not create consumers themselves: a consumer's deliver subject is not
// subject to permissions, so whoever creates one could push stored events
// onto any subject (docs/decisions/0005-nats-least-privilege.md).
func (b *Bus) ProvisionConsumer(ctx context.Context, name, filter string) error {
	_, err := b.JS.CreateOrUpdateConsumer(ctx, StreamEvents, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "zapbus backend team consumer (zapbus-admin provision)",
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return fmt.Errorf("bus: provision consumer %s (%s): %w", name, filter, err)
	}
	return nil
}

package web

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/webhook"
)

// Flags binds the notifier's tunables (timeouts, buffers, limits) to fs,
// each defaulting to its environment variable read through e, so the
// notifier and the dev binary take the same settings. Secrets (admin token,
// ticket key) are not flags: they come from the environment or files only.
func (c *Config) Flags(fs *flag.FlagSet, e *config.Env) {
	dur, integer := e.Duration, e.Int
	fs.DurationVar(&c.CommandTimeout, "command-timeout", dur("ZAPBUS_COMMAND_TIMEOUT", 10*time.Second), "connector command timeout (ZAPBUS_COMMAND_TIMEOUT)")
	fs.DurationVar(&c.SendTimeout, "send-timeout", dur("ZAPBUS_SEND_TIMEOUT", 30*time.Second), "send command timeout (ZAPBUS_SEND_TIMEOUT)")
	fs.IntVar(&c.StreamBuffer, "stream-buffer", integer("ZAPBUS_STREAM_BUFFER", 256), "events queued per stream client (ZAPBUS_STREAM_BUFFER)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", dur("ZAPBUS_SHUTDOWN_TIMEOUT", 10*time.Second), "graceful shutdown bound (ZAPBUS_SHUTDOWN_TIMEOUT)")
	fs.Float64Var(&c.SendRate, "send-rate", e.Rate("ZAPBUS_SEND_RATE", 5), "sends per second per token, -1 off (ZAPBUS_SEND_RATE)")
	fs.IntVar(&c.SendBurst, "send-burst", integer("ZAPBUS_SEND_BURST", 20), "send burst per token (ZAPBUS_SEND_BURST)")
	fs.Float64Var(&c.StreamOpenRate, "stream-open-rate", e.Rate("ZAPBUS_STREAM_OPEN_RATE", 1), "stream opens per second per token, -1 off (ZAPBUS_STREAM_OPEN_RATE)")
	fs.IntVar(&c.StreamOpenBurst, "stream-open-burst", integer("ZAPBUS_STREAM_OPEN_BURST", 10), "stream open burst per token (ZAPBUS_STREAM_OPEN_BURST)")
	fs.IntVar(&c.MaxStreamsPerMentorado, "max-streams-per-mentorado", e.Cap("ZAPBUS_MAX_STREAMS_PER_MENTORADO", 20), "concurrent streams per mentorado, -1 off (ZAPBUS_MAX_STREAMS_PER_MENTORADO)")
	fs.IntVar(&c.ReplayBatch, "replay-batch", integer("ZAPBUS_REPLAY_BATCH", 32), "events a resuming stream pulls at a time (ZAPBUS_REPLAY_BATCH)")
	fs.IntVar(&c.ReplayMaxBytes, "replay-max-bytes", integer("ZAPBUS_REPLAY_MAX_BYTES", 512<<10), "bytes a resuming stream pulls at a time (ZAPBUS_REPLAY_MAX_BYTES)")
	fs.DurationVar(&c.BodyReadTimeout, "body-read-timeout", dur("ZAPBUS_BODY_READ_TIMEOUT", 10*time.Second), "bound on reading a request body (ZAPBUS_BODY_READ_TIMEOUT)")
	fs.DurationVar(&c.StreamAuthRecheck, "stream-auth-recheck", dur("ZAPBUS_STREAM_AUTH_RECHECK", time.Minute), "how often open streams are checked again (ZAPBUS_STREAM_AUTH_RECHECK)")
	fs.DurationVar(&c.UploadTimeout, "upload-timeout", dur("ZAPBUS_UPLOAD_TIMEOUT", 5*time.Minute), "bound on reading one POST /v1/media body (ZAPBUS_UPLOAD_TIMEOUT)")
	// Per-kind file size limits: ZAPBUS_MEDIA_MAX_<KIND>, shared with the
	// connector (internal/media.LimitsFromEnv).
	c.MediaLimits = media.LimitsFromEnv(e)
	fs.IntVar(&c.MaxWebhooks, "max-webhooks", integer("ZAPBUS_MAX_WEBHOOKS", 20), "webhook endpoints per mentorado (ZAPBUS_MAX_WEBHOOKS)")
	c.WebhookPolicy, c.webhookPolicyErr = WebhookPolicyFromEnv(e)
	// The operator's sending maxima (issue #14), shared with the connector.
	c.SendLimits, c.sendLimitsErr = outbound.LimitsFromEnv(func(k string) string { return e.String(k, "") })
}

// WebhookPolicyFromEnv reads the webhook URL policy:
// ZAPBUS_WEBHOOK_ALLOW_NETS, a comma-separated list of networks (CIDR, or
// single addresses) allowed although private, loopback or otherwise
// refused; ZAPBUS_WEBHOOK_ALLOW_HTTP=true allows plain http:// URLs.
func WebhookPolicyFromEnv(e *config.Env) (webhook.Policy, error) {
	var p webhook.Policy
	nets, err := webhook.ParseAllowNets(e.String("ZAPBUS_WEBHOOK_ALLOW_NETS", ""))
	if err != nil {
		return p, fmt.Errorf("ZAPBUS_WEBHOOK_ALLOW_NETS: %w", err)
	}
	p.AllowNets = nets
	if v := strings.TrimSpace(e.String("ZAPBUS_WEBHOOK_ALLOW_HTTP", "")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return p, fmt.Errorf("ZAPBUS_WEBHOOK_ALLOW_HTTP: %q is not true or false", v)
		}
		p.AllowHTTP = b
	}
	return p, nil
}

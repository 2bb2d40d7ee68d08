package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Webhook consumers (internal/webhook, docs/decisions/0017-webhooks.md):
// each webhook endpoint is one durable pull consumer on WA_EVENTS named
// wh_<webhook id>_g<generation>. The dispatcher creates, lists and deletes
// them through these methods.

// WebhookConsumerPrefix starts the name of every webhook consumer.
const WebhookConsumerPrefix = "wh_"

// DLQSubjectWebhooks is where webhook dead letters go (in WA_DLQ): events
// an endpoint failed to take on every attempt.
const DLQSubjectWebhooks = DLQSubjectPrefix + "webhooks"

// HeaderWebhook names the webhook a dead letter was meant for.
const HeaderWebhook = "Zapbus-Webhook"

// WebhookConsumerName is wh_<id>_g<generation>.
func WebhookConsumerName(id int64, generation int) string {
	return fmt.Sprintf("%s%d_g%d", WebhookConsumerPrefix, id, generation)
}

// ParseWebhookConsumerName reverses WebhookConsumerName; ok is false for
// names that are not a webhook consumer's.
func ParseWebhookConsumerName(name string) (id int64, generation int, ok bool) {
	rest, found := strings.CutPrefix(name, WebhookConsumerPrefix)
	if !found {
		return 0, 0, false
	}
	idStr, genStr, found := strings.Cut(rest, "_g")
	if !found {
		return 0, 0, false
	}
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil || id <= 0 {
		return 0, 0, false
	}
	g, err := strconv.Atoi(genStr)
	if err != nil || g <= 0 {
		return 0, 0, false
	}
	return id, g, true
}

// WebhookConsumerNames lists the webhook consumers on WA_EVENTS.
func (b *Bus) WebhookConsumerNames(ctx context.Context) ([]string, error) {
	st, err := b.JS.Stream(ctx, StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("bus: webhook consumers: %w", err)
	}
	l := st.ConsumerNames(ctx)
	var names []string
	for n := range l.Name() {
		if strings.HasPrefix(n, WebhookConsumerPrefix) {
			names = append(names, n)
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("bus: webhook consumers: %w", err)
	}
	return names, nil
}

// WebhookConsumer binds an existing consumer of WA_EVENTS by name.
func (b *Bus) WebhookConsumer(ctx context.Context, name string) (jetstream.Consumer, error) {
	return b.JS.Consumer(ctx, StreamEvents, name)
}

// DeleteWebhookConsumer deletes a webhook consumer of WA_EVENTS; one
// already gone is not an error.
func (b *Bus) DeleteWebhookConsumer(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, WebhookConsumerPrefix) {
		return fmt.Errorf("bus: %q is not a webhook consumer", name)
	}
	err := b.JS.DeleteConsumer(ctx, StreamEvents, name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("bus: delete webhook consumer %s: %w", name, err)
	}
	return nil
}

// DeadLetterWebhook stores in WA_DLQ (on DLQSubjectWebhooks) the event at
// WA_EVENTS sequence seq that webhook could not take, with the reason.
// The same webhook's dead letter of the same sequence is stored once.
func (b *Bus) DeadLetterWebhook(ctx context.Context, webhook int64, subject string, seq uint64, data []byte, reason error) error {
	h := nats.Header{
		HeaderError:           []string{reason.Error()},
		HeaderOriginalSubject: []string{subject},
		HeaderOriginalStream:  []string{StreamEvents},
		HeaderOriginalSeq:     []string{strconv.FormatUint(seq, 10)},
		HeaderWebhook:         []string{strconv.FormatInt(webhook, 10)},
	}
	msgID := fmt.Sprintf("dlq:webhook:%d:%d", webhook, seq)
	msg := &nats.Msg{Subject: DLQSubjectWebhooks, Data: data, Header: h}
	if _, err := b.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("bus: dead-letter %s: %w", msgID, err)
	}
	return nil
}

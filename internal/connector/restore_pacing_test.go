package connector_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/connector/sim"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// gatedFactory makes every Connect wait for a release, counting the
// logins in flight.
type gatedFactory struct {
	*sim.Factory
	release chan struct{}
	waiting atomic.Int32
	max     atomic.Int32
}

func (g *gatedFactory) NewClient(ctx context.Context, p connector.ClientParams) (connector.Client, error) {
	c, err := g.Factory.NewClient(ctx, p)
	if err != nil {
		return nil, err
	}
	return &gatedClient{Client: c.(*sim.Client), g: g}, nil
}

type gatedClient struct {
	*sim.Client
	g *gatedFactory
}

func (c *gatedClient) Connect() error {
	n := c.g.waiting.Add(1)
	for {
		m := c.g.max.Load()
		if n <= m || c.g.max.CompareAndSwap(m, n) {
			break
		}
	}
	<-c.g.release
	c.g.waiting.Add(-1)
	return c.Client.Connect()
}

// TestRestoreBoundsLoginsInFlight: at start-up at most RestoreConcurrency
// sessions log in at once, and the next one starts as soon as one is
// connected: a restore slot is held for the login, not only the claim.
func TestRestoreBoundsLoginsInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	ids := e.mentorados(6)
	for i, m := range ids {
		e.paired(m, fmt.Sprintf("55329%08d", i))
	}
	const slots = 2
	g := &gatedFactory{Factory: &sim.Factory{W: e.world}, release: make(chan struct{})}
	a := e.start("a", g, nil, func(c *connector.Config) { c.RestoreConcurrency = slots })
	for done := 0; done < len(ids); done++ {
		want := int32(min(slots, len(ids)-done))
		testenv.Eventually(t, wait, func() bool { return g.waiting.Load() == want }, "%d logins waiting after %d connected", want, done)
		if m := g.max.Load(); m > slots {
			t.Fatalf("%d logins in flight at once, RestoreConcurrency is %d", m, slots)
		}
		g.release <- struct{}{}
	}
	testenv.Eventually(t, wait, func() bool {
		for _, m := range ids {
			if s, ok := a.c.Status(m); !ok || s.Status != event.StatusConnected {
				return false
			}
		}
		return true
	}, "every session restored")
	if m := g.max.Load(); m != slots {
		t.Fatalf("at most %d logins in flight, want exactly %d", m, slots)
	}
}

package bus_test

import (
	"context"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/testenv"
)

// Replicas (zapbus-admin provision -replicas) applies to every stream and
// bucket alike, the dead letters and the media files included
// (docs/decisions/0016-cluster-replicas-and-lease-ttl.md); unset, each is
// created with one. A cluster's test is internal/cluster.
func TestReplicasReachEveryStreamAndBucket(t *testing.T) {
	for _, want := range []int{0, 3} {
		c := bus.Config{Replicas: want}
		if want == 0 {
			want = 1
		}
		n := 0
		for _, sc := range c.StreamConfigs() {
			n++
			if sc.Replicas != want {
				t.Errorf("Replicas %d: stream %s has %d", c.Replicas, sc.Name, sc.Replicas)
			}
		}
		for _, kc := range c.BucketConfigs() {
			n++
			if kc.Replicas != want {
				t.Errorf("Replicas %d: bucket %s has %d", c.Replicas, kc.Bucket, kc.Replicas)
			}
		}
		for _, oc := range c.ObjectStoreConfigs() {
			n++
			if oc.Replicas != want {
				t.Errorf("Replicas %d: object store %s has %d", c.Replicas, oc.Bucket, oc.Replicas)
			}
		}
		if n != len(bus.Requires("")) {
			t.Errorf("%d streams and buckets configured, Requires names %d: one has no replicas setting", n, len(bus.Requires("")))
		}
	}
}

// On a single server -replicas 3 fails at once with the server's reason,
// rather than creating something an operator would take for replicated.
func TestProvisionReplicasNeedsCluster(t *testing.T) {
	ctx := context.Background()
	url := testenv.NATS(t)
	b, err := bus.Open(ctx, url, "zapbus-admin", bus.Config{Provision: true, Replicas: 3}, testenv.Logger(t))
	if err == nil {
		b.Close()
		t.Fatal("provisioning three replicas on a single server succeeded")
	}
	if !strings.Contains(err.Error(), "replicas") || !strings.Contains(err.Error(), bus.StreamEvents) {
		t.Fatalf("error does not say which stream and why: %v", err)
	}
	t.Logf("single server, -replicas 3: %v", err)
}

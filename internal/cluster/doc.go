// Package cluster holds the test of zapbus on a real 3-node JetStream
// cluster (docs/cluster.md): streams and buckets provisioned at
// Replicas: 3, two connectors on simulated WhatsApp sessions, a persister
// on Postgres, and traffic flowing while one node at a time is shut down
// and brought back on the same ports and store. It has no non-test code.
package cluster

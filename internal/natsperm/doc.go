// Package natsperm proves the repo's nats.conf: its test starts a real
// nats-server with that file and walks a permission matrix in which every
// zapbus service does its whole job with its own user and every known
// attack (stream reconfiguration, reading secrets through the JetStream
// API, shared inboxes, consumers on other users' objects) is refused.
// docs/decisions/0005-nats-least-privilege.md explains the grants.
package natsperm

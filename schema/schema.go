// Package schema embeds zapbus's Postgres migrations and the JSON Schemas of
// its events, so every binary carries them.
package schema

import "embed"

// Migrations holds numbered SQL files, applied in order by store.Migrate.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// Events holds one JSON Schema per event type (events/<type>.json) and the
// envelope schema (events/envelope.json).
//
//go:embed events/*.json
var Events embed.FS

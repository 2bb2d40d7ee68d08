package store

// Models lists every bun model, for the schema test.
func Models() []any { return models }

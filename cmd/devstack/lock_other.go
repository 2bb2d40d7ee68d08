//go:build !unix

package main

import (
	"fmt"
	"os"
)

// lockDataDir only creates dir where flock is not available.
func lockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ZAPBUS_DATA_DIR: %w", err)
	}
	return func() {}, nil
}

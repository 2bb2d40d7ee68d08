//go:build !race

package connector_test

// raceEnabled: see race_on_test.go.
const raceEnabled = false

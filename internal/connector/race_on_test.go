//go:build race

package connector_test

// raceEnabled: the race detector slows the real client's crypto several
// times; the largest tests scale down under it.
const raceEnabled = true

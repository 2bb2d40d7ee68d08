//go:build race

package web

// raceEnabled: the tests run under the race detector (about 10× slower
// on CPU-bound paths).
const raceEnabled = true

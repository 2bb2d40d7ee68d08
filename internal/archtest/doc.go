// Package archtest holds the architecture's import rules as tests, run
// with the normal suite (river guards its layers with depguard, tailscale
// with deptest): a rule that held when it was written fails the build the
// day a change breaks it, with the import chain that broke it.
package archtest

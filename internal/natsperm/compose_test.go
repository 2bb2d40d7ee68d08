package natsperm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestComposeHasNoDefaultSecretsOrOpenPorts guards compose.yaml: every
// secret must be set by the operator (compose refuses to start otherwise),
// NATS and its monitoring are never published on the host, and the
// services start only after the admin provisioning step.
func TestComposeHasNoDefaultSecretsOrOpenPorts(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(confPath(t)), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	compose := string(raw)
	refs := regexp.MustCompile(`\$\{([A-Z_]*(PASSWORD|TOKEN|KEY)[A-Z_]*)(:?[-?])?([^}]*)\}`).FindAllStringSubmatch(compose, -1)
	if len(refs) == 0 {
		t.Fatal("compose.yaml references no secrets")
	}
	for _, r := range refs {
		if r[3] != ":?" {
			t.Errorf("compose.yaml: ${%s%s%s} must be ${%s:?set %s}: no default secrets", r[1], r[3], r[4], r[1], r[1])
		}
	}
	for _, port := range []string{"4222", "8222", "6222", "5432"} {
		if regexp.MustCompile(`ports:.*` + port).MatchString(compose) {
			t.Errorf("compose.yaml publishes port %s on the host", port)
		}
	}
	for _, m := range regexp.MustCompile(`ports:\s*\[([^\]]*)\]`).FindAllStringSubmatch(compose, -1) {
		for _, p := range strings.Split(m[1], ",") {
			if p = strings.Trim(strings.TrimSpace(p), `"`); !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("compose.yaml publishes %q on every host interface; bind it to 127.0.0.1", p)
			}
		}
	}
	for _, want := range []string{`zapbus-admin", "provision"`, "service_completed_successfully", "NATS_ADMIN_PASSWORD"} {
		if !strings.Contains(compose, want) {
			t.Errorf("compose.yaml lacks %s (the admin provisioning step before the services)", want)
		}
	}
}

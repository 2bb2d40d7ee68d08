package event

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Provider names the WhatsApp provider a mentorado's number runs on
// (issue #16, docs/decisions/0021-providers.md). Every provider publishes
// the same events on the same subjects; Envelope.Provider says which one
// published an event.
type Provider string

// Providers.
const (
	// ProviderMeta is Meta's official WhatsApp Cloud API (Graph API
	// messages endpoint, webhooks signed with the app secret).
	ProviderMeta Provider = "meta"
	// ProviderWeb is WhatsApp Web through whatsmeow: the connector's
	// sessions.
	ProviderWeb Provider = "whatsapp_web"
	// ProviderZAPI is Z-API (z-api.io), a hosted WhatsApp Web gateway.
	ProviderZAPI Provider = "zapi"
)

// ProviderPriority lists the providers in the order the active one is
// picked when a mentorado has several configured and no override: the
// system zapbus replaces picks Meta, then WhatsApp Web, then Z-API.
var ProviderPriority = []Provider{ProviderMeta, ProviderWeb, ProviderZAPI}

// Valid reports whether p is a known provider.
func (p Provider) Valid() bool { return slices.Contains(ProviderPriority, p) }

// PickProvider returns the active provider among configured: override
// when it is configured, otherwise the first of ProviderPriority that is.
// It returns "" when none is configured.
func PickProvider(configured []Provider, override Provider) Provider {
	if override != "" && slices.Contains(configured, override) {
		return override
	}
	for _, p := range ProviderPriority {
		if slices.Contains(configured, p) {
			return p
		}
	}
	return ""
}

// ProviderCommandPrefix + provider + "." + command subject is where a
// command for a mentorado whose active provider is not WhatsApp Web is
// served: the provider gateways (cmd/gateway) listen on
// zapbus.provider.<provider>.wa.*.cmd.> in one queue group. The notifier
// sends there directly; a connector given such a command on
// wa.<m>.cmd.<verb> relays it there.
const ProviderCommandPrefix = "zapbus.provider."

// ProviderCommandSubject is zapbus.provider.<p>.wa.<m>.cmd.<verb>.
func ProviderCommandSubject(p Provider, mentorado int64, v Verb) string {
	return ProviderCommandPrefix + string(p) + "." + CommandSubject(mentorado, v)
}

// ProviderCommandWildcard is zapbus.provider.<p>.wa.*.cmd.>.
func ProviderCommandWildcard(p Provider) string {
	return ProviderCommandPrefix + string(p) + "." + CommandWildcard
}

// ParseProviderSubject splits zapbus.provider.<p>.wa.<m>.cmd.<verb> into
// the provider and the command subject.
func ParseProviderSubject(subject string) (Provider, string, error) {
	rest, ok := strings.CutPrefix(subject, ProviderCommandPrefix)
	if !ok {
		return "", "", fmt.Errorf("event: not a provider subject: %q", subject)
	}
	p, cmd, ok := strings.Cut(rest, ".")
	if !ok || !Provider(p).Valid() {
		return "", "", fmt.Errorf("event: bad provider in subject %q", subject)
	}
	return Provider(p), cmd, nil
}

// Template is a Meta message template to send (Kind template): the only
// kind Meta's Cloud API delivers outside the 24-hour customer-service
// window. Name and Language name an approved template of the WhatsApp
// Business Account; Params fill its body's {{1}}, {{2}}, … in order.
type Template struct {
	Name     string   `json:"name"`
	Language string   `json:"language"`
	Params   []string `json:"params,omitempty"`
}

// MaxTemplateParams bounds Template.Params.
const MaxTemplateParams = 32

// Validate checks a template reference.
func (t *Template) Validate() *CommandError {
	switch {
	case t.Name == "" || len(t.Name) > 512 || strings.TrimFunc(t.Name, func(r rune) bool {
		return r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
	}) != "":
		return NewCommandError(CodeBadRequest, "template.name must be a template name: lowercase letters, digits and _")
	case t.Language == "" || len(t.Language) > 16:
		return NewCommandError(CodeBadRequest, "template.language must be a language code such as pt_BR")
	case len(t.Params) > MaxTemplateParams:
		return NewCommandError(CodeBadRequest, "template.params has more than %d values", MaxTemplateParams)
	}
	for i, p := range t.Params {
		if strings.TrimSpace(p) == "" || !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0 || utf8.RuneCountInString(p) > 1024 {
			return NewCommandError(CodeBadRequest, "template.params[%d] must be non-blank valid text of at most 1024 characters", i)
		}
	}
	return nil
}

// Text renders the template reference as the text a thread shows for the
// sent message: "[template name (language)] param1 · param2".
func (t *Template) Text() string {
	s := "[" + t.Name + " (" + t.Language + ")]"
	if len(t.Params) > 0 {
		s += " " + strings.Join(t.Params, " · ")
	}
	return s
}

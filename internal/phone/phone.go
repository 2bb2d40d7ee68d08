// Package phone turns what people type and what WhatsApp JIDs carry into one
// form: E.164 digits without the plus sign ("5511987654321"). Parsing rules
// come from libphonenumber (github.com/nyaruka/phonenumbers), not from
// hand-written prefixes.
package phone

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// DefaultRegion is used for numbers typed without a country code.
const DefaultRegion = "BR"

// ErrInvalid is returned (wrapped) for input that is not a phone number.
var ErrInvalid = errors.New("invalid phone number")

// Normalizer parses user input with a default region.
type Normalizer struct {
	Region string // ISO 3166 region for numbers without a country code; DefaultRegion when empty
}

// Normalize returns the E.164 digits of s, using DefaultRegion.
func Normalize(s string) (string, error) { return Normalizer{}.Normalize(s) }

// Normalize returns the E.164 digits of a number typed by a person:
// "+55 (11) 98765-4321", "11 98765-4321", "5511987654321" and
// "0055 11 98765 4321" all give "5511987654321". Brazilian mobiles written
// without the 9th digit are kept as written: WhatsApp's own lookup decides
// which form an account uses.
func (n Normalizer) Normalize(s string) (string, error) {
	region := n.Region
	if region == "" {
		region = DefaultRegion
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(s) > 64 {
		return "", fmt.Errorf("%w: too long", ErrInvalid)
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789+-() ./", r) {
			return "", fmt.Errorf("%w: unexpected character %q", ErrInvalid, r)
		}
	}
	if rest, ok := strings.CutPrefix(s, "00"); ok {
		s = "+" + rest // international prefix as typed in most of the world
	}
	candidates := []string{s}
	if !strings.HasPrefix(s, "+") {
		// Digits that already start with a country code, as stored by many
		// CRMs: try them as international too.
		candidates = append(candidates, "+"+s)
	}
	for i, c := range candidates {
		num, err := phonenumbers.Parse(c, region)
		if err != nil {
			continue
		}
		if !accept(num) {
			continue
		}
		// A national number that is merely possible, while the international
		// reading is valid, is the international one ("5511987654321").
		if i == 0 && len(candidates) > 1 && !phonenumbers.IsValidNumber(num) {
			if alt, err := phonenumbers.Parse(candidates[1], region); err == nil && phonenumbers.IsValidNumber(alt) {
				num = alt
			}
		}
		out := digits(phonenumbers.Format(num, phonenumbers.E164))
		// The result must read back as itself; odd national prefixes
		// (carrier codes, trunk zeros) can otherwise produce digits that are
		// not a number at all.
		if back, err := phonenumbers.Parse("+"+out, region); err != nil || !accept(back) ||
			digits(phonenumbers.Format(back, phonenumbers.E164)) != out {
			continue
		}
		return out, nil
	}
	return "", fmt.Errorf("%w: %q", ErrInvalid, mask(s))
}

// accept takes valid numbers, and Brazilian mobiles of the legacy 8-digit
// form (valid in length, which WhatsApp accounts still use).
func accept(num *phonenumbers.PhoneNumber) bool {
	if phonenumbers.IsValidNumber(num) {
		return true
	}
	if num.GetCountryCode() == 55 && phonenumbers.IsPossibleNumber(num) {
		// DDD + 8-digit mobile without the 9: accept when the form with the
		// 9th digit is a valid mobile.
		nsn := phonenumbers.GetNationalSignificantNumber(num)
		if len(nsn) != 10 || nsn[2] < '6' {
			return false
		}
		with9, err := phonenumbers.Parse("+55"+nsn[:2]+"9"+nsn[2:], "BR")
		return err == nil && phonenumbers.IsValidNumber(with9)
	}
	return false
}

// FromJID returns the phone digits of a phone-number JID
// ("5511987654321@s.whatsapp.net" or "5511987654321:3@s.whatsapp.net"), and
// "" for LIDs, groups and anything else that does not carry a number.
func FromJID(jid string) string {
	user, server, ok := strings.Cut(jid, "@")
	if !ok || server != "s.whatsapp.net" {
		return ""
	}
	user, _, _ = strings.Cut(user, ":") // device suffix
	user, _, _ = strings.Cut(user, ".") // agent suffix
	if len(user) < 8 || len(user) > 15 {
		return ""
	}
	for _, r := range user {
		if r < '0' || r > '9' {
			return ""
		}
	}
	return user
}

// JID returns the WhatsApp user JID for E.164 digits.
func JID(e164 string) string { return e164 + "@s.whatsapp.net" }

// BrazilVariants returns the forms a Brazilian mobile may have on WhatsApp:
// with and without the 9th digit (the number itself first). Other numbers
// return just themselves.
func BrazilVariants(e164 string) []string {
	if !strings.HasPrefix(e164, "55") {
		return []string{e164}
	}
	nsn := e164[2:]
	switch {
	case len(nsn) == 11 && nsn[2] == '9' && nsn[3] >= '6':
		return []string{e164, "55" + nsn[:2] + nsn[3:]}
	case len(nsn) == 10 && nsn[2] >= '6':
		return []string{e164, "55" + nsn[:2] + "9" + nsn[2:]}
	}
	return []string{e164}
}

func digits(s string) string {
	return strings.TrimPrefix(s, "+")
}

// mask keeps the last four digits of a number out of error messages that may
// be logged.
func mask(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return strings.Repeat("*", len(s)-4) + s[len(s)-4:]
}

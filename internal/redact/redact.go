// Package redact hides personal data — phone numbers and the WhatsApp
// JIDs and LIDs built from them — in logs. Under the LGPD they are
// personal data: zapbus logs them in full only at debug level; at info and
// above they are masked, keeping enough (country and area code, the last
// four digits, the JID's device and server) to tell numbers apart while
// debugging an incident.
//
// Every process wraps its log output in Writer, so nothing written at info
// or above carries a full number, whichever package (or whatsmeow) wrote
// it; Phone and Text mask a single value where a call site wants to log one.
package redact

import (
	"io"
	"regexp"

	"github.com/rs/zerolog"
)

// Phone masks the middle digits of a phone number: 13 digits
// "5521911112222" become "55219****2222". Numbers of 10 or more digits
// keep their first 5 and last 4 digits, 7 to 9 digits their first and
// last 2, shorter ones no digit. Characters other than digits are kept, so
// "+55 (21) 91111-2222" becomes "+55 (21) 9****-2222".
func Phone(p string) string {
	n := 0
	for i := 0; i < len(p); i++ {
		if isDigit(p[i]) {
			n++
		}
	}
	head, tail := 0, 0
	switch {
	case n >= 10:
		head, tail = 5, 4
	case n >= 7:
		head, tail = 2, 2
	}
	b := []byte(p)
	k := 0
	for i := range b {
		if !isDigit(b[i]) {
			continue
		}
		if k >= head && k < n-tail {
			b[i] = '*'
		}
		k++
	}
	return string(b)
}

// phoneLike is a run of 10 to 15 digits standing alone (a phone number in
// E.164 without "+", the user part of a JID or a LID).
var phoneLike = regexp.MustCompile(`\b\d{10,15}\b`)

// Text masks every phone-like number in s (see Phone); the result has the
// same length.
func Text(s string) string {
	return phoneLike.ReplaceAllStringFunc(s, Phone)
}

func textBytes(p []byte) []byte {
	return phoneLike.ReplaceAllFunc(p, func(m []byte) []byte { return []byte(Phone(string(m))) })
}

// Writer wraps a zerolog output: lines logged at info level or above (and
// lines without a level) have phone numbers and JIDs masked; debug and
// trace lines pass in full.
func Writer(w io.Writer) zerolog.LevelWriter { return levelWriter{w} }

type levelWriter struct{ w io.Writer }

func (l levelWriter) Write(p []byte) (int, error) {
	if _, err := l.w.Write(textBytes(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (l levelWriter) WriteLevel(lvl zerolog.Level, p []byte) (int, error) {
	if lvl <= zerolog.DebugLevel {
		if _, err := l.w.Write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return l.Write(p)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

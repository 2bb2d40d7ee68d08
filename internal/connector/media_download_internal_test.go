package connector

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
)

func TestMediaRetryDelay(t *testing.T) {
	c := MediaConfig{RetryBase: time.Second, RetryMax: 10 * time.Second}.WithDefaults()
	for _, tc := range []struct {
		n        int
		rnd      float64
		min, max time.Duration
	}{
		{1, 0, 500 * time.Millisecond, 500 * time.Millisecond},
		{1, 0.999, 500 * time.Millisecond, time.Second},
		{3, 0.5, 3 * time.Second, 3 * time.Second},     // 4 s · 0.75
		{10, 0.999, 5 * time.Second, 10 * time.Second}, // capped
	} {
		if d := c.retryDelay(tc.n, tc.rnd); d < tc.min || d > tc.max {
			t.Errorf("retryDelay(%d, %v) = %s, want [%s, %s]", tc.n, tc.rnd, d, tc.min, tc.max)
		}
	}
}

// Download errors become codes: an HTTP error's text holds the media URL
// (its direct path), which must not reach logs or events.
func TestMediaErrCodeHidesURL(t *testing.T) {
	url := "https://mmg.whatsapp.net/v/t62.7118-24/secret-path?ccb=11-4&oh=tok&hash=abc"
	for err, want := range map[error]string{
		fmt.Errorf("failed to download %s: %w", url, whatsmeow.ErrMediaDownloadFailedWith404): "http_404",
		fmt.Errorf("get %q: %w", url, errors.New("connection refused")):                       "download_error",
		fmt.Errorf("x: %w", whatsmeow.ErrInvalidMediaSHA256):                                  "verify_failed",
		whatsmeow.ErrMediaNotAvailableOnPhone:                                                 mediaNotOnPhone,
		errReuploadTimeout:                                                                    "reupload_timeout",
	} {
		if got := errCode(err); got != want {
			t.Errorf("errCode(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestMediaConfigValidate(t *testing.T) {
	ok := MediaConfig{}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.ReuploadWait = bad.Lease
	if bad.Validate() == nil {
		t.Error("a lease shorter than the re-upload wait passed")
	}
	bad = ok
	bad.Concurrency = -1
	if bad.Validate() == nil {
		t.Error("negative concurrency passed")
	}
}

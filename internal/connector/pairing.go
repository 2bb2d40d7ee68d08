package connector

import (
	"context"
	"fmt"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
)

// onConnect handles a connect command: a paired session reconnects, one
// without a device starts pairing by QR code or phone pairing code.
func (s *session) onConnect(ctx context.Context, req event.ConnectRequest, res chan connectResult) {
	reply := func() { r := s.snapshot().reply; res <- connectResult{reply: &r} }
	switch s.status {
	case event.StatusConnected, event.StatusConnecting, event.StatusQR, event.StatusPairing, event.StatusBackoff, event.StatusBanned:
		if s.cli != nil || s.status == event.StatusBanned {
			reply()
			return
		}
	}
	method := req.Method
	if method == "" {
		method = event.ConnectQR
	}
	if method != event.ConnectQR && method != event.ConnectPhone {
		res <- connectResult{err: event.NewCommandError(event.CodeBadRequest, "method must be qr or phone")}
		return
	}
	tctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if !s.jid.IsEmpty() {
		if err := s.d.devices.setDesired(tctx, s.m, desiredConnected); err != nil {
			res <- connectResult{err: err}
			return
		}
		s.desired = true
		s.attempt = 0
		s.startPaired(ctx)
		reply()
		return
	}
	var pairTo string
	if method == event.ConnectPhone {
		p, err := phone.Normalize(req.Phone)
		if err != nil {
			res <- connectResult{err: event.NewCommandError(event.CodeInvalidPhone, "%v", err)}
			return
		}
		if owner, taken, err := s.d.devices.phoneOwner(tctx, p, s.m); err != nil {
			res <- connectResult{err: err}
			return
		} else if taken {
			s.log.Warn().Int64("owner", owner).Msg("pairing refused: number already paired")
			res <- connectResult{err: event.NewCommandError(event.CodeAlreadyPaired, "this number is paired to another account")}
			return
		}
		pairTo = p
	}
	if err := s.ensureClient(ctx); err != nil {
		res <- connectResult{err: err}
		return
	}
	qrCtx, qrCancel := context.WithCancel(ctx)
	ch, err := s.cli.GetQRChannel(qrCtx)
	if err != nil {
		qrCancel()
		s.dropClient()
		res <- connectResult{err: fmt.Errorf("qr channel: %w", err)}
		return
	}
	s.qrCancel = qrCancel
	s.qrSeen = false
	s.mode = pairQR
	if method == event.ConnectPhone {
		s.mode = pairPhone
		s.pairPhone = pairTo
		s.pairWaiter = res
	}
	gen := s.gen
	go func() {
		for item := range ch {
			if !s.post(func(ctx context.Context) { s.onQR(ctx, gen, item) }) {
				return
			}
		}
	}()
	s.desired = true
	s.attempt = 0
	s.setStatus(event.StatusConnecting, "pairing")
	s.connectAsync(false)
	if method == event.ConnectQR {
		reply()
	}
}

func (s *session) onQR(ctx context.Context, gen int, item whatsmeow.QRChannelItem) {
	if gen != s.gen {
		return
	}
	now := s.d.clock.Now()
	switch item.Event {
	case whatsmeow.QRChannelEventCode:
		first := !s.qrSeen
		s.qrSeen = true
		if s.mode == pairQR {
			s.publishQR(&event.QR{Code: item.Code, ExpiresAt: now.Add(item.Timeout)})
			if s.status != event.StatusQR {
				s.setStatus(event.StatusQR, "scan the QR code")
			}
		} else if s.mode == pairPhone && first {
			s.requestPairingCode(ctx)
		}
	case whatsmeow.QRChannelSuccess.Event:
		// PairSuccess arrives through the event handler.
	case whatsmeow.QRChannelTimeout.Event:
		if s.jid.IsEmpty() {
			s.failPairing(event.StatusDisconnected, "pairing timed out")
		}
	case whatsmeow.QRChannelEventError:
		if s.jid.IsEmpty() {
			s.failPairing(event.StatusDisconnected, fmt.Sprintf("pairing failed: %v", item.Error))
		}
	case whatsmeow.QRChannelClientOutdated.Event, whatsmeow.QRChannelScannedWithoutMultidevice.Event:
		if s.jid.IsEmpty() {
			s.failPairing(event.StatusDisconnected, item.Event)
		}
	}
}

// requestPairingCode asks WhatsApp for a phone pairing code in the
// background; the code comes back through the inbox.
func (s *session) requestPairingCode(ctx context.Context) {
	cli, gen, p := s.cli, s.gen, s.pairPhone
	go func() {
		tctx, cancel := s.withTimeout(ctx)
		defer cancel()
		code, err := cli.PairPhone(tctx, p, true, whatsmeow.PairClientChrome, "Chrome (Linux)")
		s.post(func(context.Context) {
			if gen != s.gen {
				return
			}
			if err != nil {
				s.failPairing(event.StatusDisconnected, fmt.Sprintf("pairing code: %v", err))
				return
			}
			s.publishQR(&event.QR{PairingCode: code, ExpiresAt: s.d.clock.Now().Add(s.d.cfg.PairingCodeTTL)})
			s.setStatus(event.StatusPairing, "enter the pairing code on the phone")
			if s.pairWaiter != nil {
				r := s.snapshot().reply
				r.PairingCode = code
				s.pairWaiter <- connectResult{reply: &r}
				s.pairWaiter = nil
			}
		})
	}()
}

func (s *session) publishQR(q *event.QR) {
	env, err := event.New(s.m, event.QREventID(s.m, q), s.d.clock.Now(), q)
	if err != nil {
		s.log.Error().Err(err).Msg("build qr event")
		return
	}
	s.log.Debug().Msg("pairing secret published")
	s.out.push(env)
}

func (s *session) failPairing(st event.Status, reason string) {
	if s.pairWaiter != nil {
		s.pairWaiter <- connectResult{err: event.NewCommandError(event.CodeInternal, "%s", reason)}
		s.pairWaiter = nil
	}
	s.desired = false
	s.terminate(st, reason)
}

// prePair refuses a number already paired to another mentorado. It runs
// on a whatsmeow goroutine.
func (s *session) prePair(ctx context.Context, jid types.JID) bool {
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.PrePairTimeout)
	defer cancel()
	owner, taken, err := s.d.devices.phoneOwner(ctx, jid.User, s.m)
	if err != nil {
		s.log.Error().Err(err).Msg("pre-pair check")
		return false
	}
	if taken {
		s.log.Warn().Int64("owner", owner).Msg("pairing refused: number already paired to another mentorado")
		return false
	}
	return true
}

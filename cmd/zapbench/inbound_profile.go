package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// CPU profile attribution for the inbound scenario: which part of the
// process spent a step's CPU. The profile is read with a small decoder of
// the pprof protobuf (profile.proto: samples, locations, functions, string
// table), so zapbench needs no profile library.

type profileBuffer struct{ bytes.Buffer }

func startProfile(out **profileBuffer) error {
	pb := &profileBuffer{}
	if err := pprof.StartCPUProfile(pb); err != nil {
		return err
	}
	*out = pb
	return nil
}

// stopProfile stops the profile, writes it to dir/name.pprof when dir is
// set, and returns the share (percent) of CPU samples per category.
func stopProfile(pb *profileBuffer, dir, name string) map[string]float64 {
	if pb == nil {
		return nil
	}
	pprof.StopCPUProfile()
	raw := pb.Bytes()
	if dir != "" {
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, name+".pprof"), raw, 0o644)
	}
	shares, err := attribute(raw)
	if err != nil {
		return map[string]float64{}
	}
	return shares
}

// Categories, in the order of the table.
var profileCategories = []string{"wafake", "whatsmeow", "zapbus", "pgx", "nats_client", "nats_server", "bench", "runtime"}

// categorize names the part of the process a stack (innermost frame first)
// belongs to. The fake server and its phones use libsignal and protobuf
// too, so any stack through wafake is the fake's, whatever its leaf; the
// embedded NATS server likewise. Otherwise the innermost frame of a known
// package decides (crypto and encoding frames go to their caller); the
// harness (zapbench's senders and live-subject ledger) is "bench".
func categorize(funcs []string) string {
	for _, f := range funcs {
		switch {
		case strings.Contains(f, "zapbus/internal/wafake"):
			return "wafake"
		case strings.Contains(f, "nats-server/v2"):
			return "nats_server"
		}
	}
	for _, f := range funcs {
		switch {
		case strings.HasPrefix(f, "go.mau.fi/"):
			return "whatsmeow"
		case strings.HasPrefix(f, "github.com/jackc/"), strings.HasPrefix(f, "database/sql"):
			return "pgx"
		case strings.HasPrefix(f, "github.com/nats-io/"):
			return "nats_client"
		case strings.HasPrefix(f, "github.com/zapbus/zapbus/cmd/zapbench."), strings.HasPrefix(f, "main."):
			return "bench" // the measuring harness itself
		case strings.HasPrefix(f, "github.com/zapbus/zapbus/"), strings.HasPrefix(f, "github.com/uptrace/bun"):
			return "zapbus"
		}
	}
	return "runtime"
}

func fmtShares(s map[string]float64) string {
	if len(s) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("cpu%")
	for _, c := range profileCategories {
		fmt.Fprintf(&b, " %s %.0f", c, s[c])
	}
	return b.String()
}

// attribute decodes a gzipped pprof profile and returns percent of the
// sampled CPU time per category.
func attribute(raw []byte) (map[string]float64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	type sample struct {
		locs []uint64
		vals []int64
	}
	var (
		samples []sample
		strs    []string
		locFns  = map[uint64][]uint64{} // location → function ids, innermost first
		fnName  = map[uint64]int64{}    // function → string index
	)
	err = eachField(data, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 2: // sample
			var s sample
			err := eachField(v, func(n protowire.Number, t protowire.Type, b []byte, x uint64) error {
				switch {
				case n == 1 && t == protowire.BytesType:
					s.locs = append(s.locs, packed(b)...)
				case n == 1:
					s.locs = append(s.locs, x)
				case n == 2 && t == protowire.BytesType:
					for _, u := range packed(b) {
						s.vals = append(s.vals, int64(u))
					}
				case n == 2:
					s.vals = append(s.vals, int64(x))
				}
				return nil
			})
			samples = append(samples, s)
			return err
		case 4: // location
			var id uint64
			var fns []uint64
			err := eachField(v, func(n protowire.Number, t protowire.Type, b []byte, x uint64) error {
				switch n {
				case 1:
					id = x
				case 4: // line
					return eachField(b, func(n protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
						if n == 1 {
							fns = append(fns, x)
						}
						return nil
					})
				}
				return nil
			})
			// Lines of a location list inlined functions innermost first.
			locFns[id] = fns
			return err
		case 5: // function
			var id uint64
			var name int64
			err := eachField(v, func(n protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
				switch n {
				case 1:
					id = x
				case 2:
					name = int64(x)
				}
				return nil
			})
			fnName[id] = name
			return err
		case 6: // string table
			strs = append(strs, string(v))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	byCat := map[string]int64{}
	var total int64
	for _, s := range samples {
		var names []string
		for _, l := range s.locs {
			for _, f := range locFns[l] {
				if i := fnName[f]; i >= 0 && int(i) < len(strs) {
					names = append(names, strs[i])
				}
			}
		}
		// The CPU profile's values are (samples, nanoseconds).
		v := int64(1)
		if len(s.vals) > 0 {
			v = s.vals[len(s.vals)-1]
		}
		byCat[categorize(names)] += v
		total += v
	}
	out := map[string]float64{}
	if total == 0 {
		return out, nil
	}
	for _, c := range profileCategories {
		out[c] = float64(byCat[c]) * 100 / float64(total)
	}
	return out, nil
}

// eachField calls f for every field of a protobuf message: v is the
// payload of a length-delimited field, x the value of a varint or fixed one.
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var y uint32
			y, n = protowire.ConsumeFixed32(b)
			x = uint64(y)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

func packed(b []byte) []uint64 {
	var out []uint64
	for len(b) > 0 {
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return out
		}
		out = append(out, x)
		b = b[n:]
	}
	return out
}

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
)

// testJPEG is a real w×h JPEG (a gradient), so a browser decodes it.
func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{R: uint8(255 * x / w), G: uint8(255 * y / h), B: 140, A: 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testOggOpus is a real Ogg Opus voice note of packets×20 ms of silence
// (the Opus frame F8 FF FE, mono 48 kHz), which a browser plays.
func testOggOpus(packets int) []byte {
	const serial = 0x5a4b5a42
	const preSkip = 312
	head := []byte("OpusHead")
	head = append(head, 1, 1) // version, one channel
	head = binary.LittleEndian.AppendUint16(head, preSkip)
	head = binary.LittleEndian.AppendUint32(head, 48000)
	head = append(head, 0, 0, 0) // gain, mapping family 0
	vendor := "zapbus test"
	tags := []byte("OpusTags")
	tags = binary.LittleEndian.AppendUint32(tags, uint32(len(vendor)))
	tags = append(tags, vendor...)
	tags = binary.LittleEndian.AppendUint32(tags, 0)

	var out []byte
	seq := uint32(0)
	page := func(flags byte, granule uint64, packets [][]byte) {
		var lacing, body []byte
		for _, p := range packets {
			n := len(p)
			for n >= 255 {
				lacing = append(lacing, 255)
				n -= 255
			}
			lacing = append(lacing, byte(n))
			body = append(body, p...)
		}
		h := []byte("OggS")
		h = append(h, 0, flags)
		h = binary.LittleEndian.AppendUint64(h, granule)
		h = binary.LittleEndian.AppendUint32(h, serial)
		h = binary.LittleEndian.AppendUint32(h, seq)
		h = binary.LittleEndian.AppendUint32(h, 0) // CRC, filled below
		h = append(h, byte(len(lacing)))
		h = append(h, lacing...)
		pg := append(h, body...)
		binary.LittleEndian.PutUint32(pg[22:], oggCRC(pg))
		out = append(out, pg...)
		seq++
	}
	page(0x02, 0, [][]byte{head})
	page(0, 0, [][]byte{tags})
	var audio [][]byte
	for i := 0; i < packets; i++ {
		audio = append(audio, []byte{0xf8, 0xff, 0xfe})
	}
	page(0x04, uint64(packets*960), audio)
	return out
}

// oggCRC is Ogg's page checksum: CRC-32, polynomial 0x04c11db7, not
// reflected, initial value 0.
func oggCRC(b []byte) uint32 {
	var crc uint32
	for _, c := range b {
		crc ^= uint32(c) << 24
		for i := 0; i < 8; i++ {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// testPDF is a small document (sniffed as application/pdf).
func testPDF() []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n% zapbus test proposal\n")
	for i := 0; i < 200; i++ {
		b.WriteString("Proposta comercial, item ")
		b.WriteByte(byte('0' + i%10))
		b.WriteString(": mentoria em grupo, 12 encontros.\n")
	}
	b.WriteString("%%EOF\n")
	return b.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

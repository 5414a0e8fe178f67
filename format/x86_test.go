package format

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestX86FilterKnownAnswer(t *testing.T) {
	// CALL -16 at offset 3 becomes the absolute target 3+5-16 = -8
	// (sign-extended 25-bit); JMP (E9) is not converted, nor a CALL whose
	// displacement is large, nor one without four bytes after it.
	b := []byte{0x90, 0x90, 0x90, 0xE8, 0xF0, 0xFF, 0xFF, 0xFF, 0xE9, 0x10, 0x00, 0x00, 0x00,
		0xE8, 0x00, 0x00, 0x00, 0x12, 0xE8, 0x01}
	want := bytes.Clone(b)
	binary.LittleEndian.PutUint32(want[4:], 0xFFFFFFF8)
	x86Encode(b)
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
	x86Decode(b)
	if b[4] != 0xF0 || b[7] != 0xFF {
		t.Fatalf("decode did not restore: % x", b)
	}
}

func FuzzX86Filter(f *testing.F) {
	f.Add([]byte{0xE8, 0, 0, 0, 0})
	f.Add([]byte{0xE8, 0xE8, 0xE9, 0xFF, 0xFF, 0xFF, 0xE8, 1, 2, 3, 4, 5})
	f.Add(bytes.Repeat([]byte{0xE9, 0xFF, 0xFF, 0xFF, 0x00}, 50))
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		x86Encode(b)
		x86Decode(b)
		if !bytes.Equal(b, orig) {
			t.Fatalf("x86 filter is not invertible on % x", orig)
		}
	})
}

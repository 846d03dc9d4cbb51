// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package server

import (
	"bytes"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestBase36(t *testing.T) {
	for _, tt := range []struct {
		name     string
		input    []byte
		expected string
	}{
		{
			name:     "empty input",
			input:    []byte{},
			expected: "",
		},
		{
			name:     "zero byte",
			input:    []byte{0},
			expected: "0",
		},
		{
			name:     "single byte - 1",
			input:    []byte{1},
			expected: "1",
		},
		{
			name:     "single byte - 35",
			input:    []byte{35},
			expected: "Z",
		},
		{
			name:     "single byte - 36",
			input:    []byte{36},
			expected: "10",
		},
		{
			name:     "single byte - 255",
			input:    []byte{255},
			expected: "73",
		},
		{
			name:     "multiple bytes - hello",
			input:    []byte("hello"),
			expected: "5PZCSZU7",
		},
		{
			name:     "multiple bytes - test",
			input:    []byte("test"),
			expected: "WANEK4",
		},
		{
			name:     "complex text",
			input:    []byte("long_complexTeXT wITH_space"),
			expected: "6XMY2Y5EIZEF867E5LXYHH2OVVURC1A852VPOAZP0L",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			encoded := encodeBase36(tt.input)
			assert.Equal(t, tt.expected, encoded)
			decoded := decodeBase36(encoded)
			assert.Equal(t, tt.input, decoded)
			decoded = decodeBase36(strings.ToLower(encoded))
			assert.Equal(t, tt.input, decoded)
		})
	}
}

// decodeBase36BigInt is decodeBase36 as pion/turn v5.1.3 wrote it, with big.Int.
func decodeBase36BigInt(encoded string) []byte {
	if encoded == "" {
		return []byte{}
	}

	if encoded == "0" {
		return []byte{0}
	}

	num := big.NewInt(0)
	base := big.NewInt(36)

	for _, char := range strings.ToUpper(encoded) {
		digit := strings.IndexRune(base36Alphabet, char)
		if digit == -1 {
			return nil
		}
		num.Mul(num, base)
		num.Add(num, big.NewInt(int64(digit)))
	}

	return num.Bytes()
}

func TestDecodeBase36MatchesBigInt(t *testing.T) {
	inputs := []string{
		"", "0", "00", "000", "1", "z", "Z", "10", "zz", "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
		"0001", "5pzcszu7", "ı", "ſ", "\u212a", "\xff", "a\xffb", "-1", " 1", "١",
	}
	rng := rand.New(rand.NewPCG(1, 2)) //nolint:gosec
	alphabet := []rune(base36Alphabet + "abcdefghijklmnopqrstuvwxyz0ıſ\u212a!")
	for range 2000 {
		r := make([]rune, rng.IntN(40))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(r))
	}
	for _, in := range inputs {
		got, want := decodeBase36(in), decodeBase36BigInt(in)
		if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("decodeBase36(%q) = %v, big.Int gives %v", in, got, want)
		}
	}
}

func FuzzDecodeBase36(f *testing.F) {
	f.Add("5PZCSZU7")
	f.Add("00z")
	f.Fuzz(func(t *testing.T, in string) {
		got, want := decodeBase36(in), decodeBase36BigInt(in)
		if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("decodeBase36(%q) = %v, big.Int gives %v", in, got, want)
		}
	})
}

func BenchmarkDecodeBase36(b *testing.B) {
	nonce := encodeBase36([]byte("\x00\x1c\x9e\x07 16 bytes of hmac"))
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = decodeBase36(nonce)
		}
	})
	b.Run("big.Int", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = decodeBase36BigInt(nonce)
		}
	})
}

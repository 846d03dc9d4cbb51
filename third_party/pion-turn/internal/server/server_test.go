// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package server

import (
	"testing"

	"github.com/pion/stun/v4"
)

func TestKnownAttrIsStunKnown(t *testing.T) {
	for i := range 1 << 16 {
		attr := stun.AttrType(i)
		if got, want := knownAttr(attr), attr.Known(); got != want {
			t.Errorf("knownAttr(%v) = %v, stun's Known = %v", attr, got, want)
		}
	}
}

func TestMethodStringIsStunString(t *testing.T) {
	for i := range 1 << 12 {
		method := stun.Method(i)
		if got, want := methodString(method), method.String(); got != want {
			t.Errorf("methodString(%#x) = %q, stun's String = %q", i, got, want)
		}
	}
}

func BenchmarkKnownAttr(b *testing.B) {
	b.Run("knownAttr", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			_ = knownAttr(stun.AttrType(i & 0x7f))
		}
	})
	b.Run("stun.Known", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			_ = stun.AttrType(i & 0x7f).Known()
		}
	})
}

// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package server

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNonceHash(t *testing.T) {
	t.Run("generated hashes validate", func(t *testing.T) {
		h, err := NewNonceHash()
		assert.NoError(t, err)
		nonce, err := h.Generate()
		assert.NoError(t, err)
		assert.NoError(t, h.Validate(nonce))
	})

	t.Run("generated short hashes validate", func(t *testing.T) {
		for i := 1; i <= 8; i++ {
			h, err := NewShortNonceHash(i * 4)
			assert.NoError(t, err, fmt.Sprintf("nonce init at size %d", i*4))
			nonce, err := h.Generate()
			assert.NoError(t, err, fmt.Sprintf("generate at size %d", i*4))
			assert.NoError(t, h.Validate(nonce), fmt.Sprintf("decode at size %d", i*4))
		}
	})
}

// The HMACs a ShortNonceHash reuses start from the keyed state each time: a nonce validates
// however often and from however many goroutines, one altered or from another key does not.
func TestShortNonceHashReusedMAC(t *testing.T) {
	h, err := NewShortNonceHash(0)
	assert.NoError(t, err)
	other, err := NewShortNonceHash(0)
	assert.NoError(t, err)
	nonce, err := h.Generate()
	assert.NoError(t, err)
	foreign, err := other.Generate()
	assert.NoError(t, err)
	altered := []byte(nonce)
	if altered[len(altered)-1] == '1' {
		altered[len(altered)-1] = '2'
	} else {
		altered[len(altered)-1] = '1'
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				again, err := h.Generate()
				assert.NoError(t, err)
				assert.NoError(t, h.Validate(again))
				assert.NoError(t, h.Validate(nonce))
				assert.ErrorIs(t, h.Validate(string(altered)), errInvalidNonce)
				assert.ErrorIs(t, h.Validate(foreign), errInvalidNonce)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkShortNonceValidate(b *testing.B) {
	h, err := NewShortNonceHash(0)
	assert.NoError(b, err)
	nonce, err := h.Generate()
	assert.NoError(b, err)
	b.ReportAllocs()
	for range b.N {
		_ = h.Validate(nonce)
	}
}

package probe

import (
	"os"
	"testing"

	"github.com/avedge/avedge/internal/nsguard"
)

// TestMain arms nsguard: a test here that would attach a BPF program in the namespace the
// tests started in (the host's, under make test) panics instead.
func TestMain(m *testing.M) {
	nsguard.Arm()
	os.Exit(m.Run())
}

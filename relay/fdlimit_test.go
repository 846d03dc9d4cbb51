//go:build linux

package relay

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The check runs in a child process of the test binary: it lowers the hard limit, which a
// process cannot raise again without privilege, so it must not be this one.
func TestDescriptorLimit(t *testing.T) {
	if os.Getenv("AVEDGE_FDLIMIT_CHILD") == "1" {
		descriptorLimitChild()
		return
	}
	for _, tc := range []struct {
		name     string
		maxPort  string
		total    string
		want     string
		wantFail bool
	}{
		{name: "range fits", maxPort: "20063", want: "started"},
		{name: "range too large", maxPort: "21999", wantFail: true,
			want: "the open-file limit (RLIMIT_NOFILE) is 512 (hard limit 512), but the relay range 20000-21999 on 1 relay address(es) can hold 2000 allocations"},
		{name: "total quota makes it fit", maxPort: "21999", total: "100", want: "started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorLimit$")
			cmd.Env = append(os.Environ(), "AVEDGE_FDLIMIT_CHILD=1", "AVEDGE_FDLIMIT_MAXPORT="+tc.maxPort, "AVEDGE_FDLIMIT_TOTAL="+tc.total)
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("child said:\n%s\nwant it to contain %q", out, tc.want)
			}
			if tc.wantFail && !strings.Contains(string(out), "raise the limit") {
				t.Errorf("the error does not say what to do:\n%s", out)
			}
		})
	}
}

func descriptorLimitChild() {
	lim := unix.Rlimit{Cur: 512, Max: 512}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(1)
	}
	var maxPort, total int
	fmt.Sscan(os.Getenv("AVEDGE_FDLIMIT_MAXPORT"), &maxPort)
	fmt.Sscan(os.Getenv("AVEDGE_FDLIMIT_TOTAL"), &total)
	s, err := New(Config{
		Listeners:      []ListenerConfig{{Network: UDP, Addr: netip.MustParseAddrPort("127.0.0.1:0")}},
		RelayIPs:       []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		MinPort:        20000,
		MaxPort:        uint16(maxPort),
		MaxAllocations: total,
		Workers:        1,
		DataPath:       userDataPath(), // a child of the test, in its namespace
	})
	if err != nil {
		fmt.Println(err)
		os.Exit(0)
	}
	s.Close()
	fmt.Println("started")
	os.Exit(0)
}

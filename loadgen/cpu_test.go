package loadgen

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tick := func(n int) time.Duration { return time.Duration(n) * 10 * time.Millisecond }
	tests := []struct {
		name    string
		in      string
		want    MachineTimes
		wantErr bool
	}{
		{
			// user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
			name: "current kernel",
			in:   "cpu  871318 5 272954 763324 126641 7 37667 16892 100 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n",
			want: MachineTimes{Busy: tick(871318 + 5 + 272954 + 7 + 37667), Idle: tick(763324 + 126641), Steal: tick(16892)},
		},
		{
			name: "old kernel without iowait and later fields",
			in:   "cpu 10 20 30 40\n",
			want: MachineTimes{Busy: tick(60), Idle: tick(40)},
		},
		{name: "empty", in: "", wantErr: true},
		{name: "per-cpu line first", in: "cpu0 1 2 3 4 5 6 7\n", wantErr: true},
		{name: "too few fields", in: "cpu 1 2 3\n", wantErr: true},
		{name: "not a number", in: "cpu 1 2 x 4 5 6 7 8\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseProcStat = %+v, %v; want %+v, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestMachineTimesSub(t *testing.T) {
	a := MachineTimes{Busy: 5 * time.Second, Idle: 7 * time.Second, Steal: time.Second}
	b := MachineTimes{Busy: 8 * time.Second, Idle: 9 * time.Second, Steal: 4 * time.Second}
	if got, want := b.Sub(a), (MachineTimes{Busy: 3 * time.Second, Idle: 2 * time.Second, Steal: 3 * time.Second}); got != want {
		t.Errorf("Sub = %+v, want %+v", got, want)
	}
}

func TestMachineCPU(t *testing.T) {
	a, err := MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	// Burn a little CPU so that the busy time has a reason to move; only monotonicity is
	// asserted, the machine may be idle or shared.
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
	}
	b, err := MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if d := b.Sub(a); d.Busy < 0 || d.Idle < 0 || d.Steal < 0 || a.Busy+a.Idle <= 0 {
		t.Errorf("machine times went backwards or are empty: %+v then %+v", a, b)
	}
}

func TestRunLocalAddress(t *testing.T) {
	local := netip.MustParseAddr("127.0.0.3")
	rep, err := Run(t.Context(), Config{
		Mode: ModeDirect, Local: local, Clients: 2, Groups: 1, Rate: 100, Duration: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Received == 0 || rep.Received != rep.Sent {
		t.Errorf("direct run on %s: sent %d received %d", local, rep.Sent, rep.Received)
	}
	if rep.MachineBusyCPUSeconds < 0 || rep.MachineIdleCPUSeconds < 0 {
		t.Errorf("machine cpu over the window: busy %v idle %v", rep.MachineBusyCPUSeconds, rep.MachineIdleCPUSeconds)
	}

	cfg, err := Config{Mode: ModeDirect, Local: local, Clients: 2}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: cfg, base: time.Now(), stop: make(chan struct{})}
	defer r.close()
	if err := r.open(); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.peers {
		if p.addr.Addr() != local {
			t.Errorf("echo peer on %s, want %s", p.addr, local)
		}
	}
	for _, c := range r.clients {
		if a := c.conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr(); a != local {
			t.Errorf("client %d on %s, want %s", c.id, a, local)
		}
	}
}

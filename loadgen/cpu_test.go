package loadgen

import (
	"bytes"
	"net"
	"net/netip"
	"os"
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

func TestParseStatTimes(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procTimes
		kthread bool
		wantErr bool
	}{
		{
			name: "process with reaped children",
			in:   "9472 (go test) R 9470 9470 17155 0 -1 4194304 99 0 0 0 30 20 7 3 20 0 1 0 1093623 3133440 407 0 0",
			want: procTimes{ticks: 60, start: 1093623},
		},
		{
			name:    "kernel thread",
			in:      "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 5 6 0 0 20 0 1 0 26 0 0",
			want:    procTimes{ticks: 11, start: 26},
			kthread: true,
		},
		{name: "too few fields", in: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 3 4", wantErr: true},
		{name: "not a number", in: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 x 4 20 0 1 0 26 0 0", wantErr: true},
		{name: "no command", in: "1 x S", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kthread, err := parseStatTimes([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want || kthread != tt.kthread {
				t.Errorf("parseStatTimes = %+v, %v, %v; want %+v, %v, err %v", got, kthread, err, tt.want, tt.kthread, tt.wantErr)
			}
		})
	}
}

func TestProcessesSince(t *testing.T) {
	tick := 10 * time.Millisecond
	before := Processes{
		1:  {ticks: 1000, start: 1},  // the reaper: grows by what it reaps
		10: {ticks: 50, start: 100},  // runs on: +20
		11: {ticks: 300, start: 200}, // exits in the window after 40 more ticks, reaped by 1
		12: {ticks: 70, start: 300},  // exits, and its pid is reused by a new process
	}
	after := Processes{
		1:  {ticks: 1000 + 340 + 75, start: 1}, // reaped 11 (300+40) and 12 (70+5)
		10: {ticks: 70, start: 100},
		12: {ticks: 8, start: 900}, // new since: counts whole
		13: {ticks: 9, start: 950}, // new since
	}
	// Within the window: 10 ran 20, 11 ran 40, the old 12 ran 5, the new 12 8, 13 9.
	if got, want := after.Since(before), time.Duration(20+40+5+8+9)*tick; got != want {
		t.Errorf("Since = %v, want %v", got, want)
	}
	if got := before.Since(before); got != 0 {
		t.Errorf("Since itself = %v, want 0", got)
	}
}

func TestSnapshotProcesses(t *testing.T) {
	self := os.Getpid()
	s, err := SnapshotProcesses(self)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s[self]; ok {
		t.Error("the excluded pid is in the snapshot")
	}
	all, err := SnapshotProcesses()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all[self]; !ok {
		t.Errorf("this process (pid %d) is not in the snapshot of %d processes", self, len(all))
	}
	if _, ok := all[2]; ok {
		if b, err := os.ReadFile("/proc/2/stat"); err == nil && bytes.Contains(b, []byte("(kthreadd)")) {
			t.Error("kthreadd, a kernel thread, is in the snapshot")
		}
	}
}

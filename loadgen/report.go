package loadgen

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// histMax is the largest round trip recorded; longer ones count as histMax.
const histMax = int64(10 * time.Second)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, 3) }

// Report is the outcome of a run. Rates are over the measurement window:
// from the start of the send window to the end of the drain.
type Report struct {
	Mode    Mode `json:"mode"`
	Clients int  `json:"clients"`
	Rate    int  `json:"rate_pps"` // per client; 0 = saturating
	Size    int  `json:"size_bytes"`
	Window  int  `json:"window,omitempty"`

	SetupSeconds  float64 `json:"setup_seconds"`
	WindowSeconds float64 `json:"window_seconds"`

	// SentPerSecond is Sent over the configured send window: below
	// Clients×Rate when the generator could not keep its schedule.
	SentPerSecond float64 `json:"sent_per_second"`

	Sent        uint64  `json:"sent"`     // probes sent
	Received    uint64  `json:"received"` // probes back, byte-exact
	Lost        uint64  `json:"lost"`     // Sent - Received
	LossPercent float64 `json:"loss_percent"`
	Corrupt     uint64  `json:"corrupt"` // payloads not byte-exact or not ours
	SendErrors  uint64  `json:"send_errors"`
	// KernelDrops counts the datagrams the kernel dropped at the generator's own sockets
	// (the clients' and the echo peers') because their receive buffer was full: probes or
	// echoes lost before the generator could read them, not by the server (each one lost
	// probe at most; a dropped control answer is retried). On a loaded machine, where the
	// generator does not get the CPU to keep up, they explain losses. 0 where unread.
	KernelDrops uint64 `json:"kernel_drops"`
	// ClientKernelDrops and PeerKernelDrops split KernelDrops by socket: the clients' (an
	// echo, or a control answer, lost on the way back) and the echo peers' (a probe lost
	// after the server relayed it).
	ClientKernelDrops uint64 `json:"client_kernel_drops"`
	PeerKernelDrops   uint64 `json:"peer_kernel_drops"`
	// PeerReceived counts the probes that reached the echo peers (channel and indication
	// modes): Sent - PeerReceived were lost on the way out, PeerReceived - Received on the
	// way back.
	PeerReceived uint64 `json:"peer_received"`

	// Delivered counts datagrams that arrived at either end (peer or partner
	// and client); Relayed counts the server's forwards as defined in the
	// package documentation (0 in ModeDirect).
	Delivered        uint64  `json:"delivered"`
	Relayed          uint64  `json:"relayed"`
	PacketsPerSecond float64 `json:"packets_per_second"` // Delivered per second
	Mbps             float64 `json:"mbps"`               // payload bits of Delivered per second, /1e6

	RTT Percentiles `json:"rtt_us"`

	ServerCPUSeconds    float64 `json:"server_cpu_seconds,omitempty"`
	RelayedPerCPUSecond float64 `json:"relayed_per_cpu_second,omitempty"`
	GeneratorCPUSeconds float64 `json:"generator_cpu_seconds"`

	// The whole machine's CPU time over the window (MachineCPU: all CPUs, every process
	// and softirq, in whichever network namespace): the base of the relay cost per relayed
	// packet, a relayed run's busy time less that of a direct run of the same load.
	MachineBusyCPUSeconds  float64 `json:"machine_busy_cpu_seconds"`
	MachineIdleCPUSeconds  float64 `json:"machine_idle_cpu_seconds"`
	MachineStealCPUSeconds float64 `json:"machine_steal_cpu_seconds"`
	// OtherProcessesCPUSeconds is the part of the busy time spent by processes other than the
	// generator (with its echo peers) and the server, kernel threads aside (SnapshotProcesses):
	// on a shared machine, work that was not the run's.
	OtherProcessesCPUSeconds float64 `json:"other_processes_cpu_seconds"`

	Refreshes     uint64 `json:"refreshes"`
	RefreshErrors uint64 `json:"refresh_errors"`
	// RefreshFailedClients counts the clients with at least one failed refresh: an upper
	// bound on the allocations the server lost.
	RefreshFailedClients uint64 `json:"refresh_failed_clients"`
}

// Percentiles of the round trip, in microseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50:  us(h.ValueAtQuantile(50)),
		P90:  us(h.ValueAtQuantile(90)),
		P99:  us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)),
		Max:  us(h.Max()),
		Mean: h.Mean() / 1e3,
	}
}

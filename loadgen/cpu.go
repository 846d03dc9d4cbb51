package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, which
// Linux fixes at 100 for every architecture's user-visible interface.
const userHZ = 100

// ProcessCPU returns the CPU time (user+system, all threads) of process pid, from
// /proc/PID/stat.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("loadgen: cpu of pid %d: %w", pid, err)
	}
	ticks, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("loadgen: cpu of pid %d: %w", pid, err)
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parseStatCPU returns utime+stime, in clock ticks, from the contents of
// /proc/PID/stat. proc(5): field 2 is the command in parentheses (which may
// itself contain spaces and parentheses), field 14 is utime and 15 stime.
func parseStatCPU(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat without command field: %w", errShort)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state), so field n is fields[n-3].
	if len(fields) < 13 {
		return 0, fmt.Errorf("stat with %d fields after command: %w", len(fields), errShort)
	}
	utime, err := strconv.ParseUint(string(fields[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(string(fields[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime: %w", err)
	}
	return utime + stime, nil
}

// MachineTimes is the CPU time of the whole machine, summed over all CPUs, from the
// aggregate "cpu" line of /proc/stat.
type MachineTimes struct {
	// Busy is user+nice+system+irq+softirq: every CPU cycle spent on anything, including
	// the softirq work (loopback and veth delivery, XDP) the kernel charges to no process
	// or to whichever one happened to run. guest and guest_nice are already inside user
	// and nice, so they are not added again.
	Busy time.Duration
	// Idle is idle+iowait.
	Idle time.Duration
	// Steal is time the hypervisor gave to another guest: neither ours nor idle.
	Steal time.Duration
}

// Sub returns the times spent between b and m (m read later).
func (m MachineTimes) Sub(b MachineTimes) MachineTimes {
	return MachineTimes{Busy: m.Busy - b.Busy, Idle: m.Idle - b.Idle, Steal: m.Steal - b.Steal}
}

// MachineCPU reads the machine's CPU times from /proc/stat. /proc/stat is not namespaced:
// it counts every process and softirq of the machine, whichever network namespace it runs in.
func MachineCPU() (MachineTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineTimes{}, fmt.Errorf("loadgen: machine cpu: %w", err)
	}
	m, err := parseProcStat(b)
	if err != nil {
		return MachineTimes{}, fmt.Errorf("loadgen: machine cpu: %w", err)
	}
	return m, nil
}

// parseProcStat returns the machine's times from the contents of /proc/stat. proc(5): the
// first line, "cpu", sums all CPUs in USER_HZ ticks: user nice system idle iowait irq softirq
// steal guest guest_nice. Kernels before 2.6.11 stop after softirq or earlier; fields they
// lack count as zero, but user, nice, system and idle are required.
func parseProcStat(b []byte) (MachineTimes, error) {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	fields := bytes.Fields(line)
	if len(fields) < 5 || string(fields[0]) != "cpu" {
		return MachineTimes{}, fmt.Errorf("/proc/stat without its aggregate cpu line: %w", errShort)
	}
	var v [8]uint64 // user nice system idle iowait irq softirq steal
	for i := range v {
		if i+1 >= len(fields) {
			break
		}
		n, err := strconv.ParseUint(string(fields[i+1]), 10, 64)
		if err != nil {
			return MachineTimes{}, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
		}
		v[i] = n
	}
	tick := func(n uint64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	return MachineTimes{
		Busy:  tick(v[0] + v[1] + v[2] + v[5] + v[6]),
		Idle:  tick(v[3] + v[4]),
		Steal: tick(v[7]),
	}, nil
}

// pfKthread is PF_KTHREAD in the flags field of /proc/PID/stat (include/linux/sched.h).
const pfKthread = 0x00200000

// procTimes is one process's CPU time in clock ticks: its own (every thread) and that of the
// children it has waited for, which is where an exited process's time goes.
type procTimes struct {
	ticks uint64 // utime+stime+cutime+cstime
	start uint64 // starttime: tells a reused pid apart
}

// Processes is a snapshot of the CPU time of the machine's processes, all but a few
// (SnapshotProcesses). Between two snapshots, Since gives the time those processes spent:
// on a machine shared with other work, the part of the machine's busy time that was not the
// load under test, nor the kernel working for it.
type Processes map[int]procTimes

// SnapshotProcesses reads the CPU time of every process in /proc but those in exclude and
// kernel threads (ksoftirqd and the like may run the load's softirq work, so they stay in the
// busy time). Processes that exit while it reads are skipped.
func SnapshotProcesses(exclude ...int) (Processes, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("loadgen: processes: %w", err)
	}
	s := make(Processes, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || slices.Contains(exclude, pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone since ReadDir
		}
		t, kthread, err := parseStatTimes(b)
		if err != nil {
			return nil, fmt.Errorf("loadgen: processes: pid %d: %w", pid, err)
		}
		if !kthread {
			s[pid] = t
		}
	}
	return s, nil
}

// Since returns the CPU time the processes of snapshot s spent since the earlier snapshot
// before. A process in both counts its growth; one started since counts whole; one gone
// since (whose time, once it was waited for, moved into its parent's, which counts it whole)
// takes back the time it had at before, spent before the window.
func (s Processes) Since(before Processes) time.Duration {
	var ticks int64
	for pid, t := range s {
		if b, ok := before[pid]; ok && b.start == t.start {
			ticks += int64(t.ticks) - int64(b.ticks)
		} else {
			ticks += int64(t.ticks)
		}
	}
	for pid, b := range before {
		if t, ok := s[pid]; !ok || t.start != b.start {
			ticks -= int64(b.ticks)
		}
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// parseStatTimes returns, from the contents of /proc/PID/stat, the process's CPU time with
// that of its waited-for children and whether it is a kernel thread. proc(5): field 9 is
// flags, 14–17 utime, stime, cutime, cstime, 22 starttime.
func parseStatTimes(b []byte) (procTimes, bool, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procTimes{}, false, fmt.Errorf("stat without command field: %w", errShort)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state), so field n is fields[n-3].
	if len(fields) < 20 {
		return procTimes{}, false, fmt.Errorf("stat with %d fields after command: %w", len(fields), errShort)
	}
	var v [6]uint64
	for j, n := range [...]int{9, 14, 15, 16, 17, 22} {
		x, err := strconv.ParseUint(string(fields[n-3]), 10, 64)
		if err != nil {
			return procTimes{}, false, fmt.Errorf("stat field %d: %w", n, err)
		}
		v[j] = x
	}
	return procTimes{ticks: v[1] + v[2] + v[3] + v[4], start: v[5]}, v[0]&pfKthread != 0, nil
}

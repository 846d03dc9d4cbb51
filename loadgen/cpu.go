package loadgen

import (
	"bytes"
	"fmt"
	"os"
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

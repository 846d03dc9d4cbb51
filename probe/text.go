package probe

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteText writes rep as tables for a human: candidates grouped by type
// (host, srflx, relay), then one line per server with its failure, if any.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, typ := range []string{"host", "srflx", "prflx", "relay"} {
		n := r.Count(typ)
		if n == 0 && typ == "prflx" {
			continue
		}
		fmt.Fprintf(tw, "%s candidates (%d)\n", typ, n)
		if n == 0 {
			fmt.Fprintln(tw, "  (none)")
			fmt.Fprintln(tw)
			continue
		}
		fmt.Fprintln(tw, "  ADDRESS\tPORT\tTRANSPORT\tRELATED\tVIA\tFROM\tTOOK")
		for _, c := range r.Candidates {
			if c.Type != typ {
				continue
			}
			related, via, from := "-", "-", c.URL
			if c.RelatedAddress != "" {
				related = hostPort(c.RelatedAddress, c.RelatedPort)
			}
			if c.RelayProtocol != "" {
				via = c.RelayProtocol
			}
			if from == "" {
				from = "-"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\n", c.Address, c.Port, c.Network, related, via, from, ms(c.Took))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "servers (%d)\n", len(r.Servers))
	fmt.Fprintln(tw, "  URL\tSRFLX\tRELAY\tTOOK\tDIRECT\tRESULT")
	for _, s := range r.Servers {
		direct := "-"
		switch {
		case s.Direct.Relayed != "":
			direct = "allocated " + s.Direct.Relayed + " in " + ms(s.Direct.Took)
		case s.Direct.Mapped != "":
			direct = "mapped " + s.Direct.Mapped + " in " + ms(s.Direct.Took)
		case s.Direct.Failure != nil:
			direct = string(s.Direct.Failure.Reason) + " in " + ms(s.Direct.Took)
		}
		result := "ok"
		if s.Failure != nil {
			result = "FAILED " + s.Failure.String()
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%s\t%s\n", s.URL, s.Srflx, s.Relay, ms(s.Took), direct, result)
	}
	fmt.Fprintf(tw, "\ngathered in %s\n", ms(r.Took))
	return tw.Flush()
}

// WriteText writes the check's outcome for a human.
func (c *CheckReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "relay-only check")
	for _, r := range c.Redirects {
		fmt.Fprintf(tw, "  redirected	%s -> %s (300 Try Alternate)\n", r.From, r.To)
	}
	if c.Local.Address != "" {
		fmt.Fprintf(tw, "  selected pair\t%s %s (via %s)  <->  %s %s\n",
			c.Local.Type, hostPort(c.Local.Address, c.Local.Port), c.Local.RelayProtocol, c.Remote.Type, hostPort(c.Remote.Address, c.Remote.Port))
	}
	fmt.Fprintf(tw, "  gathered\t%s\n", ms(c.Gathered))
	if c.Connected > 0 {
		fmt.Fprintf(tw, "  connected\t%s\n", ms(c.Connected))
	}
	for _, d := range c.Directions {
		fmt.Fprintf(tw, "  %s\tsent %d, echoed %d, loss %.1f%%, corrupt %d, duplicates %d\n", d.Name, d.Sent, d.Received, 100*d.Loss, d.Corrupt, d.Duplicates)
	}
	if c.RTT.N > 0 {
		fmt.Fprintf(tw, "  rtt (n=%d)\tmin %s  p50 %s  p90 %s  p99 %s  max %s\n", c.RTT.N, ms(c.RTT.Min), ms(c.RTT.P50), ms(c.RTT.P90), ms(c.RTT.P99), ms(c.RTT.Max))
	}
	return tw.Flush()
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

func hostPort(addr string, port int) string {
	for i := 0; i < len(addr); i++ {
		if addr[i] == ':' {
			return "[" + addr + "]:" + strconv.Itoa(port)
		}
	}
	return addr + ":" + strconv.Itoa(port)
}

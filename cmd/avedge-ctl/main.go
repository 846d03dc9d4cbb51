// Command avedge-ctl is the operator's command line for a running avedge relay: it calls the
// admin API (package admin) and prints tables for people, or JSON with --json for scripts.
//
//	avedge-ctl status
//	avedge-ctl allocations [--user U] [--client IP[:port]] [--limit N]
//	avedge-ctl show ID
//	avedge-ctl kick ID | avedge-ctl kick --user U
//	avedge-ctl revoke USERNAME [--for 24h | --until 2026-12-04T00:00:00Z] [--reason TEXT]
//	avedge-ctl unrevoke USERNAME
//	avedge-ctl revocations
//	avedge-ctl drain | undrain | reload
//
// Where the relay is and the key: --url (AVEDGE_ADMIN_URL; http://, https:// or
// unix:///path/admin.sock; default http://127.0.0.1:9443), --key-file (AVEDGE_ADMIN_KEY_FILE)
// or AVEDGE_ADMIN_KEY (no --key flag: a command line is visible to every user of the host),
// --cacert (AVEDGE_ADMIN_CACERT) for https.
//
// Exit codes: 0 done; 1 the relay refused the request (an answer other than below); 2 bad
// usage; 3 the relay could not be reached or did not answer; 4 not found (no such
// allocation, not revoked); 5 unauthorized (missing or wrong API key).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/avedge/avedge/admin"
)

// Exit codes.
const (
	exitOK           = 0
	exitRefused      = 1
	exitUsage        = 2
	exitUnreachable  = 3
	exitNotFound     = 4
	exitUnauthorized = 5
)

// defaultURL is where avedge-ctl looks without --url or AVEDGE_ADMIN_URL.
const defaultURL = "http://127.0.0.1:9443"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

const usage = `usage: avedge-ctl [--url URL] [--key-file F] [--cacert F] [--json] COMMAND [ARGS]

commands:
  status                         version, uptime, data path, listeners, ports, allocations
  allocations [--user U] [--client IP[:PORT]] [--limit N]
                                 live allocations (all pages; --limit caps them)
  show ID                        one allocation, with its permissions and channels
  kick ID | kick --user U        end an allocation, or every allocation of a user, now
  revoke USERNAME [--for D | --until T] [--reason TEXT]
                                 refuse a user or a TURN REST / MRAS username (401) and end its allocations
  unrevoke USERNAME              lift a revocation
  revocations                    list the revocations in force
  drain | undrain                stop or resume taking new allocations
  reload                         what SIGHUP does: secrets, users, peer policy, revocations file

environment: AVEDGE_ADMIN_URL, AVEDGE_ADMIN_KEY, AVEDGE_ADMIN_KEY_FILE, AVEDGE_ADMIN_CACERT
exit codes: 0 done, 1 refused by the relay, 2 usage, 3 relay unreachable, 4 not found, 5 unauthorized
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("avedge-ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage, "\nflags:\n")
		fs.PrintDefaults()
	}
	url := fs.String("url", envOr(getenv, "AVEDGE_ADMIN_URL", defaultURL), "admin API: http://host:port, https://host:port or unix:///path/admin.sock (env AVEDGE_ADMIN_URL)")
	keyFile := fs.String("key-file", getenv("AVEDGE_ADMIN_KEY_FILE"), "file whose first line is the admin API key (env AVEDGE_ADMIN_KEY_FILE; or the key itself in AVEDGE_ADMIN_KEY)")
	cacert := fs.String("cacert", getenv("AVEDGE_ADMIN_CACERT"), "certificate (or CA) to trust for https (env AVEDGE_ADMIN_CACERT)")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of tables")
	timeout := fs.Duration("timeout", 10*time.Second, "give up on a call after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	key := getenv("AVEDGE_ADMIN_KEY")
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "avedge-ctl: key file: %v\n", err)
			return exitUsage
		}
		key, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
		key = strings.TrimSpace(key)
	}
	c, err := admin.NewClient(admin.ClientConfig{URL: *url, Key: key, CAFile: *cacert, Timeout: *timeout})
	if err != nil {
		fmt.Fprintf(stderr, "avedge-ctl: %v\n", err)
		return exitUsage
	}
	cmd := &command{ctx: ctx, c: c, out: stdout, errw: stderr, json: *asJSON}
	name, rest := fs.Arg(0), fs.Args()[1:]
	fn, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "avedge-ctl: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
	return cmd.exit(fn(cmd, rest))
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

// command is one invocation's context.
type command struct {
	ctx  context.Context
	c    *admin.Client
	out  io.Writer
	errw io.Writer
	json bool
}

// usageError is a mistake in the command's arguments.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func badUsage(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exit prints err (if any) and maps it to an exit code.
func (c *command) exit(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(c.errw, "avedge-ctl: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	switch admin.StatusOf(err) {
	case 0:
		return exitUnreachable
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusUnauthorized:
		return exitUnauthorized
	}
	return exitRefused
}

var commands = map[string]func(*command, []string) error{
	"status":      (*command).status,
	"allocations": (*command).allocations,
	"show":        (*command).show,
	"kick":        (*command).kick,
	"revoke":      (*command).revoke,
	"unrevoke":    (*command).unrevoke,
	"revocations": (*command).revocations,
	"drain":       func(c *command, args []string) error { return c.drain(args, true) },
	"undrain":     func(c *command, args []string) error { return c.drain(args, false) },
	"reload":      (*command).reload,
}

// flags parses a command's own flags, before or after its arguments, and returns the
// arguments; positional is how many it takes (negative: any number).
func (c *command) flags(name string, args []string, positional int, define func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.json, "json", c.json, "print JSON") // also after the command
	if define != nil {
		define(fs)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, badUsage("%s: %v", name, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if positional >= 0 && len(pos) != positional {
		return nil, badUsage("%s: want %d argument(s), got %d %q", name, positional, len(pos), pos)
	}
	return pos, nil
}

func (c *command) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *command) table() *tabwriter.Writer { return tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0) }

func (c *command) status(args []string) error {
	if _, err := c.flags("status", args, 0, nil); err != nil {
		return err
	}
	st, err := c.c.Status(c.ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(st)
	}
	tw := c.table()
	fmt.Fprintf(tw, "version\t%s\n", st.Version)
	fmt.Fprintf(tw, "uptime\t%s (since %s)\n", seconds(st.UptimeSeconds), st.Started.Format(time.RFC3339))
	fmt.Fprintf(tw, "data path\t%s, %d workers\n", st.DataPath, st.Workers)
	for _, l := range st.Listeners {
		fmt.Fprintf(tw, "listener\t%s %s\n", l.Transport, l.Addr)
	}
	fmt.Fprintf(tw, "ports\t%d used, %d free of %d\n", st.Ports.Used, st.Ports.Free, st.Ports.Total)
	fmt.Fprintf(tw, "allocations\t%d\n", st.Allocations)
	fmt.Fprintf(tw, "draining\t%v\n", st.Draining)
	fmt.Fprintf(tw, "revocations\t%d\n", st.Revocations)
	return tw.Flush()
}

func (c *command) allocations(args []string) error {
	var q admin.Query
	var limit int
	if _, err := c.flags("allocations", args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&q.User, "user", "", "only this user's")
		fs.StringVar(&q.Client, "client", "", "only this client's: an IP address or address:port")
		fs.IntVar(&limit, "limit", 0, "at most this many (0: all)")
	}); err != nil {
		return err
	}
	if limit < 0 {
		return badUsage("allocations: --limit %d: want 0 (all) or more", limit)
	}
	q.Limit = admin.MaxLimit
	if limit > 0 && limit < admin.MaxLimit {
		q.Limit = limit
	}
	list, err := c.c.AllAllocations(c.ctx, q, limit)
	if err != nil {
		return err
	}
	if c.json {
		if list == nil {
			list = []admin.Allocation{}
		}
		return c.printJSON(list)
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tUSER\tCLIENT\tRELAYED\tAGE\tEXPIRES IN\tPEERS\tUP PKTS\tUP BYTES\tDOWN PKTS\tDOWN BYTES\tUP B/S\tDOWN B/S\tPATH")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%s\n",
			a.ID, a.User, a.Transport, a.Client, strings.Join(a.Relayed, ","), seconds(a.AgeSeconds), expiresIn(a.Expires),
			len(a.Permissions), a.ClientToPeer.Packets, a.ClientToPeer.Bytes, a.PeerToClient.Packets, a.PeerToClient.Bytes,
			a.ClientToPeer.RateBps, a.PeerToClient.RateBps, a.DataPath)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%d allocation(s)\n", len(list))
	return nil
}

func (c *command) show(args []string) error {
	pos, err := c.flags("show", args, 1, nil)
	if err != nil {
		return err
	}
	a, err := c.c.Allocation(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(a)
	}
	tw := c.table()
	fmt.Fprintf(tw, "id\t%s\n", a.ID)
	fmt.Fprintf(tw, "user\t%s\n", a.User)
	fmt.Fprintf(tw, "client\t%s %s (listener %s)\n", a.Transport, a.Client, a.Listener)
	fmt.Fprintf(tw, "relayed\t%s\n", strings.Join(a.Relayed, ", "))
	fmt.Fprintf(tw, "created\t%s (%s ago)\n", a.Created.Format(time.RFC3339), seconds(a.AgeSeconds))
	fmt.Fprintf(tw, "expires\t%s\n", expiresIn(a.Expires))
	fmt.Fprintf(tw, "client to peer\t%d packets, %d bytes, %.0f B/s\n", a.ClientToPeer.Packets, a.ClientToPeer.Bytes, a.ClientToPeer.RateBps)
	fmt.Fprintf(tw, "peer to client\t%d packets, %d bytes, %.0f B/s\n", a.PeerToClient.Packets, a.PeerToClient.Bytes, a.PeerToClient.RateBps)
	fmt.Fprintf(tw, "data path\t%s\n", a.DataPath)
	fmt.Fprintf(tw, "permissions\t%s\n", orNone(strings.Join(a.Permissions, ", ")))
	for _, ch := range a.Channels {
		fmt.Fprintf(tw, "channel\t0x%04x → %s\n", ch.Number, ch.Peer)
	}
	for _, tc := range a.TCPConnections { // an RFC 6062 TCP allocation's peer connections
		state := "waiting for ConnectionBind"
		if tc.Bound {
			state = "bound"
		}
		fmt.Fprintf(tw, "tcp connection\t%s, %s, %d bytes to the peer, %d from it\n", tc.Peer, state, tc.ClientToPeer, tc.PeerToClient)
	}
	return tw.Flush()
}

func (c *command) kick(args []string) error {
	var user string
	pos, err := c.flags("kick", args, -1, func(fs *flag.FlagSet) { fs.StringVar(&user, "user", "", "every allocation of this user") })
	if err != nil {
		return err
	}
	var ended admin.Ended
	switch {
	case user != "" && len(pos) == 0:
		ended, err = c.c.EndUser(c.ctx, user)
	case user == "" && len(pos) == 1:
		ended, err = c.c.EndAllocation(c.ctx, pos[0])
	default:
		return badUsage("kick: give an allocation ID, or --user U")
	}
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(ended)
	}
	fmt.Fprintf(c.out, "ended %d allocation(s)\n", ended.Ended)
	return nil
}

func (c *command) revoke(args []string) error {
	var req admin.RevokeRequest
	var forD time.Duration
	var until string
	pos, err := c.flags("revoke", args, 1, func(fs *flag.FlagSet) {
		fs.DurationVar(&forD, "for", 0, "lift the revocation after this long")
		fs.StringVar(&until, "until", "", "lift the revocation at this time (RFC 3339)")
		fs.StringVar(&req.Reason, "reason", "", "a note kept with the revocation")
	})
	if err != nil {
		return err
	}
	req.Username = pos[0]
	switch {
	case forD != 0 && until != "":
		return badUsage("revoke: give --for or --until, not both")
	case forD < 0:
		return badUsage("revoke: --for %v: want a positive duration", forD)
	case forD > 0:
		req.Until = time.Now().Add(forD).UTC().Truncate(time.Second)
	case until != "":
		if req.Until, err = time.Parse(time.RFC3339, until); err != nil {
			return badUsage("revoke: --until %q: want an RFC 3339 time, e.g. 2026-12-04T00:00:00Z", until)
		}
	}
	res, err := c.c.Revoke(c.ctx, req)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(res)
	}
	lapse := "until lifted"
	if !res.Revocation.Until.IsZero() {
		lapse = "until " + res.Revocation.Until.Format(time.RFC3339)
	}
	fmt.Fprintf(c.out, "revoked %s %s; ended %d allocation(s)\n", res.Revocation.Username, lapse, res.Ended)
	if res.Warning != "" {
		fmt.Fprintf(c.errw, "avedge-ctl: warning: %s\n", res.Warning)
	}
	return nil
}

func (c *command) unrevoke(args []string) error {
	pos, err := c.flags("unrevoke", args, 1, nil)
	if err != nil {
		return err
	}
	if err := c.c.Unrevoke(c.ctx, pos[0]); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(map[string]string{"lifted": pos[0]})
	}
	fmt.Fprintf(c.out, "lifted the revocation of %s\n", pos[0])
	return nil
}

func (c *command) revocations(args []string) error {
	if _, err := c.flags("revocations", args, 0, nil); err != nil {
		return err
	}
	l, err := c.c.Revocations(c.ctx)
	if err != nil {
		return err
	}
	if c.json {
		if l.Revocations == nil {
			l.Revocations = []admin.Revocation{}
		}
		return c.printJSON(l)
	}
	tw := c.table()
	fmt.Fprintln(tw, "USERNAME\tUNTIL\tREVOKED\tREASON")
	for _, r := range l.Revocations {
		until := "lifted by hand"
		if !r.Until.IsZero() {
			until = r.Until.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Username, until, r.Created.Format(time.RFC3339), r.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	file := "kept in memory (no revocations-file)"
	if l.File != "" {
		file = "file " + l.File
	}
	fmt.Fprintf(c.out, "%d revocation(s), %s\n", len(l.Revocations), file)
	return nil
}

func (c *command) drain(args []string, on bool) error {
	name := map[bool]string{true: "drain", false: "undrain"}[on]
	if _, err := c.flags(name, args, 0, nil); err != nil {
		return err
	}
	var d admin.DrainState
	var err error
	if on {
		d, err = c.c.Drain(c.ctx)
	} else {
		d, err = c.c.Undrain(c.ctx)
	}
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(d)
	}
	state := "taking new allocations"
	if d.Draining {
		state = "draining: new allocations refused, live ones continue"
	}
	fmt.Fprintf(c.out, "%s (%d live allocation(s))\n", state, d.Allocations)
	return nil
}

func (c *command) reload(args []string) error {
	if _, err := c.flags("reload", args, 0, nil); err != nil {
		return err
	}
	r, err := c.c.Reload(c.ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.out, "reloaded; %d revocation(s) in force\n", r.Revocations)
	return nil
}

// seconds prints a duration in seconds the way people read it (1h2m3s).
func seconds(s float64) string {
	return (time.Duration(s) * time.Second).String()
}

func expiresIn(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Until(t).Round(time.Second).String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/loadgen"
)

func TestRunJSON(t *testing.T) {
	server := testnet.PionTURN(t, "s3cret").String()
	tests := []struct {
		name string
		args []string
		mode loadgen.Mode
	}{
		{"channel with minted credentials", []string{"--server", server, "--secret", "s3cret", "--clients", "3"}, loadgen.ModeChannel},
		{"pair", []string{"--server", server, "--secret", "s3cret", "--clients", "2", "--mode", "pair"}, loadgen.ModePair},
		{"direct", []string{"--direct", "--clients", "2"}, loadgen.ModeDirect},
		{"direct on another local address", []string{"--direct", "--clients", "2", "--local", "127.0.0.4"}, loadgen.ModeDirect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append(tt.args, "--rate", "50", "--duration", "300ms", "--json")
			if err := run(args, &out, &errOut); err != nil {
				t.Fatalf("%v (stderr %q)", err, errOut.String())
			}
			var rep loadgen.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("output is not one JSON report: %v\n%s", err, out.String())
			}
			if rep.Mode != tt.mode || rep.Sent == 0 || rep.Received != rep.Sent {
				t.Errorf("report %+v", rep)
			}
			if errOut.Len() != 0 {
				t.Errorf("progress written to a non-terminal: %q", errOut.String())
			}
		})
	}
}

func TestRunText(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"--direct", "--duration", "200ms"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode        direct", "rtt (µs)", "p99.9", "machine     busy"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunRejectsArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no credentials", []string{"--server", "127.0.0.1:3478"}},
		{"both credential kinds", []string{"--secret", "s", "--user", "u"}},
		{"bad server", []string{"--server", "localhost", "--secret", "s"}},
		{"too many clients", []string{"--direct", "--clients", "5001"}},
		{"too long", []string{"--direct", "--duration", "11m"}},
		{"stray argument", []string{"--direct", "extra"}},
		{"bad local address", []string{"--direct", "--local", "nowhere"}},
		{"IPv6 local address", []string{"--direct", "--local", "::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := run(tt.args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
				t.Errorf("run(%q) succeeded", tt.args)
			}
		})
	}
}

// --flood floods the server from the start of the send window and reports the flood beside
// the run in the JSON report.
func TestRunFlood(t *testing.T) {
	server := testnet.PionTURN(t, "s3cret").String()
	var out, errOut bytes.Buffer
	args := []string{"--server", server, "--secret", "s3cret", "--clients", "2", "--rate", "50", "--duration", "1500ms",
		"--refresh", "500ms", "--flood", "2000", "--flood-sources", "4", "--flood-source", "127.4.0.1", "--flood-rate", "20000", "--json"}
	if err := run(args, &out, &errOut); err != nil {
		t.Fatalf("%v (stderr %q)", err, errOut.String())
	}
	var rep struct {
		loadgen.Report
		Flood *loadgen.FloodReport `json:"flood"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not one JSON report: %v\n%s", err, out.String())
	}
	if rep.Flood == nil || rep.Flood.Sent != 2000 || rep.Flood.Sources != 4 || rep.Flood.Allocates != 1000 {
		t.Fatalf("flood report %+v, want 2000 datagrams from 4 sources, half Allocates", rep.Flood)
	}
	if rep.Sent == 0 || rep.RefreshErrors != 0 {
		t.Errorf("run under flood: %+v", rep.Report)
	}
}

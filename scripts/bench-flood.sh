#!/usr/bin/env bash
# bench-flood.sh — `make bench-flood`: floods kept off live calls (issue 13), avedge and
# coturn's turnserver (if installed) side by side. Each server is started fresh. One
# avedge-load process floods it with spoofed Binding requests and Allocates signed with a
# wrong password (half and half; FLOOD_ALLOCATE_EVERY; each source asks for its own nonce
# first, so that the Allocates reach the MESSAGE-INTEGRITY check), from 1 024 source addresses of
# 127.1.0.0/16, on one thread as fast as it sends (or at FLOOD_RATE), for FLOOD_SECONDS; a
# second one, started with it, makes LIVE allocations (default 1 000) relaying audio on
# channels (50 packets/s of 160 B each way, refreshed every 2 s) for DURATION. Two processes,
# so that the live calls' client is not the flood's thread's neighbour in one runtime.
# Reported per server: the flood's rate, the refreshes made during the run and how many
# failed, the clients with a failed refresh (an upper bound on allocations lost), the live
# calls' packets lost, and the server's CPU time over the send window.
#
# Environment: LIVE (default 1000), DURATION (live send window, default 20s), FLOOD_SECONDS
# (default 25: the live setup and window), FLOOD_RATE (0: as fast as one core sends),
# FLOOD_ALLOCATE_EVERY (default 2; -1: Binding requests only), SERVERS (subset of: avedge
# avedge-offload coturn; avedge runs --data-path io_uring, in user space, and avedge-offload
# --data-path offload, the kernel fast path), OUT (results dir, default bench/out),
# AVEDGE_ARGS (more avedge flags, split on spaces, e.g. "--workers 2").
#
# Where the live packets were lost is reported too: the server's sockets' kernel drops (the
# listener's, shared with the flood, and the relay ports'; from /proc/net/udp before the server
# stops), the relay's own drops by reason (avedge's /metrics), and the generator's sockets'
# (the clients' and the echo peers', SO_MEMINFO). The way out is Sent - PeerReceived, the way
# back PeerReceived - Received; what the sockets and the relay do not account for is "unacc".
# Loopback traffic also waits in each CPU's input backlog (net.core.netdev_max_backlog)
# before any socket sees it: the drops there (/proc/net/softnet_stat, the whole machine's,
# over the live run) are reported as "backlog", flood and live alike.
#
# avedge runs with --allocate-rate -1 --unauthorized-rate -1: the live clients all come from
# 127.0.0.1, and those limits would refuse their setup; its per-source request limit
# (request-rate) stays at its default. Everything is on loopback: the same script runs on
# the host or inside a network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

LIVE=${LIVE:-1000}
DURATION=${DURATION:-20s}
FLOOD_SECONDS=${FLOOD_SECONDS:-25}
FLOOD_RATE=${FLOOD_RATE:-0}
FLOOD_ALLOCATE_EVERY=${FLOOD_ALLOCATE_EVERY:-2}
SECRET=bench-flood-secret
REALM=avedge.bench
OUT=${OUT:-bench/out}
MIN_PORT=40000
MAX_PORT=49999
RELAY_IP=127.0.0.2
PORT=34795
METRICS=127.0.0.1:34796

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

raise_nofile

log "building into $work"
go build -o "$work/avedge" ./cmd/avedge
go build -o "$work/avedge-load" ./cmd/avedge-load
servers=()
for s in ${SERVERS:-avedge avedge-offload coturn}; do
	if [[ $s == coturn ]] && ! command -v turnserver >/dev/null 2>&1; then
		log "turnserver not installed; benchmarking without coturn"
		continue
	fi
	servers+=("$s")
done

start_server() {
	case $1 in
	avedge | avedge-offload)
		# avedge is the user-space relay (auto would offload loopback); avedge-offload the
		# kernel fast path.
		local dp=(--data-path io_uring)
		if [[ $1 == avedge-offload ]]; then dp=(--data-path offload); fi
		"$work/avedge" --listening-ip 127.0.0.1 --listening-port "$PORT" --min-port "$MIN_PORT" --max-port "$MAX_PORT" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip "$RELAY_IP" --allow-loopback-peers \
			--allocate-rate -1 --unauthorized-rate -1 --metrics-listen "$METRICS" --auth-listen '' --total-quota "$((LIVE + 16))" \
			"${dp[@]}" ${AVEDGE_ARGS:-} >"$work/avedge.log" 2>&1 &
		;;
	coturn)
		turnserver -n --allow-loopback-peers --no-cli --no-tls --no-dtls --no-tcp --use-auth-secret \
			--static-auth-secret "$SECRET" --realm "$REALM" -L 127.0.0.1 --relay-ip "$RELAY_IP" \
			--listening-port "$PORT" --min-port "$MIN_PORT" --max-port "$MAX_PORT" \
			--pidfile "$work/coturn.pid" --no-stdout-log --simple-log --log-file "$work/coturn.log" \
			>/dev/null 2>&1 &
		;;
	esac
	await_server "$1" "$PORT"
}

# server_drops prints, as JSON, the kernel drops at the server's sockets (from /proc/net/udp
# of this network namespace: the listener's port, the relay ports' range) and, for avedge,
# its drops by reason and its relayed packets from /metrics.
# backlog_drops prints the packets the kernel dropped from the CPUs' input backlogs since
# boot, machine-wide (the second column of /proc/net/softnet_stat, per CPU, in hex).
backlog_drops() {
	local sum=0 line
	while read -r -a line; do sum=$((sum + 16#${line[1]})); done </proc/net/softnet_stat
	echo "$sum"
}

server_drops() {
	local metrics=""
	if [[ $1 == avedge* ]]; then
		metrics=$(curl -sf "http://$METRICS/metrics" || true)
	fi
	python3 - "$PORT" "$MIN_PORT" "$MAX_PORT" "$metrics" "$2" <<'PY'
import json, re, sys
port, lo, hi, metrics = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
out = {"listener_drops": 0, "relay_socket_drops": 0, "relay_drops": {}, "relayed": {}, "backlog_drops": int(sys.argv[5])}
for name in ("/proc/net/udp", "/proc/net/udp6"):
    try:
        lines = open(name).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        f = line.split()
        p, drops = int(f[1].split(":")[1], 16), int(f[-1])
        if p == port:
            out["listener_drops"] += drops
        elif lo <= p <= hi:
            out["relay_socket_drops"] += drops
for line in metrics.splitlines():
    m = re.match(r'avedge_dropped_packets_total\{reason="([^"]+)"\} (\S+)', line)
    if m and float(m.group(2)) > 0:
        out["relay_drops"][m.group(1)] = int(float(m.group(2)))
    m = re.match(r'avedge_(kernel_)?relayed_packets_total\{direction="([^"]+)"(?:,path="channel")?\} (\S+)', line)
    if m:
        out["relayed"][(m.group(1) or "") + m.group(2)] = int(float(m.group(3)))
print(json.dumps(out))
PY
}

mkdir -p "$OUT"
results="$OUT/flood.tsv"
: >"$results"
log "servers: ${servers[*]}; $LIVE live allocations; $(nproc) cores"
for srv in "${servers[@]}"; do
	log "$srv"
	start_server "$srv" || { stop_server; continue; }
	"$work/avedge-load" --server "127.0.0.1:$PORT" --secret "$SECRET" --clients 1 --rate 1 \
		--duration "$((FLOOD_SECONDS + 2))s" --flood 100000000 --flood-duration "${FLOOD_SECONDS}s" \
		--flood-rate "$FLOOD_RATE" --flood-allocate-every "$FLOOD_ALLOCATE_EVERY" --flood-nonce-per-source --json >"$work/flood.json" &
	flood_pid=$!
	backlog0=$(backlog_drops)
	if json=$(timeout 300 "$work/avedge-load" --server "127.0.0.1:$PORT" --secret "$SECRET" --clients "$LIVE" \
		--rate 50 --size 160 --duration "$DURATION" --refresh 2s --server-pid "$server_pid" --json) &&
		wait "$flood_pid"; then
		printf '%s\t%s\t%s\t%s\n' "$srv" "$json" "$(cat "$work/flood.json")" "$(server_drops "$srv" "$(($(backlog_drops) - backlog0))")" >>"$results"
	else
		log "$srv: run failed"
		wait "$flood_pid" || true
	fi
	stop_server
done

echo
echo "bench-flood: $(nproc) cores, $LIVE live allocations × 50 pps × 160 B, refreshed every 2 s; flood from 1 024 sources on one thread of another process (every ${FLOOD_ALLOCATE_EVERY}th an Allocate)"
printf '%-14s %9s %8s %10s %9s %12s %12s %10s %9s %9s\n' server flood/s nonce-fb refreshes ref-fail clients-lost live-sent live-sent/s loss-% srv-cpu
while IFS=$'\t' read -r srv json flood drops; do
	python3 - "$srv" "$json" "$flood" <<'PY'
import json, sys
srv, r = sys.argv[1], json.loads(sys.argv[2])
f = json.loads(sys.argv[3]).get("flood") or {}
print(f"{srv:<14} {f.get('per_second', 0):9.0f} {f.get('nonce_fallbacks', 0):8d} {r['refreshes']:10d} {r['refresh_errors']:9d} "
      f"{r.get('refresh_failed_clients', 0):12d} {r['sent']:12d} {r['sent_per_second']:10.0f} {r['loss_percent']:9.4f} {r.get('server_cpu_seconds', 0):8.2f}s")
PY
done <"$results"
echo
echo "where the live packets were lost (packets; out = client → echo peer, back = echo peer → client;"
echo "backlog = the CPUs' input backlogs, machine-wide; listener = kernel drops at the server's listening socket; both flood and live alike;"
echo "relay-sock = at its relay ports; relay = avedge's own drops, by reason (its kernel program's included);"
echo "gen = the generator's client / echo-peer sockets; unacc = lost, not accounted for)"
printf '%-14s %9s %9s %9s %10s %10s %28s %10s %10s %9s %9s\n' server lost-out lost-back backlog listener relay-sock relay gen-client gen-peer unacc-out unacc-bk
while IFS=$'\t' read -r srv json flood drops; do
	python3 - "$srv" "$json" "$drops" <<'PY'
import json, sys
srv, r, d = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = max(r["sent"] - r.get("peer_received", 0), 0)
back = max(r.get("peer_received", 0) - r["received"], 0)
rd = d.get("relay_drops", {})
relay = ",".join(f"{k}={v}" for k, v in sorted(rd.items())) or "-"
live_relay = sum(v for k, v in rd.items() if k in ("queue_full", "send_error"))
# The listener's and the backlogs' drops are flood and live alike: the way out's loss not
# found elsewhere is charged to them, up to what they dropped, and so is the way back's.
unacc_out = out - r.get("peer_kernel_drops", 0)
shared = d.get("listener_drops", 0) + d.get("backlog_drops", 0)
unacc_out -= min(max(unacc_out, 0), shared)
unacc_back = back - r.get("client_kernel_drops", 0) - d.get("relay_socket_drops", 0)
unacc_back -= min(max(unacc_back, 0), d.get("backlog_drops", 0))
print(f"{srv:<14} {out:9d} {back:9d} {d.get('backlog_drops', 0):9d} {d.get('listener_drops', 0):10d} {d.get('relay_socket_drops', 0):10d} {relay:>28} "
      f"{r.get('client_kernel_drops', 0):10d} {r.get('peer_kernel_drops', 0):10d} {unacc_out:9d} {unacc_back:9d}")
PY
done <"$results"

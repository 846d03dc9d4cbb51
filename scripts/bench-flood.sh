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
# coturn), OUT (results dir, default bench/out), AVEDGE_ARGS (more avedge flags, split on
# spaces, e.g. "--workers 2").
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

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

raise_nofile

log "building into $work"
go build -o "$work/avedge" ./cmd/avedge
go build -o "$work/avedge-load" ./cmd/avedge-load
servers=()
for s in ${SERVERS:-avedge coturn}; do
	if [[ $s == coturn ]] && ! command -v turnserver >/dev/null 2>&1; then
		log "turnserver not installed; benchmarking without coturn"
		continue
	fi
	servers+=("$s")
done

start_server() {
	case $1 in
	avedge)
		"$work/avedge" --listening-ip 127.0.0.1 --listening-port "$PORT" --min-port "$MIN_PORT" --max-port "$MAX_PORT" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip "$RELAY_IP" --allow-loopback-peers \
			--allocate-rate -1 --unauthorized-rate -1 --metrics-listen '' --auth-listen '' --total-quota "$((LIVE + 16))" \
			--data-path io_uring \
			${AVEDGE_ARGS:-} >"$work/avedge.log" 2>&1 &
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
	if json=$(timeout 300 "$work/avedge-load" --server "127.0.0.1:$PORT" --secret "$SECRET" --clients "$LIVE" \
		--rate 50 --size 160 --duration "$DURATION" --refresh 2s --server-pid "$server_pid" --json) &&
		wait "$flood_pid"; then
		printf '%s\t%s\t%s\n' "$srv" "$json" "$(cat "$work/flood.json")" >>"$results"
	else
		log "$srv: run failed"
		wait "$flood_pid" || true
	fi
	stop_server
done

echo
echo "bench-flood: $(nproc) cores, $LIVE live allocations × 50 pps × 160 B, refreshed every 2 s; flood from 1 024 sources on one thread of another process (every ${FLOOD_ALLOCATE_EVERY}th an Allocate)"
printf '%-8s %10s %10s %10s %9s %9s %12s %12s %9s %10s\n' server flood/s flood-sent Bindings Allocates refreshes refresh-fail clients-lost loss-% server-cpu
while IFS=$'\t' read -r srv json flood; do
	python3 - "$srv" "$json" "$flood" <<'PY'
import json, sys
srv, r = sys.argv[1], json.loads(sys.argv[2])
f = json.loads(sys.argv[3]).get("flood") or {}
print(f"{srv:<8} {f.get('per_second', 0):10.0f} {f.get('sent', 0):10d} {f.get('bindings', 0):10d} {f.get('allocates', 0):9d} "
      f"{r['refreshes']:9d} {r['refresh_errors']:12d} {r.get('refresh_failed_clients', 0):12d} {r['loss_percent']:9.4f} "
      f"{r.get('server_cpu_seconds', 0):9.2f}s")
PY
done <"$results"

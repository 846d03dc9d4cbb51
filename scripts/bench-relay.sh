#!/usr/bin/env bash
# bench-relay.sh — `make bench-relay`: the same loads against avedge, a plain
# pion/turn v5 server (bench/pionturn) and coturn's turnserver (if installed),
# alternating servers within each round, each server started fresh per run.
# Prints packets relayed per CPU-second of the server process (median of the
# rounds; see package loadgen for the definition), loss, p99 round trip, and
# the ratios avedge/coturn and avedge/pion.
#
# Environment: DURATION (seconds per run, default 10), ROUNDS (default 2),
# LOADS (space-separated subset of: audio50 audio200 video saturate),
# SERVERS (subset of: avedge pion coturn), OUT (results dir, default bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
DURATION=${DURATION%s}
ROUNDS=${ROUNDS:-2}
LOADS=${LOADS:-audio50 audio200 video saturate}
SECRET=${SECRET:-bench-relay-secret}
REALM=avedge.bench
OUT=${OUT:-bench/out}

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"


# --- build ------------------------------------------------------------------
log "building into $work"
go build -o "$work/avedge-load" ./cmd/avedge-load
go build -o "$work/benchtable" ./bench/benchtable
build_servers
servers=()
for s in ${SERVERS:-${all_servers[*]}}; do
	if [[ " ${all_servers[*]} " == *" $s "* ]]; then servers+=("$s"); fi
done

# --- servers ----------------------------------------------------------------
# Distinct listening ports and relay ranges per server, all on loopback.
port_of() { case $1 in avedge) echo 34780 ;; pion) echo 34781 ;; coturn) echo 34782 ;; esac; }
range_of() { case $1 in avedge) echo "40000 44999" ;; pion) echo "45000 49999" ;; coturn) echo "50000 54999" ;; esac; }

start_server() {
	local name=$1 port min max
	port=$(port_of "$name")
	read -r min max < <(range_of "$name")
	case $name in
	avedge)
		# The benchmark measures relaying, not avedge's caps (pion and coturn run without
		# any): the saturate load pushes one allocation past the default max-bps.
		"$work/avedge" --listening-ip 127.0.0.1 --listening-port "$port" --min-port "$min" --max-port "$max" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip 127.0.0.1 --allow-loopback-peers \
			--user-quota -1 --max-bps -1 \
			>"$work/avedge.log" 2>&1 &
		;;
	pion)
		"$work/pionturn" --listening-ip 127.0.0.1 --listening-port "$port" --min-port "$min" --max-port "$max" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip 127.0.0.1 \
			>"$work/pion.log" 2>&1 &
		;;
	coturn)
		turnserver -n --allow-loopback-peers --no-cli --no-tls --no-dtls --no-tcp --use-auth-secret \
			--static-auth-secret "$SECRET" --realm "$REALM" -L 127.0.0.1 --relay-ip 127.0.0.1 \
			--listening-port "$port" --min-port "$min" --max-port "$max" \
			--pidfile "$work/coturn.pid" --no-stdout-log --simple-log --log-file "$work/coturn.log" \
			>/dev/null 2>&1 &
		;;
	esac
	await_server "$name" "$port"
}


# --- loads ------------------------------------------------------------------
load_args() {
	case $1 in
	audio50) echo "--clients 50 --rate 50 --size 160" ;;
	audio200) echo "--clients 200 --rate 50 --size 160" ;;
	video) echo "--clients 4 --rate 250 --size 1200" ;;
	saturate) echo "--clients 1 --rate 0 --size 1200" ;;
	*) log "unknown load $1"; return 1 ;;
	esac
}

mkdir -p "$OUT"
results="$OUT/results.tsv"
: >"$results"
log "servers: ${servers[*]}; loads: $LOADS; ${DURATION}s per run, $ROUNDS rounds; $(nproc) cores"
for load in $LOADS; do
	args=$(load_args "$load")
	for round in $(seq "$ROUNDS"); do
		# The no-relay baseline round trip, for the p99 comparison.
		# shellcheck disable=SC2086
		if json=$("$work/avedge-load" --direct $args --duration "${DURATION}s" --json); then
			printf '%s\tdirect\t%s\n' "$load" "$json" >>"$results"
		fi
		for srv in "${servers[@]}"; do
			log "$load round $round: $srv"
			if ! start_server "$srv"; then
				stop_server
				continue
			fi
			# shellcheck disable=SC2086
			if json=$("$work/avedge-load" --server "127.0.0.1:$(port_of "$srv")" --secret "$SECRET" \
				$args --duration "${DURATION}s" --server-pid "$server_pid" --json); then
				printf '%s\t%s\t%s\n' "$load" "$srv" "$json" >>"$results"
			else
				log "$load round $round: $srv failed"
			fi
			stop_server
		done
	done
done

echo
echo "bench-relay: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), ${DURATION}s per run, $ROUNDS rounds, median shown"
"$work/benchtable" <"$results"

# The RFC 6062 TCP relay rows: bytes, not packets, so a table of their own (TCP_RELAY=0
# skips them).
if [[ ${TCP_RELAY:-1} != 0 ]]; then
	./scripts/bench-tcp-relay.sh
fi

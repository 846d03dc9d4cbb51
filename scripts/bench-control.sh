#!/usr/bin/env bash
# bench-control.sh — `make bench-control`: the control plane of avedge, coturn's turnserver
# (if installed) and a plain pion/turn v5 server (bench/pionturn), side by side with the same
# client (bench/controlload: the pion/turn v5 client, one UDP socket per allocation, TURN REST
# credentials). For each N it makes N allocations, holds them all open until all are made,
# then times Refreshes and ChannelBinds with the N live. Each server is started fresh for each
# run, and the servers alternate within each round. Prints allocations per second (overall
# and in the last tenth, with 90–100 % of N live), failures, the server's RSS per allocation,
# Refresh/ChannelBind latency at N live, and the ratios avedge/coturn and avedge/pion of
# allocations per second (median of the rounds, with the range of the per-round ratios), and
# the same ratios of allocations per CPU-second of the server beside the client's CPU per
# allocation: the client runs on the same cores, so on a small machine the rate is bounded by
# the two processes' CPU together, and the server's own figure is the one a client elsewhere
# would see.
#
# Environment: COUNTS (live allocations, default "1000 10000 50000"), ROUNDS (default 2),
# CLIENTS (allocations in progress at once, default 8), SAMPLES (Refreshes and ChannelBinds
# timed at N live, default 1000), SERVERS (subset of: avedge pion coturn avedge-limits),
# RUN_TIMEOUT (bound on one run, default 180s), OUT (results dir, default bench/out),
# AVEDGE_BASE (path to another avedge binary, e.g. one built from main: it runs as server
# avedge-base, with avedge's flags, to compare a change before/after in the same rounds),
# PPROF (1: build avedge with -tags avedge_pprof and save a CPU profile of the first
# PPROF_SECONDS, default 2, of each run's Allocate burst, and a heap profile right after, to
# $OUT/pprof/avedge-N-rR.{cpu,heap}; the top of round 1's are printed at the end).
#
# avedge runs with --allocate-rate -1 --unauthorized-rate -1 --request-rate -1: the client's N allocations come
# from a few source addresses, as from a corporate NAT, and the per-source limits would be
# what is measured (every Allocate begins with a 401 challenge, which --unauthorized-rate
# counts). SERVERS=avedge-limits adds avedge with its default limits, to show that cost.
#
# avedge refuses to start when RLIMIT_NOFILE cannot hold one socket per port of its range
# (55 001 here), so it gets --total-quota N + 16, which bounds what it may need.
#
# File descriptors: every server holds one relay socket per allocation, and the client one
# socket per allocation, so a run of N needs N + ~100 descriptors per process. The script
# raises the soft limit to the hard one (ulimit -Hn) and skips, saying so, any N above it.
# Relay ports: 10000–65000 (55 001) on 127.0.0.2 for every server; above 40 000 allocations
# coturn also gets 127.0.0.3…127.0.0.11 (avedge and pion take one relay address per family).
# Clients send from 127.0.1.1 onwards, 16 000 sockets per address. Everything is on loopback:
# the same script runs on the host or inside a network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-1000 10000 50000}
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-8}
SAMPLES=${SAMPLES:-1000}
RUN_TIMEOUT=${RUN_TIMEOUT:-180s}
RUN_TIMEOUT=${RUN_TIMEOUT%s}
SECRET=${SECRET:-bench-control-secret}
REALM=avedge.bench
OUT=${OUT:-bench/out}
MIN_PORT=10000
MAX_PORT=65000
RELAY_IP=127.0.0.2

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"


# --- limits -----------------------------------------------------------------
raise_nofile
fds=$(ulimit -n)

# --- build ------------------------------------------------------------------
log "building into $work"
go build -o "$work/controlload" ./bench/controlload
build_servers
[[ " ${all_servers[*]} " == *" avedge "* ]] && all_servers+=(avedge-limits)
PPROF=${PPROF:-0}
PPROF_SECONDS=${PPROF_SECONDS:-2}
PPROF_ADDR=127.0.0.1:6061
if [[ $PPROF == 1 ]]; then
	go build -tags avedge_pprof -o "$work/avedge" ./cmd/avedge
	mkdir -p "$OUT/pprof"
fi
if [[ -n ${AVEDGE_BASE:-} ]]; then
	cp "$AVEDGE_BASE" "$work/avedge-base"
	all_servers+=(avedge-base)
fi
servers=()
for s in ${SERVERS:-avedge pion coturn}; do
	if [[ " ${all_servers[*]} " == *" $s "* ]]; then servers+=("$s"); fi
done

# --- servers ----------------------------------------------------------------
port_of() { case $1 in avedge | avedge-limits | avedge-base) echo 9790 ;; pion) echo 9791 ;; coturn) echo 9792 ;; esac; }  # below the relay range: avedge refuses a listener inside it

start_server() {
	local name=$1 n=$2 port relay_ips
	port=$(port_of "$name")
	case $name in
	avedge | avedge-limits | avedge-base)
		local limits=(--allocate-rate -1 --unauthorized-rate -1 --request-rate -1) bin=$work/avedge
		[[ $name == avedge-limits ]] && limits=()
		[[ $name == avedge-base ]] && bin=$work/avedge-base
		AVEDGE_PPROF=$([[ $PPROF == 1 && $name == avedge ]] && echo "$PPROF_ADDR") "$bin" --listening-ip 127.0.0.1 --listening-port "$port" --min-port "$MIN_PORT" --max-port "$MAX_PORT" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip "$RELAY_IP" --allow-loopback-peers \
			"${limits[@]}" --metrics-listen '' --auth-listen '' --total-quota "$((n + 16))" \
			--data-path io_uring \
			>"$work/avedge.log" 2>&1 &
		;;
	pion)
		"$work/pionturn" --listening-ip 127.0.0.1 --listening-port "$port" --min-port "$MIN_PORT" --max-port "$MAX_PORT" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip "$RELAY_IP" \
			>"$work/pion.log" 2>&1 &
		;;
	coturn)
		relay_ips=(--relay-ip "$RELAY_IP")
		if ((n > 40000)); then
			for i in $(seq 3 11); do relay_ips+=(--relay-ip "127.0.0.$i"); done
		fi
		turnserver -n --allow-loopback-peers --no-cli --no-tls --no-dtls --no-tcp --use-auth-secret \
			--static-auth-secret "$SECRET" --realm "$REALM" -L 127.0.0.1 "${relay_ips[@]}" \
			--listening-port "$port" --min-port "$MIN_PORT" --max-port "$MAX_PORT" \
			--pidfile "$work/coturn.pid" --no-stdout-log --simple-log --log-file "$work/coturn.log" \
			>/dev/null 2>&1 &
		;;
	esac
	await_server "$name" "$port"
}


# --- runs -------------------------------------------------------------------
mkdir -p "$OUT"
results="$OUT/control.tsv"
: >"$results"
skipped=()
log "servers: ${servers[*]}; N: $COUNTS; $ROUNDS rounds, $CLIENTS clients; $(nproc) cores; RLIMIT_NOFILE $fds"
for n in $COUNTS; do
	if [[ $fds != unlimited ]] && ((n + 100 > fds)); then
		skipped+=("N=$n needs $((n + 100)) file descriptors per process (one relay socket per allocation on the server, one socket per allocation on the client); RLIMIT_NOFILE here is $fds (hard)")
		log "skipping N=$n: ${skipped[-1]}"
		continue
	fi
	for round in $(seq "$ROUNDS"); do
		for srv in "${servers[@]}"; do
			log "N=$n round $round: $srv"
			if ! start_server "$srv" "$n"; then
				stop_server
				continue
			fi
			prof=""
			if [[ $PPROF == 1 && $srv == avedge ]]; then
				prof=$OUT/pprof/avedge-$n-r$round
				(curl -sf -o "$prof.cpu" "http://$PPROF_ADDR/debug/pprof/profile?seconds=$PPROF_SECONDS" &&
					curl -sf -o "$prof.heap" "http://$PPROF_ADDR/debug/pprof/heap") &
				prof_pid=$!
			fi
			if json=$(timeout $((RUN_TIMEOUT + 60)) "$work/controlload" --server "127.0.0.1:$(port_of "$srv")" --secret "$SECRET" \
				--allocations "$n" --clients "$CLIENTS" --samples "$SAMPLES" --server-pid "$server_pid" \
				--timeout "${RUN_TIMEOUT}s" --json); then
				printf '%s\t%s\t%s\n' "$n" "$srv" "$json" >>"$results"
			else
				log "N=$n round $round: $srv failed"
			fi
			if [[ -n $prof ]]; then
				wait "$prof_pid" || log "N=$n round $round: no profile (the run ended before $PPROF_SECONDS s?)"
			fi
			stop_server
		done
	done
done

echo
echo "bench-control: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $CLIENTS clients, $ROUNDS rounds, median shown"
"$work/controlload" --table <"$results"
for s in "${skipped[@]}"; do echo "skipped: $s"; done
if [[ $PPROF == 1 ]]; then
	for f in "$OUT"/pprof/avedge-*-r1.cpu; do
		[[ -s $f ]] || continue
		echo
		echo "CPU profile, ${f##*/} (first $PPROF_SECONDS s of the burst):"
		go tool pprof -top -nodecount=25 "$work/avedge" "$f" 2>/dev/null | sed -n '1,32p'
	done
fi

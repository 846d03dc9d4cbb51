#!/usr/bin/env bash
# bench-relay.sh — `make bench-relay`: the same loads against avedge, a plain
# pion/turn v5 server (bench/pionturn) and coturn's turnserver (if installed),
# each server started fresh per run, in two topologies:
#
#   loopback  generator, echo peers and relay on 127.0.0.1 of one namespace (the
#             script's own);
#   netns     generator and echo peers in one network namespace (10.77.0.1), the
#             relay in another (10.77.0.2), joined by a veth pair; both namespaces
#             are created here and removed on exit or interrupt (needs root).
#
# Every relayed run comes right after a direct run of the same load (the same
# generator and echo peers, no relay): direct, server 1, direct, server 2, …, the
# order of the servers reversed every other round. Two tables per topology
# (bench/benchtable): packets relayed per CPU-second of the server process, and the
# relay cost per relayed packet: the machine's busy CPU time (all CPUs, /proc/stat)
# during the relayed run less that during the direct run before it, over the
# packets relayed, which counts the relaying the kernel charges to softirq or to
# the sender's process (on loopback and veth) and an in-kernel (XDP/TC) relay; and
# the same less the CPU time of the machine's other processes, for a shared machine. In the
# netns topology each direct run is followed by a routed direct run (the same generator and
# peers, their traffic forwarded by the kernel through the relay's namespace: the veth
# crossings any relay there pays), and the cost table gains the cost over that baseline too.
# README.md, "Relay cost per relayed packet", says more.
#
# Environment: DURATION (seconds per run, default 10), ROUNDS (≥ 2, default 2),
# LOADS (space-separated subset of: audio50 audio200 video saturate saturate128; the last,
# not run by default, is saturate with 128 probes in flight instead of 32),
# SERVERS (subset of: avedge avedge-epoll avedge-offload pion coturn; default all but
# avedge-epoll; avedge runs --data-path io_uring, user space, as auto would offload;
# avedge-offload runs avedge with --data-path offload and is skipped, with a note,
# where avedge refuses that or fails to start with it; avedge-offload-xdp,
# avedge-offload-generic and avedge-offload-tc run it with --offload-attach xdp, xdp-generic
# or tc, to compare the ways onto the veth), TOPOLOGIES (subset of:
# loopback netns; default both), QUICK=1 (DURATION 3, LOADS "audio50 video saturate",
# TOPOLOGIES netns unless given, TCP_RELAY=0: a few minutes), OUT (results dir, default
# bench/out), TCP_RELAY=0 (skip the RFC 6062 TCP relay rows, scripts/bench-tcp-relay.sh),
# ROUTED=0 (no routed direct runs in the netns topology), XDPPASS (netns: 1 holds an XDP
# program on the generator's veth end, which native XDP's XDP_TX needs there; 0 leaves it bare,
# as a real far end is. Default 1 only when SERVERS has avedge-offload-xdp: avedge-offload
# takes the tc variant on a veth, which needs none, and the program would put every server's
# frames through v0's NAPI context).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n ${QUICK:-} ]]; then
	DURATION=${DURATION:-3}
	LOADS=${LOADS:-audio50 video saturate}
	TOPOLOGIES=${TOPOLOGIES:-netns}
	TCP_RELAY=${TCP_RELAY:-0}
fi
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
ROUNDS=${ROUNDS:-2}
LOADS=${LOADS:-audio50 audio200 video saturate}
TOPOLOGIES=${TOPOLOGIES:-loopback netns}
SECRET=${SECRET:-bench-relay-secret}
REALM=avedge.bench
OUT=${OUT:-bench/out}

if ((ROUNDS < 2)); then
	echo "bench-relay: ROUNDS=$ROUNDS: at least 2 rounds, so that each ratio has a range" >&2
	exit 2
fi
if [[ " $TOPOLOGIES " == *" netns "* && $(id -u) != 0 ]]; then
	echo "bench-relay: the netns topology creates network namespaces and a veth pair, which needs root;" >&2
	echo "  run as root, or TOPOLOGIES=loopback for the loopback runs alone" >&2
	exit 1
fi

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
raise_nofile

# --- build ------------------------------------------------------------------
log "building into $work"
go build -o "$work/avedge-load" ./cmd/avedge-load
go build -o "$work/benchtable" ./bench/benchtable
go build -o "$work/xdppass" ./bench/xdppass
build_servers
known=("${all_servers[@]}")
if [[ " ${all_servers[*]} " == *" avedge "* ]]; then known+=(avedge-epoll avedge-offload avedge-offload-xdp avedge-offload-generic avedge-offload-tc); fi
servers=()
for s in ${SERVERS:-avedge avedge-offload pion coturn}; do
	if [[ " ${known[*]} " == *" $s "* ]]; then servers+=("$s"); fi
done

# --- topology ---------------------------------------------------------------
# Set by use_topology: the command prefix that runs a program on the generator's side
# (gen) and on the relay's (rel), the relay's and the generator's addresses, and the
# peers avedge must be told to allow.
gen=() rel=() relay_ns="" relay_ip=127.0.0.1 local_ip=127.0.0.1 peer_flags=()
ns_c=avb$$c ns_r=avb$$r # unique to this run: other runs may share the machine
netns_up() {
	log "netns: creating $ns_c (generator, echo peers: 10.77.0.1) and $ns_r (relay: 10.77.0.2), veth v0—v1"
	ip netns add "$ns_c"
	at_exit "ip netns del $ns_c 2>/dev/null"
	ip netns add "$ns_r"
	at_exit "ip netns del $ns_r 2>/dev/null"
	ip link add v0 netns "$ns_c" type veth peer name v1 netns "$ns_r"
	ip -n "$ns_c" addr add 10.77.0.1/24 dev v0
	ip -n "$ns_r" addr add 10.77.0.2/24 dev v1
	for ns in "$ns_c" "$ns_r"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$ns_c" link set v0 up
	ip -n "$ns_r" link set v1 up
	# The kernel fast path (avedge-offload) finds its next hop with a route lookup, which the
	# kernel answers only on an interface that forwards (docs/operator-guide.md).
	ip netns exec "$ns_r" sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1
	# A frame an XDP program on v1 sends back out (XDP_TX) is received by v0 through its NAPI
	# context, which a veth has only while an XDP program is attached to it (GRO on v0 was
	# not enough): bench/xdppass holds one that passes everything, for the namespace's life.
	local xdppass=0
	[[ " ${SERVERS:-} " == *" avedge-offload-xdp "* ]] && xdppass=1
	if [[ ${XDPPASS:-$xdppass} == 0 ]]; then
		log "netns: no XDP program on v0 (XDPPASS=1 holds one, for native XDP)"
	else
		hold_xdppass
	fi
	routed_setup
}

hold_xdppass() {
	ip netns exec "$ns_c" "$work/xdppass" v0 >"$work/xdppass.log" 2>&1 &
	local xp=$!
	at_exit "kill $xp 2>/dev/null; wait $xp 2>/dev/null"
	for _ in $(seq 50); do
		grep -q attached "$work/xdppass.log" 2>/dev/null && break
		kill -0 "$xp" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q attached "$work/xdppass.log" 2>/dev/null; then
		log "netns: no XDP program on v0 ($(tail -1 "$work/xdppass.log")): avedge-offload's XDP_TX frames would be dropped there"
	fi
}

# The routed direct baseline (ROUTED, netns only): the direct run's generator and echo peers,
# their traffic (10.77.0.1 to 10.77.0.1) sent out of v0 to the relay's namespace and
# forwarded back by its kernel, no relay: four veth crossings per round trip, as a relayed
# one has. Policy routing in the generator's namespace: the local table's rule moves behind a
# rule that sends locally generated packets between the generator's own addresses to table
# 177 (default via 10.77.0.2); routed_on adds that rule for a run, routed_off takes it away.
# A packet coming back in on v0 from the generator's own address is then accepted
# (accept_local), and the relay's namespace sends no redirects for packets it forwards out
# of the interface they came in on.
routed_setup() {
	ip netns exec "$ns_c" sysctl -qw net.ipv4.conf.v0.accept_local=1 net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.v0.rp_filter=0 net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.v0.accept_redirects=0
	ip netns exec "$ns_r" sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.v1.send_redirects=0
	ip -n "$ns_c" route add default via 10.77.0.2 dev v0 table 177
	ip -n "$ns_c" rule add pref 1000 lookup local
	ip -n "$ns_c" rule del pref 0
}
routed_on() { ip -n "$ns_c" rule add pref 100 iif lo from 10.77.0.1 to 10.77.0.1 lookup 177; }
routed_off() { ip -n "$ns_c" rule del pref 100 2>/dev/null || true; }
# forwarded: the datagrams the relay's namespace has forwarded (Ip ForwDatagrams).
forwarded() { ip netns exec "$ns_r" awk '/^Ip:/ && $2 ~ /^[0-9]/ {print $7}' /proc/net/snmp; }

# routed ARGS...: one routed direct run (the load's direct arguments), recorded as
# "direct-routed" in RESULTS ($results of bench) if the relay's namespace forwarded at least
# the datagrams the run delivered, which shows the traffic took the route.
routed() {
	local f0 f1 delivered
	f0=$(forwarded)
	routed_on
	if ! generate --direct "$@"; then
		routed_off
		log "$topo $load round $round: the routed direct run failed"
		return
	fi
	routed_off
	f1=$(forwarded)
	delivered=$(grep -o '"delivered":[0-9]*' "$work/report.json" | cut -d: -f2)
	if ((f1 - f0 < delivered)); then
		log "$topo $load round $round: the routed direct run delivered $delivered datagrams but the relay's namespace forwarded $((f1 - f0)): not recorded"
		return
	fi
	printf '%s\tdirect-routed\t%s\n' "$load" "$(<"$work/report.json")" >>"$results"
}
use_topology() {
	case $1 in
	loopback)
		gen=() rel=() relay_ns="" relay_ip=127.0.0.1 local_ip=127.0.0.1 peer_flags=(--allow-loopback-peers)
		;;
	netns)
		gen=(ip netns exec "$ns_c") rel=(ip netns exec "$ns_r") relay_ns=$ns_r
		relay_ip=10.77.0.2 local_ip=10.77.0.1 peer_flags=(--allowed-peer-ip 10.77.0.1/32)
		;;
	esac
}

# --- servers ----------------------------------------------------------------
# Distinct listening ports and relay ranges per server.
port_of() {
	case $1 in
	avedge) echo 34780 ;; pion) echo 34781 ;; coturn) echo 34782 ;; avedge-epoll) echo 34783 ;; avedge-offload) echo 34784 ;;
	avedge-offload-xdp) echo 34785 ;; avedge-offload-generic) echo 34786 ;; avedge-offload-tc) echo 34787 ;;
	esac
}
range_of() {
	case $1 in
	avedge*) echo "40000 44999" ;; pion) echo "45000 49999" ;; coturn) echo "50000 54999" ;;
	esac
}

start_server() {
	local name=$1 port min max dp=()
	port=$(port_of "$name")
	read -r min max < <(range_of "$name")
	case $name in
	avedge*)
		case $name in
		avedge) dp=(--data-path io_uring) ;;
		avedge-epoll) dp=(--data-path epoll) ;;
		avedge-offload) dp=(--data-path offload) ;;
		avedge-offload-xdp) dp=(--data-path offload --offload-attach xdp) ;;
		avedge-offload-generic) dp=(--data-path offload --offload-attach xdp-generic) ;;
		avedge-offload-tc) dp=(--data-path offload --offload-attach tc) ;;
		esac
		# The benchmark measures relaying, not avedge's caps (pion and coturn run without
		# any): the saturate load pushes one allocation past the default max-bps.
		"${rel[@]}" "$work/avedge" --listening-ip "$relay_ip" --listening-port "$port" --min-port "$min" --max-port "$max" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip "$relay_ip" "${peer_flags[@]}" \
			--user-quota -1 --max-bps -1 "${dp[@]}" \
			>"$work/$name.log" 2>&1 &
		;;
	pion)
		"${rel[@]}" "$work/pionturn" --listening-ip "$relay_ip" --listening-port "$port" --min-port "$min" --max-port "$max" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip "$relay_ip" \
			>"$work/pion.log" 2>&1 &
		;;
	coturn)
		"${rel[@]}" turnserver -n --allow-loopback-peers --no-cli --no-tls --no-dtls --no-tcp --use-auth-secret \
			--static-auth-secret "$SECRET" --realm "$REALM" -L "$relay_ip" --relay-ip "$relay_ip" \
			--listening-port "$port" --min-port "$min" --max-port "$max" \
			--pidfile "$work/coturn.pid" --no-stdout-log --simple-log --log-file "$work/coturn.log" \
			>/dev/null 2>&1 &
		;;
	esac
	await_server "$name" "$port" "$relay_ns"
}

# --- loads ------------------------------------------------------------------
load_args() {
	case $1 in
	audio50) echo "--clients 50 --rate 50 --size 160" ;;
	audio200) echo "--clients 200 --rate 50 --size 160" ;;
	video) echo "--clients 4 --rate 250 --size 1200" ;;
	saturate) echo "--clients 1 --rate 0 --size 1200" ;;
	saturate128) echo "--clients 1 --rate 0 --size 1200 --window 128" ;;
	*) log "unknown load $1"; return 1 ;;
	esac
}

# generate ARGS...: one run of the generator on its side of the topology, bounded in time
# whatever the server does; its JSON report in $work/report.json. It runs in the background
# and is waited for, so that an interrupt ends the script (and stops it) at once.
gen_pid=""
at_exit '[[ -z $gen_pid ]] || kill "$gen_pid" 2>/dev/null'
generate() {
	local rc=0
	"${gen[@]}" timeout -k 5 $((DURATION + 90)) "$work/avedge-load" --local "$local_ip" "$@" --duration "${DURATION}s" --json \
		>"$work/report.json" &
	gen_pid=$!
	wait "$gen_pid" || rc=$?
	gen_pid=""
	return "$rc"
}

# bench TOPOLOGY RESULTS: every load, ROUNDS rounds, each server after a direct run.
bench() {
	local topo=$1 results=$2 load args round srv order skipped=()
	use_topology "$topo"
	: >"$results"
	# avedge-offload exists once avedge accepts --data-path offload (and runs it only where
	# the kernel lets it): try it once here rather than after a direct run of every load.
	if [[ " ${servers[*]} " == *" avedge-offload "* ]]; then
		if start_server avedge-offload; then
			stop_server
		else
			stop_server
			sed 's/^/  /' "$work/avedge-offload.log" | tail -3 >&2
			log "$topo: avedge-offload skipped (this avedge refuses --data-path offload, or the offload could not start)"
			skipped+=(avedge-offload)
		fi
	fi
	for load in $LOADS; do
		args=$(load_args "$load")
		for round in $(seq "$ROUNDS"); do
			order=("${servers[@]}")
			if ((round % 2 == 0)); then
				for ((i = 0; i < ${#servers[@]}; i++)); do order[i]=${servers[${#servers[@]} - 1 - i]}; done
			fi
			for srv in "${order[@]}"; do
				if [[ " ${skipped[*]} " == *" $srv "* ]]; then continue; fi
				log "$topo $load round $round: direct, then $srv"
				# shellcheck disable=SC2086
				if generate --direct $args; then
					printf '%s\tdirect\t%s\n' "$load" "$(<"$work/report.json")" >>"$results"
				else
					log "$topo $load round $round: the direct run failed"
				fi
				if [[ $topo == netns && ${ROUTED:-1} != 0 ]]; then
					# shellcheck disable=SC2086
					routed $args
				fi
				if ! start_server "$srv"; then
					stop_server
					sed 's/^/  /' "$work/$srv.log" 2>/dev/null | tail -3 >&2 || true
					continue
				fi
				# shellcheck disable=SC2086
				if generate --server "$relay_ip:$(port_of "$srv")" --secret "$SECRET" $args --server-pid "$server_pid"; then
					printf '%s\t%s\t%s\n' "$load" "$srv" "$(<"$work/report.json")" >>"$results"
				else
					log "$topo $load round $round: $srv failed"
				fi
				stop_server
			done
		done
	done
}

mkdir -p "$OUT"
log "servers: ${servers[*]}; loads: $LOADS; topologies: $TOPOLOGIES; ${DURATION}s per run, $ROUNDS rounds; $(nproc) cores"
for topo in $TOPOLOGIES; do
	case $topo in
	loopback) bench loopback "$OUT/results.tsv" ;;
	netns)
		netns_up
		bench netns "$OUT/results-netns.tsv"
		;;
	*) log "unknown topology $topo" ;;
	esac
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
for topo in $TOPOLOGIES; do
	case $topo in loopback) results=$OUT/results.tsv ;; netns) results=$OUT/results-netns.tsv ;; *) continue ;; esac
	echo
	echo "bench-relay, $topo: $(nproc) cores ($cpu), ${DURATION}s per run, $ROUNDS rounds, median shown"
	"$work/benchtable" <"$results"
done

# The RFC 6062 TCP relay rows: bytes, not packets, so a table of their own (TCP_RELAY=0
# skips them).
if [[ ${TCP_RELAY:-1} != 0 ]]; then
	./scripts/bench-tcp-relay.sh
fi

#!/usr/bin/env bash
# bench-tcp-relay.sh — the RFC 6062 TCP relay rows of `make bench-relay` (which calls it;
# it also runs alone): bulk TCP flows through TCP allocations (bench/tcprelayload: pion's
# client, Connect + ConnectionBind, a sink on loopback), against avedge and coturn's
# turnserver (if installed), alternating servers within each round, each server started
# fresh per run. Prints bytes relayed per CPU-second of the server process (median of the
# rounds), the throughput, and avedge/coturn. The plain pion server of bench-relay.sh has
# no TCP listener and is left out.
#
# Environment: DURATION (seconds per run, default 5), ROUNDS (default 2), FLOWS
# (space-separated flow counts, default "1 100"), SERVERS (subset of: avedge coturn).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
DURATION=${DURATION%s}
ROUNDS=${ROUNDS:-2}
FLOWS=${FLOWS:-1 100}
SECRET=${SECRET:-bench-tcp-relay-secret}
REALM=avedge.bench

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
raise_nofile

log "building into $work"
go build -o "$work/tcprelayload" ./bench/tcprelayload
build_servers
servers=()
for s in ${SERVERS:-avedge coturn}; do
	if [[ " ${all_servers[*]} " == *" $s "* && $s != pion ]]; then servers+=("$s"); fi
done

port_of() { case $1 in avedge) echo 34790 ;; coturn) echo 34792 ;; esac; }
range_of() { case $1 in avedge) echo "40000 44999" ;; coturn) echo "50000 54999" ;; esac; }

start_server() {
	local name=$1 port min max
	port=$(port_of "$name")
	read -r min max < <(range_of "$name")
	case $name in
	avedge)
		"$work/avedge" --listening-ip 127.0.0.1 --listening-port "$port" --min-port "$min" --max-port "$max" \
			--static-auth-secret "$SECRET" --realm "$REALM" --relay-ip 127.0.0.1 --allow-loopback-peers \
			--user-quota -1 --max-bps -1 --metrics-listen "" --auth-listen "" \
			--data-path io_uring \
			>"$work/avedge.log" 2>&1 &
		;;
	coturn)
		turnserver -n --allow-loopback-peers --no-cli --no-tls --no-dtls --use-auth-secret \
			--static-auth-secret "$SECRET" --realm "$REALM" -L 127.0.0.1 --relay-ip 127.0.0.1 \
			--listening-port "$port" --min-port "$min" --max-port "$max" \
			--pidfile "$work/coturn.pid" --no-stdout-log --simple-log --log-file "$work/coturn.log" \
			>/dev/null 2>&1 &
		;;
	esac
	await_server "$name" "$port"
}

results="$work/tcp-results.tsv"
: >"$results"
log "TCP relay: servers ${servers[*]}; flows $FLOWS; ${DURATION}s per run, $ROUNDS rounds; $(nproc) cores"
for flows in $FLOWS; do
	for round in $(seq "$ROUNDS"); do
		for srv in "${servers[@]}"; do
			log "tcp $flows flows round $round: $srv"
			if ! start_server "$srv"; then
				stop_server
				continue
			fi
			if json=$(timeout 300 "$work/tcprelayload" --server "127.0.0.1:$(port_of "$srv")" --secret "$SECRET" \
				--realm "$REALM" --flows "$flows" --duration "${DURATION}s" --server-pid "$server_pid"); then
				# {"flows":..,"bytes_per_cpu_second":..,"mbit_per_second":..}
				bpc=$(sed -n 's/.*"bytes_per_cpu_second":\([0-9.e+]*\).*/\1/p' <<<"$json")
				mbit=$(sed -n 's/.*"mbit_per_second":\([0-9.e+]*\).*/\1/p' <<<"$json")
				printf '%s\t%s\t%s\t%s\n' "$flows" "$srv" "$bpc" "$mbit" >>"$results"
			else
				log "tcp $flows flows round $round: $srv failed"
			fi
			stop_server
		done
	done
done

# median VALUES...: the middle value (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

echo
echo "bench-tcp-relay: $(nproc) cores, ${DURATION}s per run, $ROUNDS rounds, median shown; MB = 10^6 bytes"
echo "| TCP relay load | avedge MB/CPU-s | coturn MB/CPU-s | avedge/coturn | Mbit/s avedge / coturn |"
echo "| --- | ---: | ---: | ---: | --- |"
for flows in $FLOWS; do
	declare -A bpc=() mbit=()
	for srv in avedge coturn; do
		mapfile -t b < <(awk -F'\t' -v f="$flows" -v s="$srv" '$1==f && $2==s {print $3}' "$results")
		mapfile -t m < <(awk -F'\t' -v f="$flows" -v s="$srv" '$1==f && $2==s {print $4}' "$results")
		bpc[$srv]=$(median "${b[@]}")
		mbit[$srv]=$(median "${m[@]}")
	done
	awk -v f="$flows" -v a="${bpc[avedge]}" -v c="${bpc[coturn]}" -v ma="${mbit[avedge]}" -v mc="${mbit[coturn]}" 'BEGIN {
		r = (c > 0) ? sprintf("%.1f×", a / c) : "—"
		printf "| %d bulk TCP flow%s | %.0f | %.0f | %s | %.0f / %.0f |\n", f, (f == 1 ? "" : "s"), a / 1e6, c / 1e6, r, ma, mc
	}'
done

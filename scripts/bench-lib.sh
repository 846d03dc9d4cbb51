# bench-lib.sh — what the benchmark scripts (bench-relay.sh, bench-control.sh,
# bench-flood.sh) share: a work directory removed on exit with the server under test,
# logging to stderr, the descriptor limit raised to the hard one, and starting/stopping one
# server at a time. Sourced, not run.

work=$(mktemp -d)
server_pid=""
exit_hooks=() # commands cleanup runs, last registered first, once the server is stopped
cleanup() {
	if [[ -n $server_pid ]]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	local i
	for ((i = ${#exit_hooks[@]} - 1; i >= 0; i--)); do
		eval "${exit_hooks[i]}" || true
	done
	rm -rf "$work"
}

# at_exit CMD...: run CMD (a command line, eval'd) on exit, after the server is stopped.
at_exit() { exit_hooks+=("$*"); }
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }

# raise_nofile raises the soft open-file limit to the hard one (servers and clients hold a
# socket per allocation).
raise_nofile() {
	local hard
	hard=$(ulimit -Hn)
	if [[ $hard != unlimited ]]; then ulimit -n "$hard"; fi
}

# await_server NAME PORT [NETNS]: the server just started in the background ($!, kept as
# server_pid) is ready once its UDP port is bound (in network namespace NETNS if given);
# bounded at 5 s, and over at once if it exits.
await_server() {
	local name=$1 port=$2 ns=()
	if [[ -n ${3:-} ]]; then ns=(ip netns exec "$3"); fi
	server_pid=$!
	for _ in $(seq 50); do
		if "${ns[@]}" ss -Hlun "sport = :$port" 2>/dev/null | grep -q .; then return 0; fi
		if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	log "$name did not come up on port $port"
	return 1
}

# build_servers builds avedge and the plain pion server (bench/pionturn) into $work and sets
# all_servers to those that can run: avedge if it builds, pion, coturn if turnserver is
# installed; what is left out is said.
#
# bench/pionturn is a module of its own (bench/pionturn/go.mod) so that it is built against
# pion/turn as released, not against the patched copy in third_party/pion-turn that the main
# module's go.mod replaces it with: the baseline stays upstream pion. Its go.mod pins the same
# versions as the main module's, so it builds from the module cache the main build filled.
build_servers() {
	(cd bench/pionturn && go build -o "$work/pionturn" .)
	all_servers=()
	if go build -o "$work/avedge" ./cmd/avedge 2>"$work/avedge-build.log"; then
		all_servers+=(avedge)
	else
		log "cmd/avedge does not build; benchmarking without it:"
		sed 's/^/  /' "$work/avedge-build.log" | head -5 >&2
	fi
	all_servers+=(pion)
	if command -v turnserver >/dev/null 2>&1; then
		all_servers+=(coturn)
	else
		log "turnserver not installed; benchmarking without coturn"
	fi
}

stop_server() {
	kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}

# nats-server.sh -- start and stop a throwaway NATS server with JetStream.
# Sourced by scripts/test and scripts/bench (and the NATS tests, for a
# restart mid-run):
#   nats_start     nats-server -js with file storage in a temp dir, on a free
#                  port of 127.0.0.1; exports PGEVENTD_TEST_NATS=nats://127.0.0.1:PORT
#   nats_stop      stop it and delete the directory
#   nats_pause     stop it (SIGTERM: it flushes its streams), keep the storage
#   nats_resume    start it again on the same port and storage
# NATS_EXTRA="--auth TOKEN ..." adds server options (tests of authentication).
# Needs the Debian package nats-server.

nats_bin() {
	command -v nats-server 2>/dev/null || {
		echo "nats-server.sh: no nats-server (apt-get install nats-server)" >&2
		return 1
	}
}

nats_run() { # port
	# shellcheck disable=SC2086
	"$NATS_BIN" -a 127.0.0.1 -p "$1" -js -sd "$NATS_DIR/store" -l "$NATS_DIR/server.log" \
		${NATS_EXTRA:-} >/dev/null 2>&1 &
	NATS_PID=$!
	local i
	for i in $(seq 1 100); do
		# ready once it answers on its port
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			export NATS_PID
			return 0
		fi
		kill -0 "$NATS_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

nats_start() {
	NATS_BIN=$(nats_bin) || return 1
	NATS_DIR=$(mktemp -d /tmp/pgeventd-nats.XXXXXX) || return 1
	local try port
	for try in 1 2 3 4 5 6 7 8; do
		port=$((20000 + (RANDOM % 20000)))
		if nats_run "$port"; then
			NATS_PORT=$port
			export NATS_BIN NATS_DIR NATS_PORT PGEVENTD_TEST_NATS=nats://127.0.0.1:$port
			return 0
		fi
		[ -n "${NATS_PID:-}" ] && kill "$NATS_PID" 2>/dev/null
		tail -n 3 "$NATS_DIR/server.log" >&2
	done
	echo "nats-server.sh: could not start nats-server" >&2
	return 1
}

nats_pause() {
	[ -n "${NATS_PID:-}" ] || return 0
	kill "$NATS_PID" 2>/dev/null
	local i
	for i in $(seq 1 100); do
		kill -0 "$NATS_PID" 2>/dev/null || break
		sleep 0.1
	done
	NATS_PID=
}

nats_resume() {
	nats_run "$NATS_PORT"
}

nats_stop() {
	[ -n "${NATS_DIR:-}" ] && [ -d "$NATS_DIR" ] || return 0
	nats_pause
	rm -rf "$NATS_DIR"
	NATS_DIR=
}

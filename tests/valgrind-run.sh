#!/usr/bin/env bash
# valgrind-run.sh BUILDDIR -- the daemon's normal run under valgrind:
# migrate, then `run` handling successes, retries and dead letters, the
# relay (HTTP; a NATS JetStream stream when PGEVENTD_TEST_NATS names a
# server; Kafka brokers that are down), retention passes and a SIGHUP
# reload, then SIGTERM. Fails on any leak or memory error. Needs the test cluster.
set -u
B=$1
BIN=$B/tests/pgeventd-test
export PGDATABASE=t_valgrind_$$
T=$(mktemp -d /tmp/pgeventd-valgrind.XXXXXX)
trap 'dropdb --if-exists -f "$PGDATABASE" >/dev/null 2>&1; rm -rf "$T"' EXIT
createdb "$PGDATABASE" || exit 1
printf 'packs = ["test"];\npoll_interval_ms = 50;\nmax_attempts = 2;\nbackoff = { base_ms = 20; };\nhealth = { listen = "127.0.0.1:0"; };\nrelay = { event_types = ["test.effect"]; backoff = { base_ms = 20; }; breaker = { failures = 0; }; };\nretention = { processed_after = "1h"; delivery_attempts_after = "1h"; interval = "1s"; };\n' >"$T/v.conf"
VG=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible
	--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 --track-fds=no)
"${VG[@]}" "$BIN" -c "$T/v.conf" migrate >"$T/migrate.log" 2>&1 || { cat "$T/migrate.log"; exit 1; }
psql -X -q -c "INSERT INTO events (event_type, payload) SELECT 'test.effect', '{}' FROM generate_series(1, 200);
  INSERT INTO events (event_type, payload) VALUES ('test.fail', '{}'), ('nope.x', '{}'), ('pgeventd.probe', '[1]'), ('test.sql_error', '{}');
  INSERT INTO subscriptions (name, url, secret, event_types, max_attempts)
    VALUES ('closed-port', 'http://127.0.0.1:9/x', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '[\"*\"]', 2);
  INSERT INTO subscriptions (name, url, secret, event_types, max_attempts, timeout_ms)
    VALUES ('kafka-down', 'kafka://127.0.0.1:9/t', 'x', '[\"*\"]', 2, 500)" || exit 1
want_nats=0
if [ -n "${PGEVENTD_TEST_NATS:-}" ]; then
	"$B/tests/nats_stream" "$PGEVENTD_TEST_NATS" create "VG$$" "vg$$.>" || exit 1
	psql -X -q -c "INSERT INTO subscriptions (name, url, secret, event_types, ordered)
	  VALUES ('nats', '$PGEVENTD_TEST_NATS/vg$$.{event_type}', 'x', '[\"*\"]', true)" || exit 1
	want_nats=200
fi
"${VG[@]}" "$BIN" -c "$T/v.conf" run >"$T/run.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
	left=$(psql -X -A -t -c "SELECT count(*) FROM events WHERE NOT processed")
	[ "$left" = 0 ] && break
	sleep 0.1
done
# Exercise the health server and the sampler under valgrind too.
port=$(sed -n 's/.*msg="health server listening".* port=\([0-9]*\).*/\1/p' "$T/run.log" | head -n 1)
if [ -z "$port" ]; then
	echo "valgrind run: no health server"
	tail -n 20 "$T/run.log"
	kill -9 $pid
	exit 1
fi
for p in /health /health/live /health/ready /metrics /nope; do
	curl -s --max-time 10 -o /dev/null "http://127.0.0.1:$port$p" || echo "curl $p failed"
done
curl -s --max-time 10 -o /dev/null -X POST "http://127.0.0.1:$port/health"
for _ in $(seq 1 300); do # the relay's attempts: connection refused, twice, then dead; NATS delivered
	[ "$(psql -X -A -t -c "SELECT count(*) FROM deliveries WHERE status NOT IN ('dead', 'delivered')")" = 0 ] && break
	sleep 0.1
done
dead=$(psql -X -A -t -c "SELECT count(*) FROM deliveries WHERE status = 'dead'")
delivered=$(psql -X -A -t -c "SELECT count(*) FROM deliveries WHERE status = 'delivered'")
[ "$dead" = 400 ] || echo "valgrind run: $dead of 400 deliveries dead, want all (relay path not exercised)"
[ "$delivered" = "$want_nats" ] || echo "valgrind run: $delivered deliveries to NATS, want $want_nats"
# A reload while every thread runs: the old configuration is freed once
# the last thread moves on to the new one.
sed -i 's/^poll_interval_ms = 50;/poll_interval_ms = 60;\nbatch_size = 10;/' "$T/v.conf"
kill -HUP $pid
sleep 6 # one more queue sample, retention passes after the reload
kill -TERM $pid
wait $pid
rc=$?
if [ $rc != 0 ] || [ "$left" != 0 ] || [ "$dead" != 400 ] || [ "$delivered" != "$want_nats" ]; then
	echo "valgrind run: exit $rc, $left events left"
	tail -n 60 "$T/run.log"
	exit 1
fi
echo "valgrind: no leaks or errors over $(grep -c 'event handled' "$T/run.log") outcomes"

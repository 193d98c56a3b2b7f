# bench-nats.sh -- `scripts/bench nats`, sourced by scripts/bench (which has
# built pgeventd as $BIN, started the honest cluster, migrated the database
# and defined sql, now_ms, median, ratio and daemon_conf).
#
# N events (default 100000) for one subscription to a NATS JetStream stream
# (file storage, on a local nats-server -js) are drained by `pgeventd run
# --once` with the relay on (C publishes in flight, default 256): end to
# end, the workers queue the deliveries, the relay publishes them and waits
# for each PubAck. The baseline, in the same round against the same server:
# tests/nats_stream publishing N envelopes of the same shape with
# Nats-Msg-Id and ce-* headers, asynchronously with acks (js_PublishMsgAsync,
# then js_PublishAsyncComplete). Each round uses a fresh stream; the stream
# must hold N messages after each run. Goal: pgeventd >= 0.5 x baseline.
#
# Then once, for regressions only (a mock says nothing about a real
# broker): the same N events end to end into librdkafka's mock cluster
# (tests/kafka_mock, 3 brokers, 4 partitions), read back by its consumer.

make -C _build/release -s tests/nats_stream tests/kafka_mock >/dev/null
NS=$top/_build/release/tests/nats_stream
KM=$top/_build/release/tests/kafka_mock
. scripts/nats-server.sh
trap 'nats_stop; cleanup' EXIT
nats_start
URL=$PGEVENTD_TEST_NATS

daemon_conf "$work/relay.conf" "" \
	"relay = { event_types = [\"bench.*\"]; concurrency = $concurrency; };"
# One subscription, allowed every slot (max_in_flight defaults to 16 per
# subscription; the baseline has C publishes in flight).
sql "INSERT INTO subscriptions (name, url, secret, event_types, max_in_flight)
     VALUES ('bench', '$URL/x', 'x', '[\"*\"]', $concurrency)"

fill_events() {
	sql "TRUNCATE events, event_dead_letters, deliveries, delivery_attempts"
	sql "INSERT INTO events (event_type, payload)
	     SELECT 'bench.created', jsonb_build_object('n', g, 'order', 'A-' || g, 'total_cents', 4200)
	     FROM generate_series(1, $deliveries) g"
	sql "VACUUM ANALYZE events"
	sql "CHECKPOINT"
}

# Time one `run --once` into the subscription's current url; prints deliveries per second.
drain_once() {
	local t0 t1 got
	t0=$(now_ms)
	/usr/bin/time -f '%M' -o "$work/rss" "$BIN" -c "$work/relay.conf" run --once \
		>"$work/daemon.log" 2>&1 || {
		tail -n 20 "$work/daemon.log" >&2
		exit 1
	}
	t1=$(now_ms)
	got=$(sql "SELECT count(*) FROM deliveries WHERE status = 'delivered'")
	if [ "$got" != "$deliveries" ]; then
		echo "bench: $got of $deliveries delivered" >&2
		grep -v 'level=info' "$work/daemon.log" | tail -n 20 >&2
		exit 1
	fi
	echo $((deliveries * 1000 / (t1 - t0)))
}

echo "== nats: $deliveries events, $concurrency in flight, $rounds rounds (nats-server -js on $URL, file storage)"
bases=() runs=() rss=()
for r in $(seq 1 "$rounds"); do
	"$NS" "$URL" create "BASE$r" "base.$r.>" && "$NS" "$URL" create "RUN$r" "run.$r.>" || exit 1
	secs=$("$NS" "$URL" publish "base.$r.bench.created" "$deliveries") || exit 1
	b=$(awk -v n="$deliveries" -v s="$secs" 'BEGIN { printf "%d", n / s }')
	fill_events
	sql "UPDATE subscriptions SET url = '$URL/run.$r.{event_type}'"
	d=$(drain_once)
	rss+=("$(tail -n 1 "$work/rss")")
	stored=$("$NS" "$URL" wait "RUN$r" "$deliveries" 10) || {
		echo "bench: the stream holds $stored of $deliveries" >&2
		exit 1
	}
	bases+=("$b")
	runs+=("$d")
	printf 'round %d: libnats async publish %6d msg/s   pgeventd end to end %6d/s (%s)\n' "$r" "$b" \
		"$d" "$(ratio "$d" "$b")"
done
bm=$(median "${bases[@]}")
dm=$(median "${runs[@]}")

echo "== kafka (librdkafka mock cluster, 3 brokers, 4 partitions): $deliveries events, one run"
"$KM" "$work/bootstrap" bench 4 "$deliveries" 600 >/dev/null 2>"$work/kafka_mock.log" &
kpid=$!
bg_pids+=("$kpid")
for i in $(seq 1 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
fill_events
sql "UPDATE subscriptions SET url = 'kafka://$(cat "$work/bootstrap")/bench'"
k=$(drain_once)
wait "$kpid" || {
	echo "bench: the mock's consumer did not read $deliveries messages" >&2
	cat "$work/kafka_mock.log" >&2
	exit 1
}
reaped "$kpid"

echo
printf '%-48s %s msg/s (median)\n' "libnats async publish with acks (baseline):" "$bm"
printf '%-48s %s deliveries/s (median), ratio %s\n' "pgeventd end to end to JetStream ($concurrency in flight):" \
	"$dm" "$(ratio "$dm" "$bm")"
printf '%-48s %s KiB (median)\n' "pgeventd peak RSS (NATS):" "$(median "${rss[@]}")"
printf '%-48s %s deliveries/s (one run; for regressions only)\n' "pgeventd end to end to the Kafka mock:" "$k"

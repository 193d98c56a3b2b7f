# bench-latency.sh -- `scripts/bench latency`, sourced by scripts/bench
# (which has built tests/pgeventd-test as $BIN, started the honest cluster
# with track_commit_timestamp on, migrated the database with the test pack
# and defined sql, daemon_conf, start_daemon and stop_daemon).
#
# Idle latency, from the producer's COMMIT to the start of the handler.
# One psql session INSERTs N events (default 500) of type test.stamp, each
# in its own transaction, 20 ms apart so that the daemon is idle each time;
# the payload carries the inserting transaction's id. test.stamp's first act
# is to store the time it started (read in C, as it starts) in test_stamps, so
#     latency = stamp - pg_xact_commit_timestamp(the producer's xid)
# both read from the server's clock. The commit timestamp is taken as the
# commit record is written, so the figure includes the producer's WAL
# flush: the event cannot be claimed before it. Two arms: `pgeventd run`
# at its default configuration (listen on: woken by NOTIFY), and with
# listen = false (polling every poll_interval_ms, default 1000). Each
# round runs both, alternating which goes first; p50/p95/p99 per round and
# over all rounds. There is no SQL floor here: nothing in the toolset
# waits on NOTIFY but the daemon itself, so the figures are milliseconds.

daemon_conf "$work/poll.conf" "" 'packs = ["test"];' 'listen = false;'

# The producer's script for one arm and round.
latency_script() { # arm round
	local i
	for i in $(seq 1 "$events"); do
		echo "INSERT INTO events (event_type, payload) VALUES ('test.stamp',
		      jsonb_build_object('xid', txid_current(), 'arm', '$1', 'round', $2));"
		echo "SELECT pg_sleep(0.02);"
	done >"$work/latency.sql"
}

# count p50 p95 p99 max (ms) over the events matching a condition on e.
latency_figures() { # where
	sql "SELECT count(*) || ' ' || to_char(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 'FM99990.00')
	            || ' ' || to_char(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), 'FM99990.00')
	            || ' ' || to_char(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 'FM99990.00')
	            || ' ' || to_char(max(ms), 'FM99990.00')
	     FROM (SELECT extract(epoch FROM min(s.started_at) - pg_xact_commit_timestamp(
	                    ((e.payload->>'xid')::bigint % 4294967296)::text::xid)) * 1000 AS ms
	             FROM events e JOIN test_stamps s ON s.event_id = e.id
	            WHERE $1 GROUP BY e.id, e.payload) l"
}

latency_arm() { # arm round
	local conf=$work/bench.conf i
	[ "$1" = poll ] && conf=$work/poll.conf
	latency_script "$1" "$2"
	sql "CHECKPOINT"
	start_daemon "$conf" "$work/daemon.log"
	sleep 0.5
	psql -X -q -v ON_ERROR_STOP=1 -f "$work/latency.sql" >/dev/null
	for i in $(seq 1 300); do
		[ "$(sql "SELECT count(DISTINCT s.event_id) FROM test_stamps s JOIN events e ON e.id = s.event_id
		          WHERE e.payload->>'arm' = '$1' AND e.payload->>'round' = '$2'")" = "$events" ] && break
		sleep 0.1
	done
	stop_daemon
	set -- $(latency_figures "e.payload->>'arm' = '$1' AND e.payload->>'round' = '$2'")
	[ "$1" = "$events" ] || {
		echo "bench: only $1 of $events events were handled" >&2
		exit 1
	}
	printf '   p50 %7s ms  p95 %7s ms  p99 %7s ms  max %7s ms' "$2" "$3" "$4" "$5"
}

echo "== latency: $events single INSERTs 20 ms apart per arm, commit to handler start, $rounds rounds"
for r in $(seq 1 "$rounds"); do
	order="listen poll"
	[ $((r % 2)) = 0 ] && order="poll listen"
	for arm in $order; do
		printf 'round %d: %-6s' "$r" "$arm"
		latency_arm "$arm" "$r"
		echo
	done
done
echo
for arm in listen poll; do
	set -- $(latency_figures "e.payload->>'arm' = '$arm'")
	label="listen on (NOTIFY), $1 events:"
	[ "$arm" = poll ] && label="listen = false (poll every 1 s), $1 events:"
	printf '%-48s p50 %s ms  p95 %s ms  p99 %s ms  max %s ms\n' "$label" "$2" "$3" "$4" "$5"
done

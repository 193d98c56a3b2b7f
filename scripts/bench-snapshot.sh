# bench-snapshot.sh -- `scripts/bench snapshot`, sourced by scripts/bench
# (which has built pgeventd as $BIN, started the honest cluster, migrated
# the database and defined sql, daemon_conf, start_daemon, stop_daemon,
# pgbench_tps and CLAIM_WHERE).
#
# Does the queue keep up while a long snapshot holds vacuum back? pgbench
# inserts Q events/s (default 2000; C clients, default 32, one row per
# transaction) for T seconds (default 120) while `pgeventd run` (default
# configuration, health server on a free loopback port) drains them. Two
# arms, one after the other, each on a freshly truncated table:
#   (1) no other session;
#   (2) a session holds a REPEATABLE READ snapshot, taken before the first
#       insert, for the whole run (a long report or pg_dump does this), so
#       no row version deleted or updated since can be vacuumed away.
# Every 10 s: elapsed, events inserted, backlog (unprocessed and due),
# the age of the oldest unprocessed event, n_dead_tup of events, and from
# /metrics the batches committed in the interval, their mean duration
# (pgeventd_batch_duration_seconds: claim to commit) and mean size.
# Goal: the backlog stays below 2 s of inflow (2 x Q events) in both arms.

daemon_conf "$work/snapshot.conf" "127.0.0.1:0"
cat >"$work/insert.sql" <<'EOF'
\set n random(1, 1000000000)
INSERT INTO events (event_type, aggregate_type, aggregate_id, payload)
VALUES ('pgeventd.noop', 'order', gen_random_uuid(),
        jsonb_build_object('order', 'A-' || :n, 'total_cents', 4200, 'currency', 'EUR'));
EOF
goal=$((2 * rate))

# Sum and count of a histogram on /metrics, "sum count", or "0 0".
metric_sum_count() { # port name
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '
		$1 == m "_sum" { s = $2 } $1 == m "_count" { c = $2 }
		END { printf "%s %s\n", s == "" ? 0 : s, c == "" ? 0 : c }'
}

# One sample line; keeps the maxima in max_backlog, max_dead, max_batch_ms
# and the last /metrics readings in prev_*.
snapshot_sample() { # port t0 [label]
	local inserted backlog oldest dead bsum bcount ssum scount batches=0 ms=- size=-
	IFS='|' read -r inserted backlog oldest dead < <(sql "
		SELECT (SELECT count(*) FROM events),
		       (SELECT count(*) FROM events WHERE $CLAIM_WHERE),
		       (SELECT to_char(coalesce(extract(epoch FROM now() - min(created_at)), 0), 'FM99990.0')
		          FROM events WHERE NOT processed),
		       (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'events')")
	read -r bsum bcount < <(metric_sum_count "$1" pgeventd_batch_duration_seconds)
	read -r ssum scount < <(metric_sum_count "$1" pgeventd_batch_size)
	batches=$(awk -v a="$bcount" -v b="$prev_bcount" 'BEGIN { printf "%d", a - b }')
	if [ "$batches" -gt 0 ]; then
		ms=$(awk -v s="$bsum" -v ps="$prev_bsum" -v n="$batches" 'BEGIN { printf "%.1f", (s - ps) * 1000 / n }')
		size=$(awk -v s="$ssum" -v ps="$prev_ssum" -v n="$scount" -v pn="$prev_scount" \
			'BEGIN { printf "%.0f", (n > pn ? (s - ps) / (n - pn) : 0) }')
		max_batch_ms=$(awk -v a="$ms" -v b="$max_batch_ms" 'BEGIN { print (a > b ? a : b) }')
	fi
	prev_bsum=$bsum prev_bcount=$bcount prev_ssum=$ssum prev_scount=$scount
	[ "$backlog" -gt "$max_backlog" ] && max_backlog=$backlog
	[ "$dead" -gt "$max_dead" ] && max_dead=$dead
	printf '%8s %9d %8d %9s %9d %8d %9s %6s\n' "${3:-$((($(now_ms) - $2) / 1000))s}" "$inserted" \
		"$backlog" "$oldest" "$dead" "$batches" "$ms" "$size"
}

snapshot_arm() { # 1|2
	local port t0 k holder='' pgb tps
	sql "TRUNCATE events, event_dead_letters"
	sql "VACUUM ANALYZE events"
	sql "CHECKPOINT"
	start_daemon "$work/snapshot.conf" "$work/daemon.log"
	port=$(sed -n 's/.*msg="health server listening".* port=\([0-9]*\).*/\1/p' "$work/daemon.log")
	[ -n "$port" ] || {
		echo "bench: no health server port in the daemon's log" >&2
		exit 1
	}
	if [ "$1" = 2 ]; then
		PGAPPNAME=bench-snapshot psql -X -q -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<EOF &
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM events;
SELECT pg_sleep($((seconds + 600)));
COMMIT;
EOF
		holder=$!
		bg_pids+=("$holder")
		for k in $(seq 1 100); do
			[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench-snapshot'
			          AND backend_xmin IS NOT NULL AND query LIKE '%pg_sleep%'")" = 1 ] && break
			sleep 0.1
		done
	fi
	prev_bsum=0 prev_bcount=0 prev_ssum=0 prev_scount=0
	read -r prev_bsum prev_bcount < <(metric_sum_count "$port" pgeventd_batch_duration_seconds)
	read -r prev_ssum prev_scount < <(metric_sum_count "$port" pgeventd_batch_size)
	max_backlog=0 max_dead=0 max_batch_ms=0
	printf '%8s %9s %8s %9s %9s %8s %9s %6s\n' elapsed inserted backlog oldest_s dead_tup \
		batches batch_ms size
	t0=$(now_ms)
	pgbench -n -R "$rate" -T "$seconds" -c "$clients" -j 2 -f "$work/insert.sql" \
		>"$work/pgbench.out" 2>&1 &
	pgb=$!
	bg_pids+=("$pgb")
	k=1
	while kill -0 "$pgb" 2>/dev/null; do
		sleep 0.2
		if [ "$(now_ms)" -ge $((t0 + k * 10000)) ]; then
			snapshot_sample "$port" "$t0"
			k=$((k + 1))
		fi
	done
	wait "$pgb" || {
		cat "$work/pgbench.out" >&2
		exit 1
	}
	reaped "$pgb"
	snapshot_sample "$port" "$t0" "$((($(now_ms) - t0) / 1000))s end"
	tps=$(pgbench_tps "$work/pgbench.out")
	held=''
	if [ -n "$holder" ]; then
		held=$(sql "SELECT '   snapshot xmin age ' || age(backend_xmin) FROM pg_stat_activity
		            WHERE application_name = 'bench-snapshot' AND backend_xmin IS NOT NULL")
		[ -n "$held" ] || {
			echo "bench: the snapshot was not held to the end" >&2
			exit 1
		}
		sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		     WHERE application_name = 'bench-snapshot'" >/dev/null
		wait "$holder" || true
		reaped "$holder"
	fi
	stop_daemon
	summary[$1]=$(printf 'producer %5d/s   max backlog %7d (%s s of inflow)   %s\n%31s max dead tuples %8d   max batch time %s ms (10 s mean)%s' \
		"$tps" "$max_backlog" "$(awk -v b="$max_backlog" -v q="$tps" 'BEGIN { printf "%.2f", (q > 0 ? b / q : 0) }')" \
		"$([ "$max_backlog" -lt "$goal" ] && echo "below $goal: yes" || echo "below $goal: NO")" \
		"" "$max_dead" "$max_batch_ms" "$held")
	[ "$tps" -ge $((rate * 95 / 100)) ] || short="$short ($1)"
}

declare -A summary
short=''
echo "== snapshot: producer at $rate events/s ($clients clients) for $seconds s while pgeventd drains" \
	"($(tr '\n' ' ' <"$work/snapshot.conf"))"
echo
echo "-- arm 1: no other session"
snapshot_arm 1
echo
echo "-- arm 2: a REPEATABLE READ snapshot held open the whole time"
snapshot_arm 2
echo
printf '%-30s %s\n' "(1) no other session:" "${summary[1]}"
printf '%-30s %s\n' "(2) snapshot held open:" "${summary[2]}"
echo "goal: the backlog stays below 2 s of inflow ($goal events at $rate/s) in both arms"
if [ -n "$short" ]; then
	echo "note: the producer fell short of $rate/s in arm(s)$short (its own ceiling on this" \
		"machine): the queue was tested at a lower inflow than asked"
fi

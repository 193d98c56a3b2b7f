# bench-producers.sh -- `scripts/bench producers`, sourced by scripts/bench
# (which has built pgeventd as $BIN, started the honest cluster, migrated
# the database and defined sql, median, ratio, daemon_conf, start_daemon,
# stop_daemon and pgbench_tps).
#
# What pgeventd's schema costs the producers. C clients (default 32, pgbench
# -j 2) each INSERT one event per transaction, the way an application
# would (event_type, aggregate_type/id, a small jsonb payload), for T
# seconds (default 15), into:
#   (a) events, as `pgeventd migrate` made it (its NOTIFY trigger included);
#   (b) events_plain: CREATE TABLE ... (LIKE events INCLUDING ALL), the same
#       columns, defaults and indexes and no trigger (checked below);
#   (c) events while `pgeventd run` (default configuration, listen on,
#       started idle) drains what the producers insert.
# Every round starts each arm on empty tables after a CHECKPOINT; rounds
# run a, b, c then c, b, a so no arm always goes first. Ratios a/b and c/b
# per round and of the medians; goal >= 0.9.

sql "CREATE TABLE events_plain (LIKE events INCLUDING ALL)"
triggers=$(sql "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events_plain'::regclass")
indexes=$(sql "SELECT (SELECT count(*) FROM pg_index WHERE indrelid = 'events'::regclass)
                   - (SELECT count(*) FROM pg_index WHERE indrelid = 'events_plain'::regclass)")
if [ "$triggers" != 0 ] || [ "$indexes" != 0 ]; then
	echo "bench: events_plain has $triggers triggers and $indexes indexes fewer than events" >&2
	exit 1
fi

for t in events events_plain; do
	cat >"$work/insert-$t.sql" <<EOF
\\set n random(1, 1000000000)
INSERT INTO $t (event_type, aggregate_type, aggregate_id, payload)
VALUES ('pgeventd.noop', 'order', gen_random_uuid(),
        jsonb_build_object('order', 'A-' || :n, 'total_cents', 4200, 'currency', 'EUR'));
EOF
done

# One arm: sets got[arm] to its inserts/s (not run in a subshell, so that
# the EXIT trap knows the daemon's pid). Arm c leaves what the daemon
# handled in $work/c.
producers_arm() { # a|b|c
	local table=events
	[ "$1" = b ] && table=events_plain
	sql "TRUNCATE events, events_plain, event_dead_letters"
	sql "CHECKPOINT"
	[ "$1" = c ] && start_daemon "$work/bench.conf" "$work/daemon.log"
	pgbench -n -c "$clients" -j 2 -T "$seconds" -f "$work/insert-$table.sql" \
		>"$work/pgbench.out" 2>&1 || {
		cat "$work/pgbench.out" >&2
		exit 1
	}
	got[$1]=$(pgbench_tps "$work/pgbench.out")
	if [ "$1" = c ]; then
		sql "SELECT count(*) FILTER (WHERE processed) || ' of ' || count(*) FROM events" >"$work/c"
		stop_daemon
	fi
}

echo "== producers: $clients clients x ${seconds} s of single-row INSERTs per arm, $rounds rounds"
declare -A got
as=() bs=() cs=()
for r in $(seq 1 "$rounds"); do
	order="a b c"
	[ $((r % 2)) = 0 ] && order="c b a"
	for arm in $order; do
		producers_arm "$arm"
	done
	as+=("${got[a]}")
	bs+=("${got[b]}")
	cs+=("${got[c]}")
	printf 'round %d: (a) events %6d/s   (b) plain %6d/s   (c) events + pgeventd %6d/s' "$r" \
		"${got[a]}" "${got[b]}" "${got[c]}"
	printf '   a/b %s   c/b %s   (pgeventd handled %s during c)\n' \
		"$(ratio "${got[a]}" "${got[b]}")" "$(ratio "${got[c]}" "${got[b]}")" "$(cat "$work/c")"
done
am=$(median "${as[@]}")
bm=$(median "${bs[@]}")
cm=$(median "${cs[@]}")
echo
printf '%-44s %s inserts/s (median)\n' "(a) into events (pgeventd's schema):" "$am"
printf '%-44s %s inserts/s (median)\n' "(b) into events_plain (no triggers):" "$bm"
printf '%-44s %s inserts/s (median)\n' "(c) into events, pgeventd draining:" "$cm"
printf '%-44s %s (goal >= 0.9)\n' "ratio a/b:" "$(ratio "$am" "$bm")"
printf '%-44s %s (goal >= 0.9)\n' "ratio c/b:" "$(ratio "$cm" "$bm")"

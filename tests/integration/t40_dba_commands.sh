#!/usr/bin/env bash
# The DBA's commands: status (figures, text, a figure that times out),
# show, dead-letters list, replay (by id, type and time, dead letters,
# dry run, already pending), their exit codes, no subscription secret in
# any output, and a replay that a running daemon handles again.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf"
P=("$BIN" -c "$T/a.conf")
SECRET=whsec_NeverPrintThisSecret0123456789abcdefXYZ
ALL=$T/all-output # every stdout and stderr of the commands, checked for the secret at the end

run() { # run ARGS...: sets OUT (stdout), ERR (stderr), RC
	"${P[@]}" "$@" >"$T/out" 2>"$T/err"
	RC=$?
	OUT=$(cat "$T/out")
	ERR=$(cat "$T/err")
	cat "$T/out" "$T/err" >>"$ALL"
}
ev() { # ev TYPE CREATED_AGO [column=value SQL...]: insert an event, print its id
	local type=$1 ago=$2 cols="" vals=""
	shift 2
	for kv in "$@"; do
		cols="$cols, ${kv%%=*}"
		vals="$vals, ${kv#*=}"
	done
	q "INSERT INTO events (event_type, payload, created_at$cols)
	   VALUES ('$type', '{\"order\": 7}', now() - interval '$ago'$vals) RETURNING id"
}
dead_letter() { # dead_letter EVENT_ID [CREATED_AT SQL]: as the worker writes one
	q "INSERT INTO event_dead_letters (event_id, event_type, payload, error_message, retry_count,
	                                   original_created_at, created_at, handler, attempts)
	   SELECT id, event_type, payload, coalesce(last_error, 'old failure'), greatest(attempts - 1, 0),
	          created_at, ${2:-processed_at}, 'test.handler', attempts FROM events WHERE id = '$1'" >/dev/null
}
state() { q "SELECT processed || '|' || attempts || '|' || (processed_at IS NULL) || '|' || coalesce(last_error, '-') FROM events WHERE id = '$1'"; }
checksum() { q "SELECT md5(string_agg(e::text, '|' ORDER BY id)) FROM events e"; }

# ---- the states a DBA meets ---------------------------------------------
# pending: P1 due, never tried (the oldest, 2 h); P2 due, retrying; P3 retrying later
P1=$(ev order.created '2 hours')
P2=$(ev order.created '90 minutes' "attempts=1" "last_error='timeout'" "next_attempt_at=now() - interval '1 minute'")
P3=$(ev job.sync '80 minutes' "attempts=2" "last_error='busy'" "next_attempt_at=now() + interval '1 hour'")
# dead-lettered (processed, last_error, a dead letter written with processed_at)
LONG="gave up after 5 attempts: $(printf 'upstream said no; %.0s' 1 2 3 4 5 6)"
D1=$(ev job.fail '3 hours' processed=true "processed_at=now() - interval '30 minutes'" attempts=5 "last_error='$LONG'")
D2=$(ev job.fail '150 minutes' processed=true "processed_at=now() - interval '10 minutes'" attempts=5 "last_error='gave up after 5 attempts: d2'")
D3=$(ev order.created '50 minutes' processed=true "processed_at=now() - interval '5 minutes'" attempts=1 "last_error='no handler registered'")
dead_letter "$D1"
dead_letter "$D2"
dead_letter "$D3"
# H: dead-lettered two days ago, replayed and handled fine yesterday
H=$(ev job.fail '3 days' processed=true "processed_at=now() - interval '1 day'" attempts=1)
dead_letter "$H" "now() - interval '2 days'"
# handled fine
OK1=$(ev order.created '1 day' processed=true "processed_at=now() - interval '20 minutes'" attempts=1)
OK2=$(ev order.created '30 minutes' processed=true "processed_at=now() - interval '25 minutes'" attempts=1)
OK3=$(ev job.sync '3 hours' processed=true "processed_at=now() - interval '3 hours'" attempts=1)
# deliveries in every status, to two subscriptions that share a secret
q "INSERT INTO subscriptions (name, url, secret) VALUES
   ('billing', 'http://127.0.0.1:1/b', '$SECRET'), ('audit', 'http://127.0.0.1:1/a', '$SECRET')" >/dev/null
delivery() { # delivery EVENT SUBSCRIPTION STATUS ATTEMPT [HTTP] [ERROR]: prints its id
	q "INSERT INTO deliveries (event_id, subscription_id, event_type, body, status, attempt,
	                           last_status, last_error, finished_at, locked_until)
	   SELECT e.id, s.id, e.event_type, '{}', '$3', $4, ${5:-NULL}, ${6:-NULL},
	          CASE WHEN '$3' IN ('delivered', 'failed', 'dead') THEN now() END,
	          CASE WHEN '$3' = 'in_flight' THEN now() + interval '1 minute' END
	   FROM events e, subscriptions s WHERE e.id = '$1' AND s.name = '$2' RETURNING id"
}
attempt_log() { # attempt_log DELIVERY N HTTP
	q "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, applied)
	   VALUES ('$1', $2, now(), 12.5, $3, true)" >/dev/null
}
DEAD_D=$(delivery "$D1" billing dead 5 500 "'gave up after 5 attempts: HTTP 500'")
attempt_log "$DEAD_D" 4 500
attempt_log "$DEAD_D" 5 500
OKD=$(delivery "$D1" audit delivered 1 200)
attempt_log "$OKD" 1 200
delivery "$OK1" billing failed 1 400 "'HTTP 400'" >/dev/null
delivery "$OK2" billing pending 0 >/dev/null
delivery "$OK3" billing in_flight 1 >/dev/null

# ---- status ---------------------------------------------------------------
run status --json
assert_eq "$RC" 0 "status --json: exit 0"
J=$OUT
assert_eq "$(jget "$J" 'events,pending')" 3 "status: 3 pending"
assert_eq "$(jget "$J" 'events,due_now')" 2 "status: 2 of them due now"
assert_eq "$(jget "$J" 'events,scheduled_later')" 1 "status: 1 scheduled later"
assert_eq "$(jget "$J" 'events,retrying')" 2 "status: 2 retrying (unprocessed, attempts > 0)"
age=$(jget "$J" 'events,oldest_pending_age_s')
assert_eq "$([ "${age:-0}" -ge 7200 ] && [ "$age" -lt 7260 ] && echo yes)" yes "status: oldest pending is 2 h old (got $age s)"
assert_eq "$(q "SELECT '$(jget "$J" 'events,oldest_pending_created_at')'::timestamptz = created_at FROM events WHERE id = '$P1'")" t "status: the oldest pending is P1"
assert_eq "$(jget "$J" 'events,processed_last_hour')" 5 "status: 5 processed in the last hour"
assert_eq "$(jget "$J" 'dead_letters,total')" 4 "status: 4 dead letters"
assert_eq "$(jget "$J" 'dead_letters,by_type,0,event_type')|$(jget "$J" 'dead_letters,by_type,0,count')" "job.fail|3" "status: job.fail has the most dead letters"
assert_eq "$(jget "$J" 'dead_letters,by_type,1,event_type')|$(jget "$J" 'dead_letters,by_type,1,count')" "order.created|1" "status: then order.created"
assert_eq "$(q "SELECT '$(jget "$J" 'dead_letters,by_type,0,latest')'::timestamptz = created_at FROM event_dead_letters WHERE event_id = '$D2'")" t "status: latest job.fail dead letter is D2's"
for s in pending in_flight delivered failed dead; do
	assert_eq "$(jget "$J" "deliveries,$s")" 1 "status: 1 delivery $s"
done
assert_eq "$(jget "$J" 'timed_out')" "[]" "status: nothing timed out"

run status
assert_eq "$RC" 0 "status: exit 0"
assert_match "$OUT" '^  pending +3 \(2 due now, 1 scheduled later\)$' "status text: pending line"
assert_match "$OUT" '^  oldest pending +2h 00m [0-9]{2}s \(created [0-9-]{10} [0-9:]{8}\)$' "status text: oldest pending age"
assert_match "$OUT" '^  retrying +2$' "status text: retrying line"
assert_match "$OUT" '^  processed, last hour +5$' "status text: processed in the last hour"
assert_match "$OUT" '^dead letters +4$' "status text: dead letters total"
assert_match "$OUT" '^  job\.fail +3 \(latest [0-9-]{10} [0-9:]{8}\)$' "status text: dead letters by type"
assert_match "$OUT" '^  in_flight +1$' "status text: deliveries by status"
run status extra
assert_eq "$RC" 64 "status with an operand: exit 64"
run status --frobnicate
assert_eq "$RC" 64 "status with an unknown option: exit 64"
assert_match "$ERR" 'unknown option --frobnicate' "status names the unknown option"

# A figure that cannot be had in time is shown as unknown; the rest still shows.
PGAPPNAME=t40-locker psql -X -q -c "BEGIN; LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);" >/dev/null 2>&1 &
PIDS="$PIDS $!"
wait_for "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 't40-locker' AND l.granted AND l.relation = 'deliveries'::regclass" 1 10 || fail "lock not taken"
t0=$(date +%s)
run status --json
t1=$(date +%s)
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 't40-locker'" >/dev/null
assert_eq "$RC" 0 "status with deliveries locked: exit 0"
assert_eq "$(jget "$OUT" 'deliveries')" "" "status: deliveries unknown (null) while locked"
assert_eq "$(jget "$OUT" 'timed_out,0')" "deliveries" "status: names what timed out"
assert_eq "$(jget "$OUT" 'events,pending')" 3 "status: the other figures still show"
assert_eq "$([ $((t1 - t0)) -le 12 ] && echo yes)" yes "status does not hang on a lock ($((t1 - t0)) s)"

# ---- show -----------------------------------------------------------------
run show "$D1"
assert_eq "$RC" 0 "show: exit 0"
assert_match "$OUT" "^event $D1\$" "show: the event's id"
assert_match "$OUT" '^  event_type +job\.fail$' "show: event_type"
assert_match "$OUT" '^  attempts +5$' "show: attempts"
assert_match "$OUT" '^  processed +t$' "show: processed"
assert_match "$OUT" '^  payload +\{"order": 7\}$' "show: payload"
assert_match "$OUT" "^  last_error +$LONG\$" "show: last_error whole"
assert_match "$OUT" '^dead letters: 1$' "show: one dead letter"
assert_match "$OUT" '^deliveries: 2$' "show: two deliveries"
assert_match "$OUT" "^billing +$DEAD_D +dead +5 +500 .* 2 +gave up after 5 attempts: HTTP 500\$" "show: the dead delivery with 2 attempts logged"
assert_match "$OUT" "^audit +$OKD +delivered +1 +200 " "show: the delivered one"
run show --json "$D1"
J=$OUT
assert_eq "$RC" 0 "show --json: exit 0"
assert_eq "$(jget "$J" 'event,id')" "$D1" "show --json: event id"
assert_eq "$(jget "$J" 'event,payload,order')" 7 "show --json: payload is the document"
assert_eq "$(jget "$J" 'event,processed')|$(jget "$J" 'event,attempts')|$(jget "$J" 'event,last_error')" "true|5|$LONG" "show --json: processed, attempts, last_error"
assert_match "$(jget "$J" 'event,processed_at')" '^[0-9-]{10}T[0-9:.]+[+-][0-9]{2}:[0-9]{2}$' "show --json: timestamps in RFC 3339"
assert_eq "$(jget "$J" 'dead_letters,0,error_message')|$(jget "$J" 'dead_letters,0,handler')" "$LONG|test.handler" "show --json: the dead letter"
assert_eq "$(jget "$J" 'deliveries,0,subscription')|$(jget "$J" 'deliveries,0,status')|$(jget "$J" 'deliveries,0,attempts_logged')" "audit|delivered|1" "show --json: first delivery"
assert_eq "$(jget "$J" 'deliveries,1,subscription')|$(jget "$J" 'deliveries,1,status')|$(jget "$J" 'deliveries,1,attempts_logged')|$(jget "$J" 'deliveries,1,last_status')" "billing|dead|2|500" "show --json: second delivery"
run show "$D1" --json
assert_eq "$(jget "$OUT" 'event,id')" "$D1" "show ID --json: options after the id are options"
run show "$P3"
assert_match "$OUT" '^  next_attempt_at +[0-9-]{10} ' "show: next_attempt_at of a retrying event"
assert_match "$OUT" '^dead letters: 0$' "show: no dead letter"
run show 00000000-0000-0000-0000-000000000000
assert_eq "$RC" 66 "show of an unknown id: exit 66"
assert_match "$ERR" '^pgeventd: no event with id 00000000-0000-0000-0000-000000000000$' "show: says no such event"
run show nope
assert_eq "$RC" 64 "show of a malformed id: exit 64"
assert_match "$ERR" 'not an event id: nope' "show: says not an event id"
run show
assert_eq "$RC" 64 "show without an id: exit 64"
run show "$D1" "$D2"
assert_eq "$RC" 64 "show with two ids: exit 64"

# ---- dead-letters list ----------------------------------------------------
run dead-letters list --json
assert_eq "$RC" 0 "dead-letters list --json: exit 0"
J=$OUT
assert_eq "$(jget "$J" '0,event_id') $(jget "$J" '1,event_id') $(jget "$J" '2,event_id') $(jget "$J" '3,event_id')" "$D3 $D2 $D1 $H" "dead-letters list: newest first"
assert_eq "$(q "SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(\$j\$$J\$j\$::jsonb -> 0) k")" "attempts,created_at,error_message,event_id,event_type,handler" "dead-letters list --json: the fields"
assert_eq "$(jget "$J" '2,error_message')|$(jget "$J" '2,attempts')|$(jget "$J" '2,event_type')" "$LONG|5|job.fail" "dead-letters list --json: error whole, attempts a number"
run dead-letters list --type job.fail --json
assert_eq "$(jget "$OUT" '0,event_id') $(jget "$OUT" '2,event_id') $(jget "$OUT" '3,event_id')" "$D2 $H " "dead-letters list --type: only that type"
run dead-letters list --since "$(q "SELECT now() - interval '15 minutes'")" --json
assert_eq "$(q "SELECT jsonb_array_length(\$j\$$OUT\$j\$::jsonb)")" 2 "dead-letters list --since: the last 15 minutes"
run dead-letters list --limit 1 --json
assert_eq "$(q "SELECT jsonb_array_length(\$j\$$OUT\$j\$::jsonb)")|$(jget "$OUT" '0,event_id')" "1|$D3" "dead-letters list --limit 1: the newest"
run dead-letters list
assert_eq "$RC" 0 "dead-letters list: exit 0"
assert_match "$OUT" '^created_at +event_id +event_type +attempts +handler +error_message$' "dead-letters list: the header"
assert_match "$OUT" "^[0-9-]{10} [0-9:]{8} +$D1 +job\.fail +5 +test\.handler +gave up after 5 attempts: upstream said no; upstream said\.\.\.\$" "dead-letters list: long error cut"
run dead-letters list --limit 0
assert_eq "$RC" 64 "dead-letters list --limit 0: exit 64"
run dead-letters list --since 'not a time'
assert_eq "$RC" 64 "dead-letters list --since garbage: exit 64"
assert_match "$ERR" '--since: not a timestamp: not a time' "dead-letters list: says which value"
run dead-letters
assert_eq "$RC" 64 "dead-letters without a verb: exit 64"
run dead-letters purge
assert_eq "$RC" 64 "dead-letters with an unknown verb: exit 64"
run dead-letters list --frob
assert_eq "$RC" 64 "dead-letters list with an unknown option: exit 64"

# ---- replay ---------------------------------------------------------------
H1=$(q "SELECT now() - interval '1 hour'")
# created in the last hour, of type order.created: D3 (dead) and OK2 (fine); P1, P2, OK1 are older
sum=$(checksum)
run replay --type order.created --since "$H1" --dry-run
assert_eq "$RC" 0 "replay --dry-run: exit 0"
assert_eq "$(checksum)" "$sum" "replay --dry-run changes nothing"
assert_eq "$(printf '%s\n' "$OUT" | head -n 1)" "dry run: 2 events would be replayed" "replay --dry-run: the count"
assert_eq "$(printf '%s\n' "$OUT" | tail -n +2 | tr -d ' ' | tr '\n' ' ')" "$D3 $OK2 " "replay --dry-run: which, in created_at order"
run replay --type order.created --since "$H1" --dry-run --json
assert_eq "$(jget "$OUT" 'dry_run')|$(jget "$OUT" 'replayed')|$(jget "$OUT" 'ids,0')|$(jget "$OUT" 'ids,1')" "true|2|$D3|$OK2" "replay --dry-run --json"
assert_eq "$(checksum)" "$sum" "replay --dry-run --json changes nothing"
run replay --type order.created --since "$H1"
assert_eq "$OUT" "2 events replayed" "replay --type --since: 2 replayed"
assert_eq "$(state "$D3")|$(state "$OK2")" "false|0|true|-|false|0|true|-" "replay --type --since: D3 and OK2 unprocessed, attempts reset by the trigger"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 5 "replay --type --since: nothing else replayed"
run replay --type order.created --until "$H1" --since "$(q "SELECT now() - interval '3 hours'")" --dry-run
assert_eq "$OUT" "dry run: 0 events would be replayed, 2 skipped (already pending)" "replay --until: P1 and P2 are pending, OK1 is older"

# --dead-letters: D1 and D2 are dead now; H was dead once but has been handled since
run replay --dead-letters --type job.fail
assert_eq "$OUT" "2 events replayed" "replay --dead-letters --type: 2 replayed"
assert_eq "$(state "$D1")|$(state "$D2")|$(q "SELECT processed FROM events WHERE id = '$H'")" "false|0|true|-|false|0|true|-|t" "replay --dead-letters --type: D1 and D2 reset, H left alone"
run replay --dead-letters
assert_eq "$OUT" "0 events replayed, 3 skipped (already pending)" "replay --dead-letters again: D1, D2, D3 already pending"

run replay --id "$OK1"
assert_eq "$RC|$OUT" "0|1 event replayed" "replay --id: 1 replayed"
assert_eq "$(state "$OK1")" "false|0|true|-" "replay --id: processed = false, attempts 0 (trigger)"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 8 "replay --id: exactly that event"
run replay --id "$OK1"
assert_eq "$OUT" "0 events replayed, 1 skipped (already pending)" "replay of an already pending event: 0"
sum=$(checksum)
run replay --id "$OK3" --id 00000000-0000-0000-0000-000000000000
assert_eq "$RC" 66 "replay --id of an unknown event: exit 66"
assert_eq "$(checksum)" "$sum" "replay with an unknown id replays nothing"
run replay --id "$OK3" nope
assert_eq "$RC" 64 "replay --id of a malformed id: exit 64"
assert_match "$ERR" 'not an event id: nope' "replay: says not an event id"
run replay --type job.sync --since yesterday-ish
assert_eq "$RC" 64 "replay --since garbage: exit 64"
run replay
assert_eq "$RC" 64 "replay without a selector: exit 64"
assert_match "$ERR" 'usage: pgeventd' "replay without a selector: the usage"
run replay "$OK3"
assert_eq "$RC" 64 "replay with an id but no --id: exit 64"
run replay --type job.sync --frob
assert_eq "$RC" 64 "replay with an unknown option: exit 64"
run replay --since
assert_eq "$RC" 64 "replay --since without a value: exit 64"
assert_eq "$(checksum)" "$sum" "the refused replays changed nothing"
run replay --id "$OK3" "$H" --json
assert_eq "$(jget "$OUT" 'dry_run')|$(jget "$OUT" 'replayed')|$(jget "$OUT" 'skipped')" "false|2|0" "replay --id A B --json: both"
assert_eq "$(q "SELECT count(*) FROM events WHERE id IN ('$OK3', '$H') AND NOT processed AND attempts = 0")" 2 "replay --id A B: both reset"

# ---- help, the database away, the secret ------------------------------------
for c in status replay dead-letters show; do
	run "$c" --help
	assert_eq "$RC" 0 "$c --help: exit 0"
	assert_match "$OUT" "^usage: pgeventd \[-c FILE\] $c" "$c --help: the usage"
done
conf "$T/down.conf" 'database = { conninfo = "host=127.0.0.1 port=1 connect_timeout=2"; };'
for args in "status" "replay --id $OK3" "dead-letters list" "show $OK3"; do
	"$BIN" -c "$T/down.conf" $args >"$T/out" 2>&1
	rc=$?
	assert_eq "$rc" 69 "$args with the database unreachable: exit 69"
	assert_match "$(cat "$T/out")" '^pgeventd: cannot connect to the database: ' "$args: says so"
done
assert_eq "$(grep -c -- "$SECRET" "$ALL")" 0 "no output shows a subscription's secret"
assert_match "$(grep -c 'billing' "$ALL")" '^[1-9]' "(the outputs did name the subscriptions)"
assert_eq "$(grep -c -e 'Sanitizer' -e 'runtime error:' "$ALL")" 0 "no sanitizer report from any command"

# ---- the CLI's replay is the DBA's: a running daemon handles it again -------
E=$(ev test.effect '1 second')
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM test_effects WHERE event_id = '$E'" 1 20 || die "test.effect not handled"
wait_for "SELECT processed FROM events WHERE id = '$E'" t 10 || die "test.effect not marked processed"
run replay --id "$E"
assert_eq "$OUT" "1 event replayed" "replay while the daemon runs"
wait_for "SELECT count(*) FROM test_effects WHERE event_id = '$E'" 2 10 || fail "the replayed event was not handled again"
wait_for "SELECT processed || '|' || attempts FROM events WHERE id = '$E'" "true|1" 10 || fail "the replayed event was not handled with fresh attempts"
stop_daemon $DPID
assert_eq $? 0 "daemon exit 0"
finish

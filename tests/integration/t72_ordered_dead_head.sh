#!/usr/bin/env bash
# A dead-lettered head: under the block policy (the default) its key parks
# -- status and `keys list` show it -- until `keys unpark --replay` runs the
# head again and then the rest in order, or `keys unpark --skip` lets the
# rest go on without it; under skip_dead_letters the rest goes on at once.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/block.conf" 'workers = 2;' 'ordering = { by_aggregate = [ "test.ordered" ]; };'
conf "$T/skip.conf" 'workers = 2;' \
	'ordering = { by_aggregate = [ "test.ordered" ]; skip_dead_letters = [ "test.ordered" ]; };'
add_key() { # key: 4 events, the first one broken
	q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
	   SELECT 'test.ordered', 'acct', md5('$1')::uuid, jsonb_build_object('key', '$1', 'n', i),
	          now() - interval '1 min' + i * interval '1 ms' FROM generate_series(0, 3) i"
	q "INSERT INTO test_broken SELECT id FROM events WHERE payload->>'key' = '$1' AND payload->>'n' = '0'"
}
spans() { q "SELECT coalesce(string_agg(n::text, ',' ORDER BY started_at, seq), '') FROM test_spans WHERE key = '$1'"; }
KEY1="a:acct:$(q "SELECT md5('replayed')::uuid")"
KEY2="a:acct:$(q "SELECT md5('skipped')::uuid")"
add_key replayed
add_key skipped
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'test.ordered', 'acct', md5('fine')::uuid, jsonb_build_object('key', 'fine', 'n', i),
          now() - interval '1 min' + i * interval '1 ms' FROM generate_series(0, 3) i"

"$BIN" -c "$T/block.conf" run --once >"$T/run1.log" 2>&1
assert_eq $? 0 "run --once stops with only parked keys left"
assert_eq "$(spans fine)" "0,1,2,3" "a key without trouble drains"
assert_eq "$(spans replayed)" "" "a parked key runs nothing past its dead head"
assert_eq "$(q 'SELECT count(*) FROM event_dead_letters')" 2 "both heads dead-lettered"
assert_eq "$(q 'SELECT count(*) FROM events WHERE NOT processed')" 6 "the events behind them wait"
LIST=$("$BIN" -c "$T/block.conf" keys list --json)
assert_eq "$(printf '%s' "$LIST" | jq -r 'map(.key) | sort | join(" ")')" "$(printf '%s\n' "$KEY1" "$KEY2" | sort | tr '\n' ' ' | sed 's/ $//')" "keys list names both parked keys"
assert_eq "$(printf '%s' "$LIST" | jq -r "map(select(.key == \"$KEY1\"))[0].waiting")" 3 "with the events waiting behind each"
STATUS=$("$BIN" -c "$T/block.conf" status --json)
assert_eq "$(printf '%s' "$STATUS" | jq -r '.ordered_keys.parked')" 2 "status counts the parked keys"
"$BIN" -c "$T/block.conf" status >"$T/status.txt"
assert_match "$(cat "$T/status.txt")" "parked $KEY1" "status names them"

# replay: the head, fixed, runs first, then the rest in order
q "DELETE FROM test_broken"
"$BIN" -c "$T/block.conf" keys unpark "$KEY1" --replay >"$T/unpark1.out"
assert_eq $? 0 "unpark --replay exits 0"
"$BIN" -c "$T/block.conf" run --once >"$T/run2.log" 2>&1
assert_eq "$(spans replayed)" "0,1,2,3" "after unpark --replay the head ran first, then the rest in order"
assert_eq "$(spans skipped)" "" "the other parked key still waits"

# skip: the rest goes on, the head stays dead-lettered
"$BIN" -c "$T/block.conf" keys unpark "$KEY2" --skip >"$T/unpark2.out"
assert_eq $? 0 "unpark --skip exits 0"
"$BIN" -c "$T/block.conf" run --once >"$T/run3.log" 2>&1
assert_eq "$(spans skipped)" "1,2,3" "after unpark --skip the rest ran in order without the head"
assert_eq "$(q "SELECT processed FROM events WHERE payload->>'key' = 'skipped' AND payload->>'n' = '0'")" t "the skipped head stays dead-lettered"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_keys')" 0 "no key rows left"
"$BIN" -c "$T/block.conf" keys unpark "$KEY2" --skip >/dev/null 2>"$T/unpark3.err"
assert_eq $? 1 "unparking a key that is not parked fails"
"$BIN" -c "$T/block.conf" keys unpark "$KEY2" >/dev/null 2>&1
assert_eq $? 64 "unpark wants --skip or --replay"

# the skip policy: a dead head does not stop its key
add_key policy
"$BIN" -c "$T/skip.conf" run --once >"$T/run4.log" 2>&1
assert_eq "$(spans policy)" "1,2,3" "under skip_dead_letters the rest ran at once"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_keys')" 0 "and nothing parked"
assert_eq "$(q 'SELECT count(*) FROM events WHERE NOT processed')" 0 "nothing left"
# A replay of a key that has no row waits for the key's admission partition
# (a batch holding it may be running a newer event of that key it admitted
# as free): it must not hand the key to another batch meanwhile.
assert_eq "$(q "SELECT count(*) FROM pgeventd_keys WHERE key = '$KEY1'")" 0 "the drained key has no row"
psql -X -q -c "BEGIN; SELECT pg_advisory_xact_lock(1885824375, hashtext('$KEY1') & 7); SELECT pg_sleep(3); COMMIT;" >/dev/null 2>&1 &
HOLDER=$!
wait_for "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1885824375 AND granted" 1 5 || fail "the partition lock holder did not start"
psql -X -q -A -t -v ON_ERROR_STOP=1 -c "SET lock_timeout = '500ms'; UPDATE events SET processed = false WHERE payload->>'key' = 'replayed' AND payload->>'n' = '1'" >"$T/replay_locked.out" 2>&1
assert_eq $? 1 "a replay waits for the key's admission partition lock"
assert_eq "$(q "SELECT count(*) FROM pgeventd_keys WHERE key = '$KEY1'")" 0 "and gave the key no row meanwhile"
wait $HOLDER
q "UPDATE events SET processed = false WHERE payload->>'key' = 'replayed' AND payload->>'n' = '1'"
assert_eq "$(q "SELECT count(*) FROM pgeventd_keys WHERE key = '$KEY1' AND due_at IS NOT NULL")" 1 "once free, the replay gives the key its row"
"$BIN" -c "$T/block.conf" run --once >"$T/run5.log" 2>&1
assert_eq "$(spans replayed)" "0,1,2,3,1" "and the replayed event runs"
# keys unpark fails (exit 1, key left as it was) when it could not do what it
# says: a head that is no longer a processed event to replay, or a key
# another unpark let go of meanwhile (its row is locked first).
add_key twice
add_key gone
"$BIN" -c "$T/block.conf" run --once >"$T/run6.log" 2>&1
KEY4="a:acct:$(q "SELECT md5('twice')::uuid")"
KEY5="a:acct:$(q "SELECT md5('gone')::uuid")"
assert_eq "$(q "SELECT count(*) FROM pgeventd_keys WHERE key IN ('$KEY4', '$KEY5') AND parked_event IS NOT NULL")" 2 "two more keys parked"
q "UPDATE events SET processed = false WHERE id = (SELECT parked_event FROM pgeventd_keys WHERE key = '$KEY5')"
"$BIN" -c "$T/block.conf" keys unpark "$KEY5" --replay >"$T/unpark5.out" 2>"$T/unpark5.err"
assert_eq $? 1 "unpark --replay of a head that is not processed fails"
assert_match "$(cat "$T/unpark5.err")" "is not a processed event" "saying why"
assert_eq "$(cat "$T/unpark5.out")" "" "and prints no success"
assert_eq "$(q "SELECT parked_event IS NOT NULL FROM pgeventd_keys WHERE key = '$KEY5'")" t "the key stays parked"
psql -X -q -c "BEGIN; UPDATE pgeventd_keys SET parked_event = NULL, parked_at = NULL, due_at = now() WHERE key = '$KEY4'; SELECT pg_sleep(2); COMMIT;" >/dev/null 2>&1 &
OTHER=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()" 1 5 || fail "the other unpark did not start"
sleep 0.3
"$BIN" -c "$T/block.conf" keys unpark "$KEY4" --skip >"$T/unpark4.out" 2>"$T/unpark4.err"
assert_eq $? 1 "of two unparks of a key at once, the second fails"
assert_match "$(cat "$T/unpark4.err")" "no parked key" "saying the key is not parked"
wait $OTHER
finish

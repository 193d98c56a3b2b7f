#!/usr/bin/env bash
# Readiness follows the database: 503 with the reason while PostgreSQL is
# stopped, 200 again after it returns; events inserted meanwhile flow.
# Liveness does not: an outage longer than stall_timeout_ms is not a stalled
# loop (a restart would not bring the database back).
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'health = { listen = "127.0.0.1:0"; };' 'stall_timeout_ms = 2000;'
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "health server did not start"
ready() { http_get "$PORT" /health/ready >/dev/null; http_status; }
for _ in $(seq 1 50); do [ "$(ready)" = 200 ] && break; sleep 0.1; done
assert_eq "$(ready)" 200 "ready while the database is up"

. "$PGEVENTD_SRCDIR/scripts/pg-cluster.sh"
pgc_pause || die "pg_ctl stop"
log "PostgreSQL stopped"
for _ in $(seq 1 100); do [ "$(ready)" = 503 ] && break; sleep 0.1; done
R=$(http_get "$PORT" /health/ready)
assert_eq "$(http_status)" 503 "not ready while the database is down"
assert_match "$R" 'no worker connected to the database' "says why"
H=$(http_get "$PORT" /health)
assert_eq "$(http_status)" 200 "/health still answers (degraded is 200)"
assert_match "$H" '"status": "degraded"' "status degraded"
sleep 3
L=$(http_get "$PORT" /health/live)
assert_eq "$(http_status)" 200 "still live 3 s into the outage, past stall_timeout_ms = 2000"

pgc_resume || die "pg_ctl start"
log "PostgreSQL started again"
for _ in $(seq 1 400); do [ "$(ready)" = 200 ] && break; sleep 0.1; done
assert_eq "$(ready)" 200 "ready again after the database returns"
insert_events test.effect 10 "'{}'"
wait_for "SELECT count(*) FROM test_effects" 10 20 || fail "events after the outage not handled"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish

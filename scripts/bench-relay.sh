# bench-relay.sh -- `scripts/bench relay`, sourced by scripts/bench (which
# has built pgeventd as $BIN, started the honest cluster, migrated the
# database and defined sql, now_ms, median, ratio and daemon_conf).
#
# N events (default 20000) for one subscription are drained by
# `pgeventd run --once` with the relay on (C requests in flight, default
# 64), signing each request, against a local nginx answering 200 on
# loopback: "end to end" (workers queue the deliveries, the relay sends
# them). "relay only" drains N deliveries queued beforehand by SQL, to
# separate the sending from the queueing. The baseline is wrk posting the
# same body and headers to the same nginx with C connections for 5 s.
# Rounds alternate wrk and pgeventd; the medians, their ratios and
# pgeventd's peak RSS are printed.
#
# "SQL floor" bounds the relay from above on this machine: the database
# work of relaying N deliveries with no HTTP at all, one session (as the
# relay has) running pgbench transactions that each record C in-flight
# deliveries as delivered (pgeventd_finish_deliveries) and claim the next
# C with the relay's own claim (read from src/delivery.c), then commit:
# the relay's round, back to back. It reads the in-flight rows to build
# the results, which the relay does not, so it is a slight underestimate.

mkdir -p "$work/nginx/logs"
nport=$((20000 + RANDOM % 20000))
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nport;
    location / { client_max_body_size 1m; return 200 "ok\n"; }
  }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
ngpid=$!
bg_pids+=("$ngpid")
sleep 0.5

daemon_conf "$work/relay.conf" "" \
	"relay = { event_types = [\"bench.*\"]; concurrency = $concurrency; };"
# One receiver, allowed every slot (max_in_flight defaults to 16 per
# subscription; wrk gets C connections).
sql "INSERT INTO subscriptions (name, url, secret, event_types, max_in_flight)
     VALUES ('bench', 'http://127.0.0.1:$nport/hook', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
             '[\"*\"]', $concurrency)"

fill_queued() {
	sql "TRUNCATE events, event_dead_letters, deliveries, delivery_attempts"
	sql "INSERT INTO deliveries (event_id, subscription_id, event_type, body)
	     SELECT gen_random_uuid(), (SELECT id FROM subscriptions), 'bench.created',
	            json_build_object('id', gen_random_uuid(), 'type', 'bench.created',
	              'timestamp', '2026-11-23T23:00:00.000000Z', 'aggregate', NULL,
	              'data', jsonb_build_object('n', g, 'order', 'A-' || g, 'total_cents', 4200))::text
	     FROM generate_series(1, $deliveries) g"
	sql "VACUUM ANALYZE deliveries"
}

# Time one `run --once`; prints deliveries per second.
drain_once() {
	local t0 t1 got
	t0=$(now_ms)
	/usr/bin/time -f '%M' -o "$work/rss" "$BIN" -c "$work/relay.conf" run --once \
		>"$work/daemon.log" 2>&1 || {
		cat "$work/daemon.log" >&2
		exit 1
	}
	t1=$(now_ms)
	got=$(sql "SELECT count(*) FROM deliveries WHERE status = 'delivered'")
	if [ "$got" != "$deliveries" ]; then
		echo "bench: $got of $deliveries delivered" >&2
		tail "$work/daemon.log" >&2
		exit 1
	fi
	echo $((deliveries * 1000 / (t1 - t0)))
}

fill_relay() {
	sql "TRUNCATE events, event_dead_letters, deliveries, delivery_attempts"
	sql "INSERT INTO events (event_type, payload)
	     SELECT 'bench.created', jsonb_build_object('n', g, 'order', 'A-' || g, 'total_cents', 4200)
	     FROM generate_series(1, $deliveries) g"
	sql "VACUUM ANALYZE events"
}

# wrk sends a body of the same shape and size, with the same headers.
body=$(sql "SELECT json_build_object('id', gen_random_uuid(), 'type', 'bench.created',
  'timestamp', '2026-11-23T23:00:00.000000Z', 'aggregate', NULL,
  'data', jsonb_build_object('n', 10000, 'order', 'A-10000', 'total_cents', 4200))::text")
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$body]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "pgeventd/bench"
wrk.headers["webhook-id"] = "00000000-0000-0000-0000-000000000000"
wrk.headers["webhook-timestamp"] = "1795476000"
wrk.headers["webhook-signature"] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
LUA

# The relay's claim, as pgbench runs it: :n deliveries, a 1 s lease margin.
python3 - "$top/src/delivery.c" "$concurrency" >"$work/sqlfloor.sql" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
m = re.search(r'static const char claim_sql\[\] =\n(.*?);\n', src, re.S)
claim = ''.join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).replace('\\"', '"')
print('\\set n %s' % sys.argv[2])
print('BEGIN;')
print("SELECT pgeventd_finish_deliveries(array_agg(id), array_agg(lease), array_agg(attempt),"
      " array_agg('delivered'::text), array_agg(200), array_agg(NULL::text), array_agg('ok'::text),"
      " array_agg(extract(epoch FROM now())::float8), array_agg(1.0::float8), array_agg(0::bigint),"
      " 5, 60000, 0, false) FROM deliveries WHERE status = 'in_flight';")
print(claim.replace('$1', ':n').replace('$2', '1000') + ';')
print('COMMIT;')
PY
# Deliveries per second through the SQL alone (see above).
sql_floor() {
	fill_queued
	PGOPTIONS="-c plan_cache_mode=force_generic_plan" pgbench -n -M prepared -c 1 \
		-t $((deliveries / concurrency + 1)) -f "$work/sqlfloor.sql" >"$work/sqlfloor.out" 2>&1 ||
		{
			cat "$work/sqlfloor.out" >&2
			exit 1
		}
	echo $(($(pgbench_tps "$work/sqlfloor.out") * concurrency))
}

echo "== relay: $deliveries deliveries, $concurrency in flight, $rounds rounds (nginx on 127.0.0.1:$nport)"
wrks=() relays=() onlys=() floors=() rss=()
for r in $(seq 1 "$rounds"); do
	w=$(wrk -t 2 -c "$concurrency" -d 5s -s "$work/post.lua" "http://127.0.0.1:$nport/hook" |
		awk '/^Requests\/sec:/ { printf "%d", $2 }')
	fill_relay
	d=$(drain_once)
	rss+=("$(tail -n 1 "$work/rss")")
	fill_queued
	o=$(drain_once)
	f=$(sql_floor)
	wrks+=("$w")
	relays+=("$d")
	onlys+=("$o")
	floors+=("$f")
	printf 'round %d: wrk %6d req/s   end to end %5d/s (%s)   relay only %5d/s (%s)   SQL floor %5d/s (%s)\n' \
		"$r" "$w" "$d" "$(ratio "$d" "$w")" "$o" "$(ratio "$o" "$w")" "$f" "$(ratio "$f" "$w")"
done
wm=$(median "${wrks[@]}")
dm=$(median "${relays[@]}")
om=$(median "${onlys[@]}")
fm=$(median "${floors[@]}")
echo
printf '%-40s %s req/s (median)\n' "wrk ($concurrency connections):" "$wm"
printf '%-40s %s deliveries/s (median), ratio %s\n' "pgeventd end to end ($concurrency in flight):" \
	"$dm" "$(ratio "$dm" "$wm")"
printf '%-40s %s deliveries/s (median), ratio %s\n' "pgeventd relay only:" "$om" "$(ratio "$om" "$wm")"
printf '%-40s %s deliveries/s (median), ratio %s\n' "SQL floor (claim + finish, rounds of $concurrency):" \
	"$fm" "$(ratio "$fm" "$wm")"
printf '%-40s %s KiB (median)\n' "pgeventd peak RSS (end to end):" "$(median "${rss[@]}")"

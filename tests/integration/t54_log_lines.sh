#!/usr/bin/env bash
# Log lines stay whole: four workers and the relay log at once (debug
# level, both formats), the process is killed with -9 in the middle, and
# every line of the log parses -- the last one included.
. "$(dirname "$0")/lib.sh"
setup_db
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
check_lines() { # file format
	python3 - "$1" "$2" <<'PY'
import json, re, sys
path, fmt = sys.argv[1], sys.argv[2]
val = r'(?:[^\s"=\\]+|"(?:[^"\\\x00-\x1f]|\\["\\ntr]|\\x[0-9a-f]{2})*")'
line_re = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|notice|warning|error) msg=' + val + r'( [A-Za-z_][A-Za-z0-9_.]*=' + val + r')*$')
data = open(path, 'rb').read()
if data and not data.endswith(b'\n'):
    print('last line cut short: %r' % data[-120:])
    sys.exit(1)
bad = n = 0
for raw in data.split(b'\n')[:-1]:
    n += 1
    line = raw.decode('utf-8', 'replace')
    if fmt == 'json':
        try:
            o = json.loads(line)
            ok = isinstance(o, dict) and 'ts' in o and 'level' in o and 'msg' in o
        except ValueError:
            ok = False
    else:
        ok = line_re.match(line) is not None
    if not ok:
        bad += 1
        if bad <= 3:
            print('not a whole line: %r' % line[:200])
print('%d lines, %d bad' % (n, bad))
sys.exit(1 if bad or n < 1000 else 0)
PY
}
q "INSERT INTO subscriptions (name, url, secret, event_types) VALUES
   ('nowhere', 'http://127.0.0.1:9/x', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '[\"job.*\"]')"
for fmt in logfmt json; do
	q "DELETE FROM events"
	q "INSERT INTO events (event_type, payload)
	   SELECT CASE g % 3 WHEN 0 THEN 'test.effect' WHEN 1 THEN 'test.flaky' ELSE 'job.done' END,
	          jsonb_build_object('fail_times', 1, 'note', repeat('x', g % 300) || E'\"q\"\n')
	   FROM generate_series(1, 30000) g"
	conf "$T/$fmt.conf" 'workers = 4;' 'batch_size = 50;' "log = { level = \"debug\"; format = \"$fmt\"; };" \
		'backoff = { base_ms = 10; cap_ms = 20; };' 'relay = { event_types = ["job.*"]; concurrency = 8; };'
	start_daemon "$fmt" "$T/$fmt.conf"
	wait_for "SELECT count(*) > 3000 FROM events WHERE processed" t 30 || die "$fmt: too slow"
	kill -9 "$DPID"
	wait "$DPID" 2>/dev/null
	out=$(check_lines "$T/$fmt.log" "$fmt") && log "ok: $fmt: $out" || fail "$fmt: $out"
	# The run goes on after the kill: the log of a second run parses too.
	"$BIN" -c "$T/$fmt.conf" run --once >"$T/$fmt-once.log" 2>&1
	out=$(check_lines "$T/$fmt-once.log" "$fmt") && log "ok: $fmt after restart: $out" || fail "$fmt after restart: $out"
done
finish

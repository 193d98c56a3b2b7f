#!/usr/bin/env bash
# Self-test of tests/sink/webhook_sink.py: starts it on an ephemeral port and
# checks, with curl, signature verification against the known-answer vectors
# (tests/vectors/signatures.json, else /work/shared/vectors/signatures.json),
# scripted answers, Retry-After, Location, 404, hang, close, config reload and
# SIGTERM. Exit 0 pass, 1 fail, 77 skip (no python3 or curl).
set -u

for tool in python3 curl; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$tool not found: skipped"
		exit 77
	fi
done
here=$(cd "$(dirname "$0")" && pwd)
srcdir=${PGEVENTD_SRCDIR:-$(cd "$here/../.." && pwd)}
VECTORS=$srcdir/tests/vectors/signatures.json
[ -s "$VECTORS" ] || VECTORS=/work/shared/vectors/signatures.json
if [ ! -s "$VECTORS" ]; then
	echo "no signature vectors found"
	exit 1
fi

T=$(mktemp -d /tmp/pgeventd-sink.XXXXXX) || exit 1
SINK_PID=
cleanup() {
	[ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
LOG=$T/log.jsonl
FAILS=0
OKS=0 # passed expect()s; printed with FAILS as "# assertions: P passed, F failed"
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# Config and shell variables from the vectors (python3 does the JSON and the quoting).
python3 - "$VECTORS" "$T/config.json" >"$T/vars.sh" <<'EOF' || exit 1
import base64, hashlib, hmac, json, shlex, sys
v = json.load(open(sys.argv[1]))
std, th, bh = (v[k]["vectors"] for k in ("standard_webhooks", "timestamped_hex", "body_hex"))
flip = lambda s: s[:-2] + chr(ord(s[-2]) ^ 1) + s[-1]
out = {}
for i, x in enumerate(std):
    out.update({"S%d_ID" % i: x["id"], "S%d_TS" % i: str(x["timestamp"]),
                "S%d_BODY" % i: x["body"], "S%d_SIG" % i: x["signature"]})
out.update({"S0_BADBODY": flip(std[0]["body"]), "S0_BADSIG": flip(std[0]["signature"]),
            "TH_BODY": th[0]["body"], "TH_SIG": th[0]["header"],
            "TH_BADSIG": flip(th[0]["header"]), "TH_TS": str(th[0]["timestamp"]),
            "BH_BODY": bh[1]["body"], "BH_SIG": bh[1]["header"], "BH_BADBODY": flip(bh[1]["body"])})
# A well-formed event, signed here (for body_ok and the scripted keys).
secret = std[0]["secret"]
ev = json.dumps({"id": "11111111-2222-3333-4444-555555555555", "type": "job.done",
                 "timestamp": "2024-01-01T00:00:00Z", "aggregate": "job:1", "data": {"x": 1}})
def sign(msg_id, ts="1700000000"):
    key = base64.b64decode(secret[6:])
    return "v1," + base64.b64encode(hmac.new(key, ("%s.%s.%s" % (msg_id, ts, ev)).encode(),
                                             hashlib.sha256).digest()).decode()
out.update({"EV": ev, "EV_SIG_A": sign("msg_a"), "EV_SIG_B": sign("msg_b")})
for k, val in out.items():
    print("%s=%s" % (k, shlex.quote(val)))
plain = lambda script: {"scheme": "standard", "secrets": [secret], "script": script}
cfg = {"std": {"scheme": "standard", "secrets": [x["secret"] for x in std]},
       "th": {"scheme": "timestamped_hex", "secrets": ["wrong", th[0]["secret"]]},
       "bh": {"scheme": "body_hex", "secrets": [x["secret"] for x in bh],
              "signature_header": "X-Hub-Signature-256"},
       "script": plain(["500", "500", "200"]), "ra": plain(["429:2"]), "su": plain(["503:3"]),
       "redir": plain(["302"]), "hang": plain(["hang"]), "close": plain(["close"])}
json.dump(cfg, open(sys.argv[2], "w"))
EOF
. "$T/vars.sh"

python3 "$here/webhook_sink.py" --config "$T/config.json" --log "$LOG" \
	--port 0 --port-file "$T/port" 2>"$T/sink.err" &
SINK_PID=$!
for _ in $(seq 100); do
	[ -s "$T/port" ] && break
	sleep 0.1
done
if [ ! -s "$T/port" ]; then
	echo "sink did not start"; cat "$T/sink.err"
	exit 1
fi
URL=http://127.0.0.1:$(cat "$T/port")

# post KEY BODY [curl args...]: prints the HTTP code; headers land in $T/headers.
post() {
	local key=$1 body=$2
	shift 2
	echo "$key" >>"$T/sent"
	curl -s -o /dev/null -D "$T/headers" -w '%{http_code}' -A pgeventd-selftest \
		-H 'Content-Type: application/json' --data-binary "$body" "$@" "$URL/$key"
}
# last FIELD: the field of the newest log line, as JSON text. sed, not python3
# (whose start-up is slow), is enough for the values this test looks at: the
# sink writes json.dumps' '"key": value, ' layout and none of them holds a '"'.
last() {
	tail -n 1 "$LOG" | sed -n "s/.*\"$1\": \(\"[^\"]*\"\|[^,}]*\).*/\1/p"
}
expect() { # expect WHAT GOT WANT
	if [ "$2" = "$3" ]; then OKS=$((OKS + 1)); else fail "$1: got '$2', want '$3'"; fi
}
std_post() { # std_post KEY ID TS BODY SIG [curl args...]
	post "$1" "$4" -H "webhook-id: $2" -H "webhook-timestamp: $3" -H "webhook-signature: $5" "${@:6}"
}

# --- signatures: every vector verifies; a flipped byte does not
for i in 0 1 2; do
	eval "id=\$S${i}_ID ts=\$S${i}_TS body=\$S${i}_BODY sig=\$S${i}_SIG"
	expect "standard vector $i status" "$(std_post std "$id" "$ts" "$body" "$sig")" 200
	expect "standard vector $i sig_ok" "$(last sig_ok)" true
done
std_post std "$S0_ID" "$S0_TS" "$S0_BADBODY" "$S0_SIG" >/dev/null
expect "standard flipped body" "$(last sig_ok)" false
expect "flipped body error" "$(last sig_error)" '"mismatch"'
std_post std "$S0_ID" "$S0_TS" "$S0_BODY" "$S0_BADSIG" >/dev/null
expect "standard flipped signature" "$(last sig_ok)" false
std_post std "$S0_ID" "$((S0_TS + 1))" "$S0_BODY" "$S0_SIG" >/dev/null
expect "standard other timestamp" "$(last sig_ok)" false
std_post std "$S0_ID" "$S0_TS" "$S0_BODY" "v1,AAAA $S1_SIG $S0_SIG" >/dev/null
expect "standard rotation (several signatures)" "$(last sig_ok)" true
post std "$S0_BODY" -H "webhook-id: $S0_ID" -H "webhook-timestamp: $S0_TS" >/dev/null
expect "standard missing signature" "$(last sig_error)" '"missing webhook-signature"'

post th "$TH_BODY" -H "X-Delivery-Id: d1" -H "X-Buddy-Signature: $TH_SIG" >/dev/null
expect "timestamped_hex vector" "$(last sig_ok)" true
expect "timestamped_hex timestamp" "$(last timestamp)" "\"$TH_TS\""
expect "timestamped_hex id" "$(last id)" '"d1"'
post th "$TH_BODY" -H "X-Delivery-Id: d1" -H "X-Buddy-Signature: $TH_BADSIG" >/dev/null
expect "timestamped_hex flipped" "$(last sig_ok)" false

post bh "$BH_BODY" -H "X-Hub-Signature-256: $BH_SIG" >/dev/null
expect "body_hex vector (custom header)" "$(last sig_ok)" true
post bh "$BH_BADBODY" -H "X-Hub-Signature-256: $BH_SIG" >/dev/null
expect "body_hex flipped" "$(last sig_ok)" false

# --- the event body and request metadata
std_post std msg_a 1700000000 "$EV" "$EV_SIG_A" >/dev/null
expect "event sig_ok" "$(last sig_ok)" true
expect "event body_ok" "$(last body_ok)" true
expect "event_id" "$(last event_id)" '"11111111-2222-3333-4444-555555555555"'
expect "event_type" "$(last event_type)" '"job.done"'
expect "user_agent" "$(last user_agent)" '"pgeventd-selftest"'
expect "content_type" "$(last content_type)" '"application/json"'
expect "body_sha256" "$(last body_sha256)" \
	"\"$(printf '%s' "$EV" | python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')\""
expect "body_ok of a non-event" "$(std_post std "$S0_ID" "$S0_TS" "$S0_BODY" "$S0_SIG" >/dev/null; last body_ok)" false

# --- the script: per message id, then "then"
codes=
for _ in 1 2 3 4; do codes="$codes $(std_post script msg_a 1700000000 "$EV" "$EV_SIG_A")"; done
expect "script msg_a" "$codes" " 500 500 200 200"
expect "script n" "$(last n)" 4
expect "script other id" "$(std_post script msg_b 1700000000 "$EV" "$EV_SIG_B")" 500
expect "script other id n" "$(last n)" 1

# --- answer forms
expect "429 status" "$(std_post ra msg_a 1700000000 "$EV" "$EV_SIG_A")" 429
grep -qi '^retry-after: 2.$' "$T/headers" || fail "429 without Retry-After: 2"
expect "503 status" "$(std_post su msg_a 1700000000 "$EV" "$EV_SIG_A")" 503
grep -qi '^retry-after: 3.$' "$T/headers" || fail "503 without Retry-After: 3"
expect "302 status" "$(std_post redir msg_a 1700000000 "$EV" "$EV_SIG_A")" 302
grep -qi '^location: /elsewhere.$' "$T/headers" || fail "302 without Location"
expect "unknown key" "$(std_post nosuch msg_a 1700000000 "$EV" "$EV_SIG_A")" 404
expect "unknown key logged" "$(last status)" 404

start=$(date +%s)
std_post hang msg_a 1700000000 "$EV" "$EV_SIG_A" --max-time 1 >/dev/null
rc=$?
expect "hang: curl times out (28)" "$rc" 28
[ $(($(date +%s) - start)) -le 5 ] || fail "hang took too long to time out"
expect "hang logged" "$(last status)" '"hang"'

std_post close msg_a 1700000000 "$EV" "$EV_SIG_A" --max-time 5 >/dev/null
expect "close: empty reply (52)" "$?" 52
expect "close logged" "$(last status)" '"close"'

# --- the config is re-read on every request
python3 - "$T/config.json" <<'EOF'
import json, os, sys
c = json.load(open(sys.argv[1])); c["late"] = dict(c["script"], script=["410"])
json.dump(c, open(sys.argv[1] + ".new", "w")); os.replace(sys.argv[1] + ".new", sys.argv[1])
EOF
expect "key added while running" "$(std_post late msg_a 1700000000 "$EV" "$EV_SIG_A")" 410

# --- every request logged once; SIGTERM stops the sink
expect "one log line per request" "$(wc -l <"$LOG")" "$(wc -l <"$T/sent")"
kill -TERM "$SINK_PID"
for _ in $(seq 50); do
	kill -0 "$SINK_PID" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$SINK_PID" 2>/dev/null; then
	fail "sink still running 5 s after SIGTERM"
else
	wait "$SINK_PID"
	expect "sink exit status" "$?" 0
	SINK_PID=
fi
[ -s "$T/sink.err" ] && fail "sink wrote to stderr: $(head -5 "$T/sink.err")"

echo "# assertions: $OKS passed, $FAILS failed"
if [ "$FAILS" -gt 0 ]; then
	echo "check_sink: $FAILS failure(s)"
	exit 1
fi
echo "check_sink: ok"
exit 0

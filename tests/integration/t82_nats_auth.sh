#!/usr/bin/env bash
# NATS authentication: a server that wants a token. The subscription whose
# secret is the token delivers; the one with a wrong token gets a clear
# error in delivery_attempts.error and is retried, the daemon lives on; no
# token ever reaches the log, the attempts' errors or `subscriptions list`.
# Then a server with TLS (a throwaway CA) and a user/password: tls://user@
# with the password as the secret delivers, a wrong password does not.
# Then an NKey user (a key pair made with openssl): the right seed delivers,
# another key's seed does not.
. "$(dirname "$0")/lib.sh"
command -v nats-server >/dev/null || { echo "SKIP: no nats-server"; exit 77; }
. "${PGEVENTD_SRCDIR:?}/scripts/nats-server.sh"
NS=${PGEVENTD_BUILDDIR:?}/tests/nats_stream
GOOD=t82-good-token-Zq81x
BAD=t82-bad-token-Wm40p
trap 'nats_stop; cleanup' EXIT
NATS_EXTRA="--auth $GOOD" nats_start || die "nats-server"
HOSTPORT=${PGEVENTD_TEST_NATS#nats://}
setup_db
"$NS" "nats://$GOOD@$HOSTPORT" create T82 't82.>' || die "create stream"
q "INSERT INTO subscriptions (name, url, secret, event_types) VALUES
   ('good', 'nats://$HOSTPORT/t82.good.{event_type}?auth=token', '$GOOD', '[\"*\"]'),
   ('bad', 'nats://$HOSTPORT/t82.bad.{event_type}?auth=token', '$BAD', '[\"*\"]')" >/dev/null
conf "$T/a.conf" 'relay = { event_types = ["*"]; breaker = { failures = 0; }; backoff = { base_ms = 200; cap_ms = 500; }; };' \
	'log = { level = "debug"; };'
insert_events job.created 20 "jsonb_build_object('n', generate_series)"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'good' AND d.status = 'delivered'" 20 60 || die "the good token did not deliver"
assert_eq "$("$NS" "nats://$GOOD@$HOSTPORT" wait T82 20 10)" 20 "the stream holds the 20 messages"
wait_for "SELECT count(*) >= 40 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'bad'" t 30 || fail "the bad token's deliveries were not retried"
assert_eq "$(q "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'bad' AND d.status = 'delivered'")" 0 "the bad token delivers nothing"
err=$(q "SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'bad' ORDER BY a.id DESC LIMIT 1")
assert_match "$err" "cannot connect to nats://127\.0\.0\.1:[0-9]+: Authentication Violation .check the user, token" "the error names the server and the authorisation failure: $err"
kill -0 "$DPID" 2>/dev/null && log "ok: the daemon is alive" || fail "the daemon died"
P=("$BIN" -c "$T/a.conf")
"${P[@]}" subscriptions list >"$T/list.out" 2>&1
stop_daemon $DPID; assert_eq $? 0 "exit 0"
assert_eq "$(cat "$T"/*.log "$T/list.out" | grep -c -e "$GOOD" -e "$BAD")" 0 "no token in the log or the list"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts WHERE error LIKE '%$GOOD%' OR error LIKE '%$BAD%'")" 0 "no token in delivery_attempts.error"

# ---- TLS and user/password ---------------------------------------------------
nats_stop
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
	-subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1 || die "openssl"
PW=t82-password-Ks93d
NATS_EXTRA="--tls --tlscert $T/cert.pem --tlskey $T/key.pem --user alice --pass $PW" nats_start || die "nats-server with TLS"
HOSTPORT=${PGEVENTD_TEST_NATS#nats://}
NATS_STREAM_CA=$T/cert.pem "$NS" "tls://alice:$PW@$HOSTPORT" create T82TLS 't82tls.>' || die "create stream over TLS"
q "TRUNCATE events, deliveries, delivery_attempts, subscriptions CASCADE" >/dev/null
q "INSERT INTO subscriptions (name, url, secret, event_types) VALUES
   ('tls', 'tls://alice@$HOSTPORT/t82tls.{event_type}?ca=$T/cert.pem', '$PW', '[\"*\"]'),
   ('tlsbad', 'tls://alice@$HOSTPORT/t82tls.{event_type}?ca=$T/cert.pem', 'wrong-$PW', '[\"*\"]'),
   ('plain', 'nats://alice@$HOSTPORT/t82tls.{event_type}', '$PW', '[\"*\"]')" >/dev/null
insert_events job.created 10 "jsonb_build_object('n', generate_series)"
start_daemon b "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'tls' AND d.status = 'delivered'" 10 60 || fail "TLS with user/password did not deliver"
assert_eq "$(NATS_STREAM_CA=$T/cert.pem "$NS" "tls://alice:$PW@$HOSTPORT" wait T82TLS 10 10)" 10 "the TLS stream holds the 10 messages"
wait_for "SELECT count(*) > 0 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'tlsbad'" t 30 || fail "no attempt with the wrong password"
assert_match "$(q "SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'tlsbad' ORDER BY a.id DESC LIMIT 1")" "cannot connect to tls://127\.0\.0\.1:[0-9]+: " "a wrong password is a connection error"
assert_eq "$(q "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name IN ('tlsbad', 'plain') AND d.status = 'delivered'")" 0 "a wrong password, or no TLS where the server wants it, delivers nothing"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
assert_eq "$(cat "$T/b.log" | grep -c -e "$PW")" 0 "no password in the log"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts WHERE error LIKE '%$PW%'")" 0 "no password in delivery_attempts.error"

# ---- NKey ---------------------------------------------------------------------
# A server whose users are an NKey (public key in its config) and an admin
# with a password (for the test's stream tool). nkey=<public key>&seed=<file>
# delivers; the same public key with another key's seed does not, with a
# clear error; no seed reaches the log or delivery_attempts.error.
nats_stop
nkey_pair() { # prints "public seed": an Ed25519 key from openssl, in the NATS encoding
	python3 - <<'PY'
import base64, subprocess
def crc16(data):  # CRC-16/XMODEM, as nkeys use
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc
def enc(raw):
    c = crc16(raw)
    return base64.b32encode(raw + bytes([c & 0xFF, c >> 8])).decode().rstrip("=")
run = lambda args, data=None: subprocess.run(args, input=data, capture_output=True, check=True).stdout
priv = run(["openssl", "genpkey", "-algorithm", "ed25519", "-outform", "DER"])
pub = run(["openssl", "pkey", "-inform", "DER", "-pubout", "-outform", "DER"], priv)
user, seed = 20 << 3, 18 << 3  # prefixes: U (user public key), S (seed)
print(enc(bytes([user]) + pub[-32:]), enc(bytes([seed | (user >> 5), (user & 31) << 3]) + priv[-32:]))
PY
}
read -r NKPUB NKSEED <<<"$(nkey_pair)"
read -r _ OTHERSEED <<<"$(nkey_pair)"
assert_match "$NKPUB $NKSEED" "^U[A-Z2-7]{55} SU[A-Z2-7]{56}$" "an NKey pair: a user public key and its seed"
printf '%s\n' "$NKSEED" >"$T/user.nk"
printf '%s\n' "$OTHERSEED" >"$T/other.nk"
ADMIN=t82-admin-Pq27v
cat >"$T/nkey.conf" <<CONF
authorization {
  users = [
    { user: admin, password: "$ADMIN" }
    { nkey: "$NKPUB" }
  ]
}
CONF
NATS_EXTRA="-c $T/nkey.conf" nats_start || die "nats-server with an NKey user"
HOSTPORT=${PGEVENTD_TEST_NATS#nats://}
"$NS" "nats://admin:$ADMIN@$HOSTPORT" create T82NK 't82nk.>' 't82nkbad.>' || die "create stream as admin"
q "TRUNCATE events, deliveries, delivery_attempts, subscriptions CASCADE" >/dev/null
for s in nk:user nkbad:other nkmissing:missing; do
	out=$("$BIN" -c "$T/migrate.conf" subscriptions add --name "${s%:*}" --events '*' \
		--url "nats://$HOSTPORT/t82${s%:*}.{event_type}?nkey=$NKPUB&seed=$T/${s#*:}.nk" 2>&1)
	assert_eq "$?" 0 "subscriptions add ${s%:*} (an NKey and its seed file, no secret): $out"
done
insert_events job.created 10 "jsonb_build_object('n', generate_series)"
start_daemon c "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'nk' AND d.status = 'delivered'" 10 60 || fail "the NKey user did not deliver"
assert_eq "$("$NS" "nats://admin:$ADMIN@$HOSTPORT" wait T82NK 10 10)" 10 "the stream holds the NKey user's 10 messages"
wait_for "SELECT count(*) > 0 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'nkbad'" t 30 || fail "no attempt with the wrong seed"
err=$(q "SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'nkbad' ORDER BY a.id DESC LIMIT 1")
assert_match "$err" "cannot connect to nats://127\.0\.0\.1:[0-9]+: Authentication Violation .check the user, token, NKey" "a seed that does not match the key is an authorisation error: $err"
assert_eq "$(q "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name IN ('nkbad', 'nkmissing') AND d.status = 'delivered'")" 0 "the wrong seed, or none, delivers nothing"
wait_for "SELECT count(*) > 0 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'nkmissing'" t 30 || fail "no attempt with a missing seed file"
err=$(q "SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'nkmissing' ORDER BY a.id DESC LIMIT 1")
assert_match "$err" "^cannot read seed=$T/missing\.nk: No such file or directory$" "a missing seed file is named in the error: $err"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
assert_eq "$(cat "$T"/*.log | grep -c -e "$NKSEED" -e "$OTHERSEED")" 0 "no seed in the log"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts WHERE error LIKE '%$NKSEED%' OR error LIKE '%$OTHERSEED%'")" 0 "no seed in delivery_attempts.error"
finish

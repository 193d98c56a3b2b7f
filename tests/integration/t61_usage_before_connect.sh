#!/usr/bin/env bash
# Arguments are checked before connecting: every command given a
# malformed argument exits 64 (usage) with the database unreachable, not
# 69. The database is a closed port; like every integration test it runs
# only under scripts/test (the package build runs none).
. "$(dirname "$0")/lib.sh"
conf "$T/down.conf" 'database = { conninfo = "host=127.0.0.1 port=1 connect_timeout=2"; };'
UUID=6f1f0f7e-9c1e-4f1e-8f1e-1f1e1f1e1f1e

expect() { # code args...
	local want=$1 rc
	shift
	"$BIN" -c "$T/down.conf" "$@" >"$T/out" 2>&1
	rc=$?
	if [ "$rc" = "$want" ]; then
		log "ok: $want: $*"
	else
		fail "exit $rc, want $want: $* ($(head -c 200 "$T/out" | tr '\n' ' '))"
	fi
}

# The database really is unreachable: well-formed commands exit 69.
expect 69 show "$UUID"
expect 69 subscriptions list
expect 69 deliveries retry "$UUID"
expect 69 status

expect 64 show not-a-uuid
expect 64 show "${UUID}0"
expect 64 show "{$UUID"
expect 64 show
expect 64 show "$UUID" extra
expect 64 show "$UUID" --bogus
expect 64 replay
expect 64 replay --id not-a-uuid
expect 64 replay --id "$UUID" not-a-uuid
expect 64 replay --type job.x --since ''
expect 64 replay --type job.x --until ''
expect 64 replay --bogus
expect 64 dead-letters
expect 64 dead-letters frobnicate
expect 64 dead-letters list --limit 0
expect 64 dead-letters list --limit many
expect 64 dead-letters list --since ''
expect 64 dead-letters list extra
expect 64 status extra
expect 64 status --bogus
expect 64 subscriptions
expect 64 subscriptions frobnicate
expect 64 subscriptions list extra
expect 64 subscriptions list --bogus
expect 64 subscriptions add --name x
expect 64 subscriptions add --url http://127.0.0.1/x
expect 64 subscriptions add --name x --url ftp://127.0.0.1/x
expect 64 subscriptions add --name x --url http://127.0.0.1/x --timeout-ms 5
expect 64 subscriptions add --name x --url http://127.0.0.1/x --max-attempts 0
expect 64 subscriptions add --name x --url http://127.0.0.1/x --max-attempts x
expect 64 subscriptions add --name x --url http://127.0.0.1/x --scheme rot13
expect 64 subscriptions add --name x --url http://127.0.0.1/x --header 'Host: x'
expect 64 subscriptions add --name x --url http://127.0.0.1/x extra
expect 65 subscriptions add --name x --url http://127.0.0.1/x --events ','
expect 65 subscriptions add --name x --url http://127.0.0.1/x --secret short
expect 64 subscriptions disable
expect 64 subscriptions disable a b
expect 64 subscriptions disable a --bogus
expect 64 subscriptions enable a --reason x
expect 64 subscriptions rotate-secret
expect 64 subscriptions rotate-secret a --bogus
expect 64 deliveries
expect 64 deliveries frobnicate
expect 64 deliveries list --status nope
expect 64 deliveries list --limit 0
expect 64 deliveries list "$UUID"
expect 64 deliveries list --since yesterday
expect 64 deliveries retry
expect 64 deliveries retry not-a-uuid
expect 64 deliveries retry "$UUID" --subscription a
expect 64 deliveries retry --subscription a --status failed
expect 64 migrate extra
expect 64 run extra
expect 64 run --bogus
finish

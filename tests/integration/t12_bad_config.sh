#!/usr/bin/env bash
# Bad config: exit 78 naming file, line and key, before touching the database.
. "$(dirname "$0")/lib.sh"
printf 'workers = 2;\n# a comment\nbatch_size = -1;\n' >"$T/bad.conf"
out=$("$BIN" --check-config -c "$T/bad.conf" 2>&1); rc=$?
assert_eq $rc 78 "--check-config: exit 78"
assert_eq "$out" "pgeventd: configuration error: $T/bad.conf:3: batch_size: must be between 1 and 10000, got -1" "message names file, line and key"

# run: same exit and message, and no connection attempt (the database is unreachable)
out=$(PGHOST=/nonexistent PGPORT=1 timeout 10 "$BIN" -c "$T/bad.conf" run 2>&1); rc=$?
assert_eq $rc 78 "run with a bad config: exit 78"
assert_match "$out" "bad.conf:3: batch_size: " "run names the line and key"
assert_eq "$(printf '%s' "$out" | grep -c 'database')" 0 "no database access attempted"

printf 'workers = 2;\nlog = { levle = "info"; };\n' >"$T/typo.conf"
out=$("$BIN" -c "$T/typo.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "typo in a key: exit 78"
assert_match "$out" "typo.conf:2: log.levle: unknown key" "unknown key named"

printf 'workers = 2;\nbatch_size = ;\n' >"$T/syntax.conf"
out=$("$BIN" --check-config -c "$T/syntax.conf" 2>&1); rc=$?
assert_eq $rc 78 "syntax error: exit 78"
assert_match "$out" "syntax.conf:2: syntax error" "syntax error names the line"

out=$("$BIN" --check-config -c "$T/missing.conf" 2>&1); rc=$?
assert_eq $rc 78 "missing file: exit 78"

out=$("$BIN" --check-config -c "$PGEVENTD_SRCDIR/etc/pgeventd.conf" 2>&1); rc=$?
assert_eq $rc 0 "the shipped etc/pgeventd.conf is valid"
assert_match "$out" "^configuration OK" "says configuration OK"

# An integer past 32 bits is refused, quoted as written (libconfig 1.5 wraps it).
printf 'workers = 4294967297;\n' >"$T/wrap.conf"
out=$("$BIN" -c "$T/wrap.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "workers = 4294967297: exit 78"
assert_eq "$out" "pgeventd: configuration error: $T/wrap.conf:1: workers: must be between 1 and 256, got 4294967297" "oversized value quoted as written"
printf 'batch_size = 99999999999;\n' >"$T/wrap2.conf"
out=$("$BIN" -c "$T/wrap2.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "batch_size = 99999999999: exit 78"
assert_match "$out" "wrap2.conf:1: batch_size: must be between 1 and 10000, got 99999999999$" "not the wrapped 1215752191"

# A directory or a FIFO is not a configuration file; the FIFO must not hang.
mkdir "$T/conf.d"
out=$("$BIN" -c "$T/conf.d" check-config 2>&1); rc=$?
assert_eq $rc 78 "a directory: exit 78"
assert_match "$out" "conf.d: cannot read the file: it is a directory, not a regular file" "says it is a directory"
mkfifo "$T/fifo.conf"
out=$(timeout 10 "$BIN" -c "$T/fifo.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "a FIFO: exit 78 at once"
assert_match "$out" "fifo.conf: cannot read the file: it is a FIFO, not a regular file" "says it is a FIFO"

# A missing '}': libconfig's words once, and where the block was opened.
printf 'workers = 2;\nbackoff = {\n  base_ms = 10;\nbatch_size = 5;\n' >"$T/brace.conf"
out=$("$BIN" -c "$T/brace.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "missing brace: exit 78"
assert_eq "$out" "pgeventd: configuration error: $T/brace.conf:5: syntax error: unclosed '{' of \"backoff\" opened at line 2" "unclosed brace named with its line"

# health.listen: what run could never bind is refused by check-config.
for addr in 127.0.0.1:83763 999.1.1.1:18228; do
	printf 'workers = 2;\nhealth = { listen = "%s"; };\n' "$addr" >"$T/listen.conf"
	out=$("$BIN" -c "$T/listen.conf" check-config 2>&1); rc=$?
	assert_eq $rc 78 "health.listen = $addr: exit 78"
	assert_match "$out" "listen.conf:2: health.listen: " "health.listen = $addr: file, line and key"
done

# A dbname that is itself a URI with a password: libpq sends it to the
# server as it is, and the server quotes it back. The password must show
# neither in check-config --print nor in the daemon's log or a command's error.
conf "$T/uri.conf" 'database = { conninfo = "dbname=postgresql://app:Pw0nly4T12@localhost/no_such_db"; };'
out=$("$BIN" -c "$T/uri.conf" check-config --print 2>&1); rc=$?
assert_eq $rc 0 "dbname URI: check-config passes"
assert_match "$out" "^database.conninfo .*dbname=postgresql://app:\*\*\*@localhost/no_such_db" "dbname URI: password printed as ***"
assert_eq "$(printf '%s' "$out" | grep -c Pw0nly4T12)" 0 "dbname URI: password not printed"
start_daemon uri "$T/uri.conf"
wait_log uri 'database unavailable' 15 || fail "the daemon did not report the unavailable database"
stop_daemon "$DPID"
assert_match "$(cat "$T/uri.log")" 'does not exist' "the server's error is logged"
assert_eq "$(grep -c Pw0nly4T12 "$T/uri.log")" 0 "the password is not in the daemon's log"
assert_match "$(cat "$T/uri.log")" 'postgresql://app:\*\*\*@localhost/no_such_db' "the log shows it as ***"
out=$("$BIN" -c "$T/uri.conf" status 2>&1); rc=$?
assert_eq $rc 69 "status with the missing database: exit 69"
assert_match "$out" 'cannot connect to the database: .*does not exist' "status says why"
assert_eq "$(printf '%s' "$out" | grep -c Pw0nly4T12)" 0 "status does not print the password"

# Global options may follow the command too.
out=$("$BIN" check-config -c "$T/bad.conf" 2>&1); rc=$?
assert_eq $rc 78 "check-config -c FILE: the file is read (exit 78)"
assert_match "$out" "bad.conf:3: batch_size: " "check-config -c FILE: its error"
printf 'workers = 3;\n' >"$T/good.conf"
out=$("$BIN" check-config --print --config="$T/good.conf" 2>&1); rc=$?
assert_eq $rc 0 "check-config --print --config=FILE: exit 0"
assert_match "$out" "^workers +restart +3 " "check-config --print --config=FILE: the file's value"
out=$(PGHOST=/nonexistent PGPORT=1 timeout 10 "$BIN" run --once -c "$T/bad.conf" 2>&1); rc=$?
assert_eq $rc 78 "run --once -c FILE: exit 78"
out=$("$BIN" status -c "$T/bad.conf" 2>&1); rc=$?
assert_eq $rc 78 "status -c FILE: exit 78"
out=$("$BIN" check-config -V 2>&1); rc=$?
assert_eq "$rc $out" "0 pgeventd $("$BIN" version | cut -d' ' -f2)" "check-config -V prints the version"

out=$("$BIN" frobnicate 2>&1); rc=$?
assert_eq $rc 64 "unknown command: exit 64"
finish

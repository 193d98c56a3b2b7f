#!/bin/sh
# check_manpages.sh -- the man pages name every key and command the binary
# has, and nothing else, and format without a warning.
#
#   - every key of `pgeventd check-config --print` is a `.TP` / `.B key`
#     paragraph under KEYS in doc/pgeventd.conf.5, whose next line says
#     "; reloadable." or "; restart." as the binary's reload/restart column
#     does; every key documented there exists in the binary;
#   - every command of `pgeventd help` is a `.TP` entry under COMMANDS in
#     doc/pgeventd.8, and every entry there is a command;
#   - both pages pass man-db's lint (as lintian runs it) and groff -ww,
#     whichever is installed; without either the lint part is skipped.
#
# Environment (set by make check): PGEVENTD_BIN, PGEVENTD_SRCDIR.
# Exit 0 pass, 1 fail, 77 skip.

bin=${PGEVENTD_BIN:-}
srcdir=${PGEVENTD_SRCDIR:-$(dirname "$0")/..}
conf5=$srcdir/doc/pgeventd.conf.5
man8=$srcdir/doc/pgeventd.8
failed=0
# Counted for the closing "# assertions: P passed, F failed" line.
oks=0
fails=0

ok() {
	echo "ok: $*"
	oks=$((oks + 1))
}
fail() {
	echo "FAIL: $*"
	failed=1
	fails=$((fails + 1))
}

if [ -z "$bin" ] || [ ! -x "$bin" ]; then
	echo "skip: PGEVENTD_BIN is not an executable (${bin:-unset})"
	exit 77
fi
for page in "$conf5" "$man8"; do
	if [ ! -r "$page" ]; then
		echo "FAIL: cannot read $page"
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_manpages.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

# ---- configuration keys ---------------------------------------------------

# An empty file: built-in defaults, whatever is installed in sysconfdir.
: >"$tmp/empty.conf"
PGEVENTD_CONFIG=$tmp/empty.conf "$bin" check-config --print >"$tmp/print" 2>"$tmp/print.err"
rc=$?
if [ "$rc" -ne 0 ]; then
	fail "pgeventd check-config --print exited $rc: $(cat "$tmp/print.err")"
fi
# The keys end at the first blank line (the event types routed follow).
awk '!NF { exit } { print $1, $2 }' "$tmp/print" >"$tmp/bin-keys"
if [ ! -s "$tmp/bin-keys" ]; then
	fail "pgeventd check-config --print listed no key"
fi
if awk '$2 != "reload" && $2 != "restart" { bad = 1; print "  " $0 } END { exit !bad }' \
	"$tmp/bin-keys" >"$tmp/bad"; then
	fail "check-config --print: second column is not reload or restart:"
	cat "$tmp/bad"
fi

# Documented keys: under .SH KEYS, a `.B key` right after `.TP`; the line
# after it gives the type and ends its first sentence with "; reloadable."
# or "; restart.". Printed as: key reload|restart|none|both.
awk '
/^\.SH[ \t]/ {
	sec = $0; sub(/^\.SH[ \t]+/, "", sec); gsub(/"/, "", sec)
	inkeys = (sec == "KEYS"); tp = 0; key = ""; next
}
!inkeys { next }
key != "" {
	r = index($0, "; reloadable.") > 0
	s = index($0, "; restart.") > 0
	print key, (r && s) ? "both" : r ? "reload" : s ? "restart" : "none"
	key = ""; next
}
/^\.TP([ \t]|$)/ { tp = 1; next }
tp && /^\.B[ \t]/ { key = $2; gsub(/"/, "", key); gsub(/\\-/, "-", key); tp = 0; next }
{ tp = 0 }
END { if (key != "") print key, "none" }
' "$conf5" >"$tmp/doc-keys"

if [ ! -s "$tmp/doc-keys" ]; then
	fail "pgeventd.conf.5 documents no key under KEYS"
fi
awk '{ print $1 }' "$tmp/doc-keys" | sort | uniq -d >"$tmp/dups"
while read -r key; do
	fail "pgeventd.conf.5 documents $key more than once"
done <"$tmp/dups"

while read -r key mode; do
	doc=$(awk -v k="$key" '$1 == k { print $2; exit }' "$tmp/doc-keys")
	if [ -z "$doc" ]; then
		fail "pgeventd.conf.5 does not document $key ($mode)"
	elif [ "$doc" = none ] || [ "$doc" = both ]; then
		fail "pgeventd.conf.5: $key: the line after .B $key must end its first sentence with \"; reloadable.\" or \"; restart.\""
	elif [ "$doc" != "$mode" ]; then
		fail "pgeventd.conf.5: $key: the page says $doc, the binary says $mode"
	else
		ok "pgeventd.conf.5: $key ($mode)"
	fi
done <"$tmp/bin-keys"

[ -s "$tmp/bin-keys" ] && while read -r key doc; do
	if ! awk -v k="$key" '$1 == k { found = 1 } END { exit !found }' "$tmp/bin-keys"; then
		fail "pgeventd.conf.5 documents $key, which the binary does not have"
	fi
done <"$tmp/doc-keys"

# ---- commands -------------------------------------------------------------

"$bin" help >"$tmp/help" 2>"$tmp/help.err"
rc=$?
if [ "$rc" -ne 0 ]; then
	fail "pgeventd help exited $rc: $(cat "$tmp/help.err")"
fi
awk '/^commands:/ { c = 1; next } c && !NF { exit } c { print $1 }' "$tmp/help" >"$tmp/bin-cmds"
if [ ! -s "$tmp/bin-cmds" ]; then
	fail "pgeventd help listed no command"
fi

# Documented commands: under .SH COMMANDS, the first word of each `.TP` tag
# at the outer level (.RS/.RE nest a command's own options).
awk '
/^\.SH[ \t]/ {
	sec = $0; sub(/^\.SH[ \t]+/, "", sec); gsub(/"/, "", sec)
	incmds = (sec == "COMMANDS"); tp = 0; depth = 0; next
}
!incmds { next }
/^\.RS([ \t]|$)/ { depth++; tp = 0; next }
/^\.RE([ \t]|$)/ { if (depth > 0) depth--; tp = 0; next }
/^\.TP([ \t]|$)/ { tp = (depth == 0); next }
tp {
	tp = 0; line = $0
	if (line ~ /^\.\\"/) next
	sub(/^\.[A-Za-z]+[ \t]*/, "", line)
	gsub(/\\f(\[[^]]*\]|\(..|.)/, "", line)
	gsub(/\\-/, "-", line); gsub(/\\&/, "", line); gsub(/"/, "", line)
	split(line, w, /[ \t]+/)
	if (w[1] != "") print w[1]
}
' "$man8" | sort -u >"$tmp/doc-cmds"

while read -r cmd; do
	if grep -qxF "$cmd" "$tmp/doc-cmds"; then
		ok "pgeventd.8: command $cmd"
	else
		fail "pgeventd.8 does not document the command $cmd (a .TP entry under COMMANDS)"
	fi
done <"$tmp/bin-cmds"
[ -s "$tmp/bin-cmds" ] && while read -r cmd; do
	if ! grep -qxF "$cmd" "$tmp/bin-cmds"; then
		fail "pgeventd.8 documents the command $cmd, which pgeventd help does not list"
	fi
done <"$tmp/doc-cmds"

# ---- lint -----------------------------------------------------------------

# A linter is used only if it is quiet on a page known to be clean (so that
# a man(1) without man-db's options, say, is not taken for a failure).
printf '.TH PROBE 1\n.SH NAME\nprobe \\- a clean page\n' >"$tmp/probe.1"
# Each prints its warnings (standard error) and returns the tool's status.
lint_man() {
	LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$1" \
		>/dev/null 2>"$tmp/lint.err"
	rc=$?
	cat "$tmp/lint.err"
	return $rc
}
lint_groff() {
	groff -man -ww -z "$1" >/dev/null 2>"$tmp/lint.err"
	rc=$?
	cat "$tmp/lint.err"
	return $rc
}
linters=
if command -v man >/dev/null 2>&1; then
	if out=$(lint_man "$tmp/probe.1") && [ -z "$out" ]; then
		linters="$linters man"
	else
		echo "note: man(1) cannot lint here (${out:-no output}); not used"
	fi
fi
if command -v groff >/dev/null 2>&1; then
	if out=$(lint_groff "$tmp/probe.1") && [ -z "$out" ]; then
		linters="$linters groff"
	else
		echo "note: groff cannot lint here (${out:-no output}); not used"
	fi
fi
if [ -z "$linters" ]; then
	echo "skip: lint: neither man-db's man nor groff is installed (groff-base, man-db)"
else
	for page in "$man8" "$conf5"; do
		name=$(basename "$page")
		for l in $linters; do
			if out=$("lint_$l" "$page") && [ -z "$out" ]; then
				ok "lint ($l): $name"
			else
				fail "lint ($l): $name:"
				printf '%s\n' "${out:-exit status non-zero}" | sed 's/^/  /'
			fi
		done
	done
fi

echo "# assertions: $oks passed, $fails failed"
if [ "$failed" -ne 0 ]; then
	echo "FAIL: the man pages do not match the binary (see above)"
	exit 1
fi
echo "ok: the man pages match the binary"
exit 0

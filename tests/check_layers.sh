#!/usr/bin/env bash
# check_layers.sh -- the layers point down, checked on the built objects
# with nm: a handler (handlers/) uses nothing of the daemon (src/) but the
# handler API of handlers/handler.h, and the daemon's modules reach the
# packs only through the registry (handlers/registry.h). src/main.c, which
# hands the binary's pack list to the registry, is the one place allowed
# to name it.
set -u
B=${PGEVENTD_BUILDDIR:?}
command -v nm >/dev/null || { echo "SKIP: nm missing"; exit 77; }
cd "$B" || exit 1
ls handlers/*.o src/*.o >/dev/null 2>&1 || { echo "SKIP: objects not built here"; exit 77; }

defined() { nm --defined-only -g "$@" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u; }
undefined() { nm -u "$@" 2>/dev/null | awk '{ print $NF }' | sort -u; }

handler_objs=$(find handlers -name '*.o' | sort)
src_objs=$(find src -name '*.o' ! -name 'main.o' ! -name '*-main.o' | sort)
api='^(handler_exec|handler_error|handler_retry|handler_json_type|handler_text_length|handler_log)$'
registry='^(registry_[a-z_]+)$'

fails=0 checks=0
defined $src_objs >"$B/layers.src"
defined $handler_objs >"$B/layers.handlers"
for o in $handler_objs; do
	checks=$((checks + 1))
	bad=$(undefined "$o" | comm -12 - "$B/layers.src" | grep -Ev "$api")
	if [ -n "$bad" ]; then
		echo "FAIL: $o uses daemon internals: $(echo $bad)"
		fails=$((fails + 1))
	else
		echo "ok: $o uses only the handler API of the daemon"
	fi
done
for o in $src_objs; do
	checks=$((checks + 1))
	bad=$(undefined "$o" | comm -12 - "$B/layers.handlers" | grep -Ev "$registry")
	if [ -n "$bad" ]; then
		echo "FAIL: $o reaches into handlers/ past the registry: $(echo $bad)"
		fails=$((fails + 1))
	else
		echo "ok: $o knows packs only through the registry"
	fi
done
# No header of handlers/ includes one of src/.
checks=$((checks + 1))
inc=$(grep -ln '#include "src/' "${PGEVENTD_SRCDIR:?}"/handlers/*.[ch] "${PGEVENTD_SRCDIR}"/handlers/*/*.[ch] 2>/dev/null)
if [ -n "$inc" ]; then
	echo "FAIL: handlers/ files include src/ headers: $(echo $inc)"
	fails=$((fails + 1))
else
	echo "ok: no file of handlers/ includes a header of src/"
fi
rm -f "$B/layers.src" "$B/layers.handlers"
echo "# assertions: $((checks - fails)) passed, $fails failed"
[ "$fails" = 0 ]

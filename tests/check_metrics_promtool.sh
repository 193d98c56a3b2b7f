#!/usr/bin/env bash
# metrics_render output passes `promtool check metrics` (parser and linter) without a word.
# CHECK_METRICS_SAMPLE names the built tests/metrics_sample; skips (77) without promtool.
# promtool 2.x prints nothing and exits 0 on success, exits 3 with lint
# problems on stdout, exits 1 with parse errors on stderr: any output fails.
set -u

if ! command -v promtool >/dev/null 2>&1; then
	echo "promtool not found (Debian: apt-get install prometheus): skipped"
	exit 77
fi
sample=${CHECK_METRICS_SAMPLE:-}
if [ -z "$sample" ] || [ ! -x "$sample" ]; then
	echo "CHECK_METRICS_SAMPLE must name the metrics_sample binary (got '$sample')"
	exit 99
fi
T=$(mktemp -d /tmp/pgeventd-promtool.XXXXXX) || exit 99
trap 'rm -rf "$T"' EXIT

# The linter must be able to fail: a counter without _total and HELP is a lint problem.
printf '# TYPE bad counter\nbad 1\n' | promtool check metrics >"$T/canary" 2>&1
if [ $? = 0 ] || [ ! -s "$T/canary" ]; then
	echo "promtool accepted a known-bad exposition; cannot trust it"
	exit 99
fi

if ! "$sample" >"$T/metrics"; then
	echo "$sample failed"
	exit 1
fi
for name in pgeventd_events_total pgeventd_event_duration_seconds pgeventd_batch_size \
	pgeventd_queue_pending pgeventd_build_info process_start_time_seconds; do
	if ! grep -q "^# TYPE $name " "$T/metrics"; then
		echo "sample lacks $name"
		exit 1
	fi
done

promtool check metrics <"$T/metrics" >"$T/out" 2>&1
rc=$?
if [ $rc != 0 ] || [ -s "$T/out" ]; then
	echo "promtool check metrics: exit $rc"
	cat "$T/out"
	echo "--- input:"
	cat "$T/metrics"
	exit 1
fi
echo "promtool check metrics: $(grep -vc '^#' "$T/metrics") samples, no problems"
exit 0

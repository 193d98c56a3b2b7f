#!/bin/sh
# The shipped alert rules: promtool check rules, then the rule unit tests
# in tests/prometheus/. Skips (77) without promtool (Debian: prometheus).
command -v promtool >/dev/null 2>&1 || { echo "SKIP: promtool not installed"; exit 77; }
src=${PGEVENTD_SRCDIR:-$(dirname "$0")/..}
promtool check rules "$src/etc/prometheus/pgeventd-alerts.yml" || exit 1
promtool test rules "$src/tests/prometheus/pgeventd-alerts.test.yml" || exit 1
# The dashboard must at least be valid JSON with panels over our metrics.
for m in pgeventd_events_total pgeventd_event_lag_seconds_bucket \
	pgeventd_event_duration_seconds_bucket pgeventd_queue_pending pgeventd_dead_letters \
	pgeventd_db_connected; do
	grep -q "$m" "$src/etc/grafana/pgeventd-dashboard.json" || {
		echo "dashboard has no panel over $m"
		exit 1
	}
done

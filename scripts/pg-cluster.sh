# pg-cluster.sh -- start and stop a throwaway PostgreSQL cluster.
# Sourced by scripts/test, scripts/demo and scripts/bench:
#   pgc_start        initdb into a temp dir, start on a free port, export PG*
#                    PGC_HONEST=1 pgc_start keeps PostgreSQL's durable defaults
#                    (fsync, synchronous_commit, full_page_writes on) for
#                    benchmarks; without it the tests trade them for speed.
#                    PGC_EXTRA="-c name=value ..." adds server settings.
#   pgc_stop         stop the server and delete the directory
#   pgc_restart      restart it (tests of reconnection)
#   pgc_pause        stop the server, keeping the cluster (tests of outages)
#   pgc_resume       start it again on the same port
# The cluster listens on 127.0.0.1 and on a Unix socket in its directory,
# trusts local connections, and is torn down by the caller's EXIT trap.

pgc_bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/initdb" ] && { echo "$d"; return 0; }
	done
	command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
	echo "pg-cluster: no PostgreSQL server binaries (apt-get install postgresql)" >&2
	return 1
}

# Run a command as the cluster's owner: initdb refuses to run as root.
pgc_as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# The settings chosen at pgc_start, kept in PGC_SETTINGS so that pgc_resume
# starts the same server even when the caller's environment has changed.
pgc_settings() {
	local s="-c listen_addresses=127.0.0.1 -c max_connections=200"
	[ "${PGC_HONEST:-}" = 1 ] ||
		s="$s -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	echo "$s${PGC_EXTRA:+ $PGC_EXTRA}"
}

pgc_opts() { # port
	echo "-p $1 -k $PGC_DIR ${PGC_SETTINGS:-$(pgc_settings)}"
}

pgc_start() {
	PGC_BIN=$(pgc_bindir) || return 1
	PGC_SETTINGS=$(pgc_settings)
	PGC_DIR=$(mktemp -d /tmp/pgeventd-pg.XXXXXX) || return 1
	[ "$(id -u)" = 0 ] && chown postgres: "$PGC_DIR"
	PGC_USER=$([ "$(id -u)" = 0 ] && echo postgres || id -un)
	pgc_as_owner "$PGC_BIN/initdb" -D "$PGC_DIR/data" -U "$PGC_USER" -A trust \
		-E UTF8 --no-locale >"$PGC_DIR/initdb.log" 2>&1 || {
		cat "$PGC_DIR/initdb.log" >&2
		return 1
	}
	local try port
	for try in 1 2 3 4 5 6 7 8; do
		port=$((20000 + (RANDOM % 20000)))
		if pgc_as_owner "$PGC_BIN/pg_ctl" -D "$PGC_DIR/data" -l "$PGC_DIR/server.log" -w -t 60 \
			-o "$(pgc_opts "$port")" start >/dev/null 2>&1; then
			PGC_PORT=$port
			export PGHOST=$PGC_DIR PGPORT=$port PGUSER=$PGC_USER PGDATABASE=postgres
			export PGC_DIR PGC_BIN PGC_PORT PGC_SETTINGS
			return 0
		fi
		tail -n 3 "$PGC_DIR/server.log" >&2
	done
	echo "pg-cluster: could not start PostgreSQL" >&2
	return 1
}

pgc_restart() {
	pgc_as_owner "$PGC_BIN/pg_ctl" -D "$PGC_DIR/data" -l "$PGC_DIR/server.log" -w -t 60 \
		-m fast restart >/dev/null
}

pgc_pause() {
	pgc_as_owner "$PGC_BIN/pg_ctl" -D "$PGC_DIR/data" -m fast -w -t 60 stop >/dev/null
}

pgc_resume() {
	pgc_as_owner "$PGC_BIN/pg_ctl" -D "$PGC_DIR/data" -l "$PGC_DIR/server.log" -w -t 60 \
		-o "$(pgc_opts "$PGC_PORT")" start >/dev/null
}

pgc_stop() {
	[ -n "${PGC_DIR:-}" ] && [ -d "$PGC_DIR" ] || return 0
	pgc_as_owner "$PGC_BIN/pg_ctl" -D "$PGC_DIR/data" -m immediate -w stop >/dev/null 2>&1
	rm -rf "$PGC_DIR"
	PGC_DIR=
}

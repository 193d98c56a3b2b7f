# deps.sh -- install the Debian packages pgeventd builds and runs with.
# Sourced by scripts/test, scripts/demo and scripts/bench:
#   deps_install [extra packages...]
# Installs whatever is missing with apt-get (as root); as another user it
# names the missing packages and fails.

PGEVENTD_BUILD_DEPS=(build-essential autoconf automake libtool pkgconf libpq-dev
	libjansson-dev libcurl4-openssl-dev libconfig-dev check libssl-dev libsystemd-dev
	libnats-dev librdkafka-dev postgresql nats-server)

deps_install() {
	local p missing=()
	for p in "${PGEVENTD_BUILD_DEPS[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages: ${missing[*]} (run as root to install them)" >&2
		return 1
	fi
	echo "== installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configure (once) and build pgeventd in DIR with the given configure args.
build_in() { # dir configure-args...
	local dir=$1 top
	shift
	top=$(pwd)
	[ -x "$top/configure" ] || autoreconf -fi >/dev/null 2>&1 || return 1
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ]; then
		(cd "$dir" && "$top/configure" -q "$@" >/dev/null) || return 1
	fi
	make -C "$dir" -j"$(nproc 2>/dev/null || echo 2)" -s >/dev/null
}

#!/usr/bin/env bash
# scripts/get-pg.sh MAJOR: obtain PostgreSQL MAJOR for building and testing
# kis_fdw, and print where it is, as one line:
#   package PG_CONFIG    this machine's own package of that major
#   source PG_CONFIG     built here from a source package (no pg_cron)
#   chroot ROOT          a Debian chroot holding that major's packages (build
#                        and test inside it: its libc is newer than ours)
#
# Where each major comes from (only Debian's archive is reachable; measured
# in docs/pg-versions.md):
#   the machine's own   its packages (postgresql-NN, postgresql-server-dev-NN)
#   17                  trixie's binary packages, in a debootstrap chroot
#   18                  sid's source package, built from the upstream tarball
# Everything is cached outside the checkout, under $KIS_PG_CACHE (default
# /var/cache/kis_fdw as root, else ~/.cache/kis_fdw), so only the first run
# on a machine pays, whichever clone asks; a source build's folder is keyed
# by major and configure flags.  A lock file keeps two runs from building the
# same major at once.
#
# A source build is made with --enable-cassert --enable-debug: the suite runs
# under assertions there (docs/testing.md).
#
# apt is called with a private configuration (its own sources.list, lists
# and cache under the cache folder); the machine's apt sources are only read,
# to learn which Debian archive this machine uses.  Needs root the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:?usage: scripts/get-pg.sh MAJOR}"
if [ -z "${KIS_PG_CACHE:-}" ]; then
    if [ "$(id -u)" = 0 ]; then KIS_PG_CACHE=/var/cache/kis_fdw; else KIS_PG_CACHE="$HOME/.cache/kis_fdw"; fi
fi
CACHE="$KIS_PG_CACHE"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

log() { echo "get-pg: $*" >&2; }

# The Debian archive this machine's apt is configured with (for its own
# release), read at run time so that no host name is written down here.
debian_archive() {
    local codename uri
    codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
    uri="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
        awk -v r="$codename" '$2 == r { print $1; exit }')"
    [ -n "$uri" ] || { log "no Debian archive for $codename in this machine's apt sources"; exit 1; }
    echo "${uri%/}"
}

system_major() {
    # apt-cache knows nothing before the first apt-get update on a fresh machine
    ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q >&2
    apt-cache show "postgresql-server-dev-$1" >/dev/null 2>&1
}

# apt with a private sources.list (deb-src of SUITE), lists and cache
private_apt() {
    local dir="$CACHE/apt"
    "apt-get" -q -o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
        -o APT::Get::List-Cleanup=0 "$@"
}

prepare_private_apt() {
    local dir="$CACHE/apt" suite="$1"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_archive) $suite main" \
        >"$dir/sources.list"
    private_apt update >"$dir/update.log" 2>&1 || { cat "$dir/update.log" >&2; exit 1; }
}

install_host_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# PostgreSQL from a source package of SUITE, built into $CACHE/MAJOR
CONFIGURE_FLAGS="--without-icu --without-readline --with-openssl --enable-cassert --enable-debug"
from_source() {
    local suite="$1" key prefix build tarball
    key="$(echo "$CONFIGURE_FLAGS" | sha1sum | cut -c1-8)"
    prefix="$CACHE/$major-$key" build="$CACHE/build-$major-$key"
    if [ -x "$prefix/bin/pg_config" ] && [ -f "$prefix/.complete" ]; then
        echo "source $prefix/bin/pg_config"
        return
    fi
    install_host_packages bison flex gcc make libssl-dev zlib1g-dev pkg-config bzip2
    log "PostgreSQL $major from $suite's source package, $CONFIGURE_FLAGS (about 7 minutes on 2 cores)"
    prepare_private_apt "$suite"
    rm -rf "$build" "$prefix"
    mkdir -p "$build"
    (cd "$build" && private_apt source --download-only "postgresql-$major" >"$build/source.log" 2>&1) ||
        { cat "$build/source.log" >&2; exit 1; }
    tarball="$(ls "$build"/postgresql-"$major"_*.orig.tar.* | head -1)"
    tar -C "$build" -xf "$tarball"
    (
        cd "$build"/postgresql-"$major"*/
        # PostgreSQL's makefiles generate headers only at MAKELEVEL 0; make
        # test calls this from inside make
        unset MAKELEVEL MAKEFLAGS MFLAGS
        # shellcheck disable=SC2086  # the flags, one per word
        ./configure --prefix="$prefix" $CONFIGURE_FLAGS \
            >"$build/configure.log" 2>&1 || { tail -30 "$build/configure.log" >&2; exit 1; }
        make -j"$(nproc)" >"$build/make.log" 2>&1 || { tail -40 "$build/make.log" >&2; exit 1; }
        make install >"$build/install.log" 2>&1 || { tail -20 "$build/install.log" >&2; exit 1; }
    )
    rm -rf "$build"
    touch "$prefix/.complete"
    log "installed $("$prefix/bin/pg_config" --version) in $prefix"
    echo "source $prefix/bin/pg_config"
}

# A chroot of SUITE with postgresql-MAJOR and what kis_fdw's tests need
from_chroot() {
    local suite="$1" root
    root="$CACHE/$suite"
    # install-deps.sh runs each time (quick when nothing is missing): a
    # cached chroot then gains what a newer tree needs
    if [ -f "$root/.complete-$major" ]; then
        cp scripts/install-deps.sh "$root/tmp/install-deps.sh"
        chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bash /tmp/install-deps.sh "$major" \
            >"$CACHE/install-$suite-$major.log" 2>&1 || { tail -30 "$CACHE/install-$suite-$major.log" >&2; exit 1; }
        echo "chroot $root"
        return
    fi
    install_host_packages debootstrap
    if [ ! -f "$root/.bootstrapped" ]; then
        log "a $suite chroot for PostgreSQL $major (about 3 minutes)"
        rm -rf "$root"
        debootstrap --variant=minbase "$suite" "$root" "$(debian_archive)" >"$CACHE/debootstrap-$suite.log" 2>&1 ||
            { tail -30 "$CACHE/debootstrap-$suite.log" >&2; exit 1; }
        # packages must not start services, nor make a cluster of their own
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod 755 "$root/usr/sbin/policy-rc.d"
        mkdir -p "$root/etc/postgresql-common"
        echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
        touch "$root/.bootstrapped"
    fi
    cp scripts/install-deps.sh "$root/tmp/install-deps.sh"
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bash /tmp/install-deps.sh "$major" \
        >"$CACHE/install-$suite-$major.log" 2>&1 || { tail -30 "$CACHE/install-$suite-$major.log" >&2; exit 1; }
    touch "$root/.complete-$major"
    echo "chroot $root"
}

exec 9>"$CACHE/$major.lock"
flock 9
if system_major "$major"; then
    bash scripts/install-deps.sh "$major" >&2
    echo "package /usr/lib/postgresql/$major/bin/pg_config"
else
    case "$major" in
    17) from_chroot trixie ;;
    18) from_source sid ;;
    *)  log "PostgreSQL $major: not in this machine's Debian release, and no other source is known" \
            "(17: trixie, 18: sid; 14 and 16 are in no reachable Debian suite)"
        exit 1 ;;
    esac
fi

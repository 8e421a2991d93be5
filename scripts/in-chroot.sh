#!/usr/bin/env bash
# scripts/in-chroot.sh ROOT [VAR=VALUE ...] COMMAND...: run COMMAND in the
# source tree inside the chroot ROOT (made by scripts/get-pg.sh), as root.
# The tree is bind-mounted at /kis_fdw, with /proc and /dev; the mounts live in
# a private mount namespace of this command, so they go away with it, also
# when it is killed.  The environment is fresh: VAR=VALUE words, CI and the
# KIS_* test selections are passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(cd "${1:?usage: scripts/in-chroot.sh ROOT COMMAND...}" && pwd)"
shift
envs=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
for v in CI KIS_ONLY KIS_BEHAVIOUR KIS_WERROR; do
    [ -n "${!v+x}" ] && envs+=("$v=${!v}")
done
while [ $# -gt 0 ] && [[ "$1" == *=* ]]; do
    envs+=("$1")
    shift
done
exec unshare --mount --propagation private bash -c '
    set -e
    root="$1" src="$2"
    shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mkdir -p "$root/kis_fdw"
    mount --bind "$src" "$root/kis_fdw"
    exec chroot "$root" /usr/bin/env -i "$@"
' in-chroot "$root" "$PWD" "${envs[@]}" bash -c 'cd /kis_fdw && exec "$@"' run "$@"

#!/usr/bin/env bash
# Install fusevault for every user of this machine (run as root, from a checkout):
# a virtualenv in /opt/fusevault with fusevault in it, readable and runnable by
# everyone, and /usr/local/bin/fusevault pointing into it.  Run it again to
# upgrade.  What contrib/systemd/fusevault-relay.service runs, and what the
# users of a shared mount (README: "One mount for several Linux users") run.
#
#   scripts/install.sh [--prefix DIR] [--bindir DIR] [--python PYTHON] [--deps-from SITE]
#
#   --prefix DIR      the virtualenv ($FUSEVAULT_PREFIX, default /opt/fusevault)
#   --bindir DIR      where the `fusevault` link goes ($FUSEVAULT_BINDIR, default /usr/local/bin)
#   --python PYTHON   the interpreter; every user must be able to run it, so not one
#                     under /root ($PYTHON, default /usr/bin/python3)
#   --deps-from SITE  use the dependencies in the site-packages folder SITE (of a
#                     virtualenv of the same Python version, readable by everyone)
#                     instead of installing them from PyPI: a quicker install, for tests
#
# $FUSEVAULT_SYSTEM_PACKAGES=no skips installing fuse3 and the compilers pyfuse3 needs.
set -euo pipefail
umask 022  # whatever the caller's umask: everything readable by every user, writable by root only

src="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${FUSEVAULT_PREFIX:-/opt/fusevault}"
bindir="${FUSEVAULT_BINDIR:-/usr/local/bin}"
python="${PYTHON:-/usr/bin/python3}"
deps_from=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --bindir) bindir="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --deps-from) deps_from="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ "${FUSEVAULT_SYSTEM_PACKAGES:-yes}" != no ] && command -v dpkg-query >/dev/null; then
    missing=()
    for p in fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

if [ ! -x "$prefix/bin/python" ]; then
    "$python" -m venv "$prefix"
fi
site="$("$prefix/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
pip=("$prefix/bin/python" -m pip install -q --disable-pip-version-check --upgrade)
if [ -n "$deps_from" ]; then
    echo "$(cd "$deps_from" && pwd)" > "$site/fusevault-deps.pth"
    pip+=(--no-deps)
fi

# Build from a copy: pip would leave build/ and *.egg-info in the checkout, owned by root.
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp -r "$src/pyproject.toml" "$src/README.md" "$src/fusevault" "$build/"
"${pip[@]}" "$build"

chmod -R go-w,a+rX "$prefix"  # also what an older install under another umask left
mkdir -p "$bindir"
ln -sfn "$prefix/bin/fusevault" "$bindir/fusevault"

# Can someone else run it?  (An interpreter under /root, say, would not do.)
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
    if ! (cd / && setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups \
            env -i PATH=/usr/bin:/bin "$bindir/fusevault" --version >/dev/null); then
        echo "install.sh: other users cannot run $bindir/fusevault (is $python one they may run?)" >&2
        exit 1
    fi
fi
echo "installed $("$bindir/fusevault" --version) in $prefix; $bindir/fusevault runs it"

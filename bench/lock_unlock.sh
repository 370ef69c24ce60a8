#!/bin/sh
# How long `fusevault lock` and `fusevault unlock` take with 10,100 entries
# the kernel knows (100 folders of 100 small files, then `ls -R`).
# Usage: bench/lock_unlock.sh [--real-kdf]   (default: the test KDF, to time the mount's part)
set -e
[ "$1" = "--real-kdf" ] || export FUSEVAULT_INSECURE_FAST_KDF=1
export FUSEVAULT_PASSPHRASE="${FUSEVAULT_PASSPHRASE:-bench passphrase}"
F="${FUSEVAULT:-fusevault}"
work=$(mktemp -d /tmp/fvlock.XXXXXX)
mkdir "$work/m"
trap '"$F" unmount "$work/m" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$F" init "$work/v" --user bench >/dev/null
"$F" mount "$work/v" "$work/m" >/dev/null
python3 - "$work/m" <<'PY'
import os, sys
for d in range(100):
    os.mkdir(f"{sys.argv[1]}/d{d}")
    for i in range(100):
        with open(f"{sys.argv[1]}/d{d}/f{i}", "w") as f:
            f.write("x" * 100)
PY
/usr/bin/time -f "status (CLI start) %e s" "$F" status >/dev/null
for run in 1 2 3; do
    ls -R "$work/m" >/dev/null
    /usr/bin/time -f "lock %e s" "$F" lock "$work/m" >/dev/null
    /usr/bin/time -f "unlock %e s" "$F" unlock "$work/m" >/dev/null
done

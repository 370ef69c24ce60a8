#!/bin/sh
# What the authenticated vault costs: `create 5000 files` and the unlock of a
# vault of 5000 files (mount, which loads and checks every document, then a
# lock and an unlock).  The test KDF unless --real-kdf, to time fusevault's part.
# Usage: bench/unlock_create.sh [--real-kdf]
set -e
[ "$1" = "--real-kdf" ] || export FUSEVAULT_INSECURE_FAST_KDF=1
export FUSEVAULT_PASSPHRASE="${FUSEVAULT_PASSPHRASE:-bench passphrase}"
F="${FUSEVAULT:-fusevault}"
work=$(mktemp -d /tmp/fvtrust.XXXXXX)
mkdir "$work/m"
trap '"$F" unmount "$work/m" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$F" init "$work/v" --user bench >/dev/null
"$F" mount "$work/v" "$work/m" >/dev/null
/usr/bin/time -f "create 5000 x 1 KiB: %e s" python3 - "$work/m" <<'PY'
import os, sys
for d in range(50):
    os.mkdir(f"{sys.argv[1]}/d{d}")
    for i in range(100):
        with open(f"{sys.argv[1]}/d{d}/f{i}", "wb") as f:
            f.write(b"x" * 1024)
PY
"$F" unmount "$work/m" >/dev/null
/usr/bin/time -f "mount (unlock + load of 5050 entries): %e s" "$F" mount "$work/v" "$work/m" >/dev/null
for run in 1 2 3; do
    "$F" lock "$work/m" >/dev/null
    /usr/bin/time -f "unlock %e s" "$F" unlock "$work/m" >/dev/null
done

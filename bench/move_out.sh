#!/usr/bin/env bash
# usage: bench/move_out.sh REPO TAG -> "TAG renames5000_s=.. moveout64M_s=.." : 5000 renames inside a shared folder,
# then a 64 MiB file moved out of it, timed until its re-key is done (the Rotation request gone)
set -eu
repo=$1; tag=$2
w=$(mktemp -d /tmp/mo.XXXX)
export FUSEVAULT_INSECURE_FAST_KDF=1 FUSEVAULT_PASSPHRASE=bench-pass-123456
export FUSEVAULT_STATE_DIR=$w/state FUSEVAULT_RUNTIME_DIR=$w/run FUSEVAULT_CONFIG_DIR=$w/config
export PYTHONPATH=$repo
py=${PYTHON:-$repo/.venv/bin/python}
cd $repo
$py -m fusevault init $w/V </dev/null >/dev/null 2>&1
FUSEVAULT_VAULT=$w/V FUSEVAULT_NEW_PASSPHRASE=bob-pass-123456 FUSEVAULT_PASSPHRASE=bob-pass-123456 $py -m fusevault user add bob --uid 2001 </dev/null >/dev/null 2>&1 || { echo "user add failed"; exit 1; }
mkdir $w/M
$py -m fusevault mount $w/V $w/M </dev/null >/dev/null
mkdir $w/M/docs $w/M/private
$py - "$w/M" <<'PY'
import os, sys
m = sys.argv[1]; data = os.urandom(1024)
for i in range(5000):
    with open(f"{m}/docs/f{i}", "wb") as f:
        f.write(data)
with open(f"{m}/docs/big", "wb") as f:
    f.write(os.urandom(64 << 20))
PY
$py -m fusevault share $w/M/docs --with bob --perm READ >/dev/null
t0=$(date +%s.%N)
$py - "$w/M" <<'PY'
import os, sys
m = sys.argv[1]
for i in range(5000):
    os.rename(f"{m}/docs/f{i}", f"{m}/docs/g{i}")
PY
t1=$(date +%s.%N); k0=$(ls $w/V/users/*/shared 2>/dev/null | grep -c vfkey || true)
mv $w/M/docs/big $w/M/private/big
t2=$(date +%s.%N)
# done when bob holds no key of it and no Rotation request is pending
bob=$(ls $w/V/users | while read u; do [ -d $w/V/users/$u/shared ] && echo $u; done | head -1)
for i in $(seq 1 600); do
  keys=$(ls $w/V/users/*/shared 2>/dev/null | grep -c vfkey || true)
  rot=$(sqlite3 $w/V/store.sqlite "select count(*) from docs where type='Rotation' and deleted=0" 2>/dev/null || echo 1)
  [ "$keys" -lt "$k0" ] && [ "$rot" = 0 ] && break
  sleep 0.1
done
t3=$(date +%s.%N)
echo "$tag renames5000_s=$(echo "$t1-$t0"|bc) mv_s=$(echo "$t2-$t1"|bc) moveout_rekeyed_s=$(echo "$t3-$t2"|bc) keys_left=$keys"
fusermount3 -u $w/M
rm -rf $w

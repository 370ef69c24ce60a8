#!/bin/bash
# usage: bench/cold_read.sh CODE_DIR (a checkout: its fusevault is run) -> wall and mount-process CPU seconds of a cold sequential read of a 200 MiB file
set -e
CODE=$1
W=$(mktemp -d /var/tmp/t22c-XXXX)
export PYTHONPATH=$CODE FUSEVAULT_INSECURE_FAST_KDF=1 FUSEVAULT_PASSPHRASE="bench pass" \
  FUSEVAULT_RUNTIME_DIR=$W/run FUSEVAULT_STATE_DIR=$W/state FUSEVAULT_CONFIG_DIR=$W/config
PY=/work/main/.venv/bin/python
mkdir -p $W/mnt
$PY -m fusevault init $W/vault --user bench >/dev/null
$PY -m fusevault mount $W/vault $W/mnt >/dev/null
dd if=/dev/urandom of=$W/mnt/big.bin bs=1M count=200 conv=fsync status=none
$PY -m fusevault unmount $W/mnt >/dev/null
cpu() { awk '{print ($14+$15)/100}' /proc/$1/stat; }
for i in 1 2 3; do
  $PY -m fusevault mount $W/vault $W/mnt >/dev/null
  pid=$(pgrep -f "fusevault mount $W/vault" | head -1)
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  c0=$(cpu $pid); s=$(date +%s.%N); dd if=$W/mnt/big.bin of=/dev/null bs=1M status=none; e=$(date +%s.%N); c1=$(cpu $pid)
  echo "run $i: wall $(echo "$e - $s" | bc) s, mount CPU $(echo "$c1 - $c0" | bc) s"
  $PY -m fusevault unmount $W/mnt >/dev/null
done
rm -rf $W

#!/usr/bin/env bash
# Quick start, first command: install everything and mount a demo vault.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

vault="${FUSEVAULT_DEMO_VAULT:-$HOME/fusevault-demo/vault}"
mnt="${FUSEVAULT_DEMO_MOUNT:-$HOME/fusevault-demo/drive}"
mkdir -p "$mnt"
if [ -z "${FUSEVAULT_PASSPHRASE:-}" ] && [ ! -t 0 ]; then
    # No terminal to ask on: make one up and show it once (it is never stored).
    FUSEVAULT_PASSPHRASE="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))')"
    export FUSEVAULT_PASSPHRASE
    echo "demo passphrase (write it down, it is not stored anywhere): $FUSEVAULT_PASSPHRASE"
fi
[ -f "$vault/vault.json" ] || .venv/bin/fusevault init "$vault"
.venv/bin/fusevault mount "$vault" "$mnt"
echo "The encrypted vault is $vault; your plaintext drive is mounted at $mnt."
echo "Stop it with: $(pwd)/.venv/bin/fusevault unmount $mnt"

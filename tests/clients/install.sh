#!/usr/bin/env bash
# Installs the real coding clients the Python tests drive (Codex CLI and Claude Code, the
# versions pinned in package-lock.json) into tests/clients/node_modules (gitignored), once:
# a stamp of the lock file skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v npm >/dev/null; then
  echo "install.sh: npm not found: the Codex CLI and Claude Code tests will be skipped" >&2
  exit 0
fi
stamp=node_modules/.meshgate-lock
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "install.sh: installing Codex CLI and Claude Code into $PWD/node_modules" >&2
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"

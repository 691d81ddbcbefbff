#!/usr/bin/env bash
# Runs the Python SDK tests: a venv at <repo>/.venv with the pinned requirements, the
# gateway and mock binaries (debug), then pytest. Extra arguments go to pytest, e.g.
#   tests/python/run.sh -k anthropic -x
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
py="$venv/bin/python"
req="$root/tests/python/requirements.txt"

if [[ ! -x "$py" ]]; then
  echo "run.sh: creating $venv" >&2
  if ! python3 -m venv "$venv"; then
    echo "run.sh: 'python3 -m venv' failed (on Debian/Ubuntu install python3-venv)" >&2
    exit 1
  fi
fi

# Install only when the requirements (or the interpreter) changed since the last install.
stamp="$venv/.meshgate-requirements"
want="$("$py" - "$req" <<'PY'
import hashlib, sys
h = hashlib.sha256(open(sys.argv[1], "rb").read())
h.update(sys.version.encode())
print(h.hexdigest())
PY
)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "run.sh: installing $req" >&2
  "$py" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
fi

# The real Codex CLI and Claude Code for test_devcmds.py. A failed install (no npm, the
# registry unreachable) is a warning, not the end of the run: those tests skip, saying why.
if ! bash "$root/tests/clients/install.sh"; then
  echo "run.sh: WARNING: tests/clients/install.sh failed: the Codex CLI and Claude Code tests will be skipped" >&2
  echo "tests/clients/install.sh exited with an error" >"$root/tests/clients/install-failed"
fi

# test_proxy.py drives `meshgate proxy`'s live view in tmux.
if ! command -v tmux >/dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "run.sh: installing tmux" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
  else
    echo "run.sh: tmux is missing (install it: the proxy's live view is tested in tmux)" >&2
  fi
fi

cd "$root"
cargo build --quiet -p meshgate -p meshgate-mock
target="$(cargo metadata --format-version 1 --no-deps \
  | "$py" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
export MESHGATE_TEST_GATEWAY_BIN="$target/debug/meshgate"
export MESHGATE_TEST_MOCK_BIN="$target/debug/meshgate-mock"

exec "$py" -m pytest tests/python -q "$@"

#!/usr/bin/env bash
# Runs the README's "Projects, credentials and money" examples against a real gateway in
# front of the mock provider, and checks what each step should do. Binaries: target/debug
# (build them first: scripts/test.sh does). Every process it starts is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${MESHGATE_BIN_DIR:-$ROOT/target/debug}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "readme-walkthrough: FAILED: $*" >&2; exit 1; }

# Waits for a line like "... listening on http://ADDR" in a log file; prints the URL.
listening_url() {
    local log="$1"
    for _ in $(seq 1 300); do
        if url="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1)"; then
            [ -n "$url" ] && { echo "${url#listening on }"; return; }
        fi
        sleep 0.1
    done
    cat "$log" >&2
    fail "no 'listening on' line in $log"
}

"$BIN/meshgate-mock" --listen 127.0.0.1:0 >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
MOCK="$(listening_url "$WORK/mock.log")"

export MESHGATE_ADMIN_TOKEN="mga_walkthrough_$$"
MESHGATE_OPENAI_BASE_URL="$MOCK/v1" MESHGATE_ANTHROPIC_BASE_URL="$MOCK" \
OPENAI_API_KEY=sk-mock-openai ANTHROPIC_API_KEY=sk-ant-mock MESHGATE_LOG=debug \
    "$BIN/meshgate" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/gw.log" 2>&1 &
PIDS+=($!)
export MESHGATE_URL="$(listening_url "$WORK/gw.log")"
mg() { "$BIN/meshgate" "$@"; }
chat() { # chat KEY MODEL -> HTTP status
    curl -s -o "$WORK/out.json" -w '%{http_code}' "$MESHGATE_URL/openai/v1/chat/completions" \
        -H "Authorization: Bearer $1" -H 'content-type: application/json' \
        -d "{\"model\": \"$2\", \"max_tokens\": 20, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}"
}
expect() { [ "$1" = "$2" ] || { cat "$WORK/out.json" >&2 || true; fail "$3: got $1, expected $2"; }; }
cd "$WORK"

# Projects and keys.
mg projects create --id acme --name Acme --allowed-model 'openai/gpt-4o*' --allowed-model 'anthropic/*' >/dev/null
mg keys create --name ci --project acme --rpm 60 --tpm 200000 --budget-daily 5 --allowed-model openai/gpt-4o-mini >keys.out
KEY_ID="$(sed -n 's/^created key \([^ ]*\) .*/\1/p' keys.out)"
SECRET="$(sed -n 's/^secret (shown once): //p' keys.out)"
[ -n "$KEY_ID" ] && [ -n "$SECRET" ] || fail "keys create printed no id or secret"
expect "$(chat "$SECRET" gpt-4o-mini)" 200 "an allowed model"
expect "$(chat "$SECRET" gpt-4o)" 403 "a model the key does not allow"
mg keys update "$KEY_ID" --budget-daily 10 --rpm none >/dev/null
mg keys rotate "$KEY_ID" --grace 3600 >rotate.out
NEW_SECRET="$(sed -n 's/^new secret (shown once): //p' rotate.out)"
expect "$(chat "$NEW_SECRET" gpt-4o-mini)" 200 "the rotated secret"
expect "$(chat "$SECRET" gpt-4o-mini)" 200 "the old secret during its grace"
mg keys revoke "$KEY_ID" >/dev/null
expect "$(chat "$NEW_SECRET" gpt-4o-mini)" 401 "a revoked key"

# Rate limits: the third call in the minute is refused, and says when to come back.
TIGHT="$(mg keys create --name tight --rpm 2 --quiet)"
expect "$(chat "$TIGHT" gpt-4o-mini)" 200 "first call under --rpm 2"
expect "$(chat "$TIGHT" gpt-4o-mini)" 200 "second call under --rpm 2"
curl -s -D "$WORK/429.headers" -o "$WORK/out.json" "$MESHGATE_URL/v1/chat/completions" \
    -H "Authorization: Bearer $TIGHT" -H 'content-type: application/json' \
    -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
head -1 "$WORK/429.headers" | grep -q ' 429' || fail "the third call was not refused with 429"
grep -qi '^retry-after: [0-9]' "$WORK/429.headers" || fail "no retry-after on the 429"
grep -qi '^x-ratelimit-remaining-requests: 0' "$WORK/429.headers" || fail "no x-ratelimit headers"

# Budgets under concurrency: 60 calls from 16 clients on a $0.0002 budget.
BURST="$(mg keys create --name burst --budget-total 0.0002 --quiet)"
seq 60 | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' \
    "$MESHGATE_URL/v1/chat/completions" -H "Authorization: Bearer $BURST" \
    -H 'content-type: application/json' \
    -d '{"model": "gpt-4o-mini", "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]}' \
    | sort | uniq -c >burst.out
grep -q ' 200$' burst.out && grep -q ' 402$' burst.out || fail "expected 200s then 402s: $(cat burst.out)"
curl -sf "$MESHGATE_URL/v1/me" -H "Authorization: Bearer $BURST" >me.json
python3 - me.json <<'PY' || fail "the budget was overspent"
import json, sys
from decimal import Decimal
budgets = json.load(open(sys.argv[1]))["budgets"]
total = [b for b in budgets if Decimal(b["limit_usd"]) == Decimal("0.0002")]
assert total and all(Decimal(b["spent_usd"]) + Decimal(b["in_flight_usd"]) <= Decimal(b["limit_usd"]) for b in total), budgets
assert any(Decimal(b["spent_usd"]) > 0 for b in total), budgets
PY

# Credits and markup.
mg projects update acme --credits-enforced true --markup 10 --provider-markup anthropic=15 >/dev/null
KEY2="$(mg keys create --name app --project acme --quiet)"
expect "$(chat "$KEY2" gpt-4o-mini)" 402 "no credits yet"
mg credits add --project acme --kind purchase --amount 25 --note "invoice 42" >/dev/null
expect "$(chat "$KEY2" gpt-4o-mini)" 200 "after a purchase"
mg credits list --project acme | grep -q usage_debit || fail "no usage debit in the credit ledger"

# Participant tokens.
mg token keys create --project acme --secret-file acme-signing.key >signing.out
SIGNING_KEY_ID="$(sed -n 's/^signing key \([^ ]*\) .*/\1/p' signing.out)"
cat >token-spec.yaml <<'YAML'
version: v1
kind: ParticipantToken
identity: ci-bot
room: nightly
expires_in: 1h
api:
  llm:
    models: ["openai/gpt-4o-mini", "anthropic/*"]
YAML
LOCAL_TOKEN="$(mg token mint --spec token-spec.yaml --project acme \
    --signing-key-id "$SIGNING_KEY_ID" --signing-key-file acme-signing.key)"
expect "$(chat "$LOCAL_TOKEN" gpt-4o-mini)" 200 "a token minted locally"
GATEWAY_TOKEN="$(mg token mint --spec token-spec.yaml --project acme)"
expect "$(chat "$GATEWAY_TOKEN" gpt-4o-mini)" 200 "a token minted by the gateway"
expect "$(chat "$GATEWAY_TOKEN" gpt-4o)" 403 "a model outside the token's grant"

# Delegations.
curl -s "$MESHGATE_URL/v1/delegations" -H "Authorization: Bearer $KEY2" \
    -H 'content-type: application/json' \
    -d '{"max_budget_usd": "0.50", "models": ["openai/gpt-4o-mini"], "ttl_seconds": 3600}' >delegation.json
DELEGATION="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' delegation.json)"
expect "$(chat "$DELEGATION" gpt-4o-mini)" 200 "a delegation as the API key"

# Annotations.
curl -s -o /dev/null "$MESHGATE_URL/openai/v1/chat/completions" -H "Authorization: Bearer $KEY2" \
    -H 'Meshgate-Annotation-Team: search' -H 'content-type: application/json' \
    -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
mg usage --project acme --group-by annotation:team | grep -q search || fail "no annotation group"
mg usage --project acme --annotation team=search --events | grep -q gpt-4o-mini \
    || fail "no annotated event"

# Bring your own key (the mock accepts only its own key, so the call shows which was used).
ACME_OPENAI_KEY=sk-not-the-mock mg providers set --project acme --provider openai --api-key-env ACME_OPENAI_KEY >/dev/null
expect "$(chat "$KEY2" gpt-4o-mini)" 401 "the project's own (wrong) provider key"
mg providers list --project acme | grep -q sk-not-the-mock && fail "a provider key was shown"

# What a caller sees, and the audit log.
curl -sf "$MESHGATE_URL/v1/me" -H "Authorization: Bearer $KEY2" | grep -q '"project_id":"acme"' \
    || fail "/v1/me"
mg audit --project acme | grep -q key.rotated || fail "no key.rotated audit event"
curl -sf "$MESHGATE_URL/admin/v1/openapi.json" | grep -q '/admin/v1/projects' || fail "openapi"
grep -rq "$SECRET" "$WORK/gw.log" && fail "a key secret reached the log"
grep -rq "sk-not-the-mock" "$WORK/gw.log" && fail "a project's provider key reached the log"
grep -rqa "sk-not-the-mock" "$WORK/data" && fail "a project's provider key is stored in clear"

echo "readme-walkthrough: every README example ran as documented"

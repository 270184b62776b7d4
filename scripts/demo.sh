#!/usr/bin/env bash
# The demo: the real Envoy with the nhi-guard filter and policies/open-banking.json in front of an
# echo upstream, on 127.0.0.1. Prints ready-to-paste curl lines with fresh demo tokens, then waits
# (Ctrl-C stops everything). `--check` runs those lines itself, checks each answer, and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
NHI_GUARD_SETUP_WASM_BINDGEN=0 source scripts/setup.sh
CHECK=0; [ "${1:-}" = "--check" ] && CHECK=1

PORT=10000; ADMIN=9901; UPSTREAM=8081; MTLS=10443; FEED=8089
for p in $PORT $ADMIN $UPSTREAM $MTLS $FEED; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p on 127.0.0.1 is busy (envoy/envoy.yaml uses 10000, 10443, 9901 and 8081; envoy/feed.json 8089)" >&2; exit 1
  fi
done

echo "demo: building the filter and the CLI"
cargo build --quiet --release --lib --target wasm32-wasip1
cargo build --quiet --bin nhi-guard
CLI=target/debug/nhi-guard
# The example policy carries deliberate governance problems (stale partner access): check shows them.
$CLI check policies/open-banking.json || true

mkdir -p target/demo
# The mTLS listener's CA, server and client certificates: generated per run, never committed.
scripts/pki.sh target/demo/pki >/dev/null
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The revocation feed comes from the feed service (envoy/feed.json: SQLite under target/demo/feed,
# fresh each run, since an offboarding is final); its API and push secrets are made up per run.
# The upstream serves the JWKS of the bank's internal STS (its keys are not in the policy: the poller fetches them).
rm -rf target/demo/feed
export NHI_GUARD_FEED_PARTNER_MGMT_TOKEN=$(openssl rand -hex 24) NHI_GUARD_FEED_CONSENT_TOKEN=$(openssl rand -hex 24)
export NHI_GUARD_FEED_KEYS_TOKEN=$(openssl rand -hex 24) NHI_GUARD_FEED_PUSH_TOKEN=$(openssl rand -hex 24)
$CLI feed --config envoy/feed.json 2>target/demo/feed.log &
pids+=($!)
JWKS=target/demo/sts-jwks.json
$CLI jwks policies/demo-keys/sts-es256.pem:sts-es256 > $JWKS
$CLI upstream --port $UPSTREAM --jwks-file $JWKS 2>target/demo/upstream.log &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$FEED/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$FEED/readyz" >/dev/null || { echo "demo: the feed service did not start; see target/demo/feed.log" >&2; tail -5 target/demo/feed.log >&2; exit 1; }
"$NHI_GUARD_ENVOY" -c envoy/envoy.yaml --concurrency 2 --base-id 7101 -l info \
  --log-path target/demo/envoy.log --file-flush-interval-msec 200 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
# Routes need fresh revocation data and STS tokens need the STS's keys: wait for the poller's first fetches.
for stat in nhi_guard.feed.fetch_ok nhi_guard.jwks.fetch_ok; do
  for _ in $(seq 1 50); do
    curl -fs "http://127.0.0.1:$ADMIN/stats?filter=$stat" | grep -q ': [1-9]' && break
    sleep 0.1
  done
done
sleep 0.2  # workers pick up the poller's data within 100 ms
curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null || { echo "demo: Envoy did not start; see target/demo/envoy.log" >&2; tail -20 target/demo/envoy.log >&2; exit 1; }

ISS=https://auth.bank.example
AUD=https://api.bank.example/open-banking
# Access tokens from the authorization server; customer-8841 is the customer who consented.
mint() { $CLI token --key policies/demo-keys/as-es256.pem --kid as-es256 --iss $ISS --aud $AUD "$@"; }
# Consent artefacts from the bank's consent service (its own issuer and key).
consent() { $CLI consent --key policies/demo-keys/consent-es256.pem --kid consent-es256 --iss https://consent.bank.example --sub customer-8841 "$@"; }
GOOD=$(mint --client moneywise-app --sub customer-8841 --scope "accounts payments")
CC=$(mint --client moneywise-app --scope "accounts payments")
READONLY=$(mint --client moneywise-insights --sub customer-8841 --scope "accounts")
OFFBOARDED=$(mint --client quickloans-app --sub customer-8841 --scope "accounts")
LONG=$(mint --client moneywise-app --sub customer-8841 --scope "accounts" --ttl 86400)
EXPIRED=$(mint --client moneywise-app --sub customer-8841 --scope "accounts" --iat-offset -900 --ttl 300)
BALANCES=$(consent --client moneywise-app --consent-id aac-3f9e --permissions "ReadAccountsBasic ReadBalances")
OTHER_PARTNER=$(consent --client moneywise-insights --consent-id aac-77c1 --permissions "ReadBalances")
QUICKLOANS=$(consent --client quickloans-app --consent-id aac-0b12 --permissions "ReadBalances")
# A workload token from the internal STS, verified with keys from its JWKS endpoint.
sts() { $CLI token --iss https://sts.bank.internal --aud $AUD "$@"; }
LEDGER=$(sts --key policies/demo-keys/sts-es256.pem --kid sts-es256 --client ledger-sync --scope "ledger:read")
# Sender-constrained payment tokens: bound to Moneywise's client certificate (RFC 8705), or to a DPoP key (RFC 9449).
PKI=target/demo/pki
BOUND=$(mint --client moneywise-app --sub customer-8841 --scope payments --bind-cert $PKI/moneywise-app.pem)
$CLI keygen ES256 > target/demo/dpop.pem
DPOP_TOKEN=$(mint --client moneywise-app --sub customer-8841 --scope payments --bind-dpop-key target/demo/dpop.pem)
PROOF=$($CLI dpop --key target/demo/dpop.pem --method POST --url https://api.bank.example/domestic-vrps --token "$DPOP_TOKEN")
PAYMENT=$(mint --client moneywise-app --sub customer-8841 --scope payments)
PAY_CONSENT=$(consent --client moneywise-app --consent-id pdc-5521 --permissions "CreateDomesticPayment")
TLS_URL=https://api.bank.example:$MTLS
tls() { echo "--cacert $PKI/ca.pem --cert $PKI/$1.pem --key $PKI/$1.key --resolve api.bank.example:$MTLS:127.0.0.1"; }
URL=http://127.0.0.1:$PORT

# expected status | expected reason (or x-nhi-route for 200) | what it shows | curl arguments
scenarios=(
  "200|balances|machine authority and the customer's consent both allow: balances|-H 'Authorization: Bearer $GOOD' -H 'x-consent: $BALANCES' $URL/accounts/22289/balances"
  "200|balances|spoofed x-nhi-* headers are replaced by verified ones|-H 'Authorization: Bearer $GOOD' -H 'x-consent: $BALANCES' -H 'x-nhi-client: internal-admin' $URL/accounts/22289/balances"
  "403|consent_permission_missing|a balances consent used on transactions|-H 'Authorization: Bearer $GOOD' -H 'x-consent: $BALANCES' $URL/accounts/22289/transactions"
  "403|consent_client_mismatch|a consent granted to another partner app|-H 'Authorization: Bearer $GOOD' -H 'x-consent: $OTHER_PARTNER' $URL/accounts/22289/balances"
  "403|partner_offboarded|a fine consent, but the partner was offboarded|-H 'Authorization: Bearer $OFFBOARDED' -H 'x-consent: $QUICKLOANS' $URL/accounts/22289/balances"
  "403|consent_missing|a valid machine token and no consent|-H 'Authorization: Bearer $GOOD' $URL/accounts/22289/balances"
  "403|client_credentials_on_customer_route|a client-credentials token on customer data|-H 'Authorization: Bearer $CC' -H 'x-consent: $BALANCES' $URL/accounts/22289/balances"
  "200|account-access-consents-create|a client-credentials token creates a consent resource|-X POST -H 'Authorization: Bearer $CC' $URL/account-access-consents"
  "401|token_missing|no token|$URL/accounts/22289/balances"
  "403|scope_missing|an accounts-only token tries a payment|-X POST -H 'Authorization: Bearer $READONLY' $URL/domestic-payments"
  "401|token_lifetime_too_long|a day-long token on a 10-minute route|-H 'Authorization: Bearer $LONG' $URL/accounts/22289/balances"
  "401|token_expired|an expired token|-H 'Authorization: Bearer $EXPIRED' $URL/accounts"
  "400|token_in_query|a token in the query string|'$URL/accounts?access_token=$GOOD'"
  "403|route_unmatched|a route the policy does not name|-H 'Authorization: Bearer $GOOD' $URL/admin/users"
  "200|ledger-account|a service account's token from the internal STS, keys fetched from its JWKS|-H 'Authorization: Bearer $LEDGER' $URL/internal/ledger/accounts/7"
  "200|domestic-vrps-create|a payment token bound to Moneywise's certificate, over mutual TLS|-X POST $(tls moneywise-app) -H 'Authorization: Bearer $BOUND' -H 'x-consent: $PAY_CONSENT' $TLS_URL/domestic-vrps"
  "401|certificate_binding_mismatch|the same token over another partner app's certificate|-X POST $(tls moneywise-insights) -H 'Authorization: Bearer $BOUND' $TLS_URL/domestic-vrps"
  "401|sender_constraint_required|a plain bearer token on the sender-constrained payments route|-X POST $(tls moneywise-app) -H 'Authorization: Bearer $PAYMENT' $TLS_URL/domestic-vrps"
  "200|statement-runs-create|the statements batch job on its SPIFFE ID alone, no token|-X POST $(tls statements-batch) $TLS_URL/internal/statements/runs"
  "401|workload_unknown|a workload certificate whose SPIFFE ID is not registered|-X POST $(tls unknown-workload) $TLS_URL/internal/statements/runs"
  "200|domestic-vrps-create|a DPoP-bound token with its proof (the proof is single-use and lives 60 s)|-X POST -H 'Authorization: DPoP $DPOP_TOKEN' -H 'DPoP: $PROOF' -H 'x-consent: $PAY_CONSENT' $URL/domestic-vrps"
  "401|dpop_replayed|the same DPoP proof again|-X POST -H 'Authorization: DPoP $DPOP_TOKEN' -H 'DPoP: $PROOF' $URL/domestic-vrps"
  "401|dpop_downgrade|the DPoP-bound token presented as a bearer token|-X POST -H 'Authorization: Bearer $DPOP_TOKEN' $URL/domestic-vrps"
)

echo
echo "nhi-guard demo is up: Envoy on $URL and mutual TLS on $TLS_URL (admin http://127.0.0.1:$ADMIN), upstream echo on :$UPSTREAM, feed service on :$FEED"
echo "Paste any of these (tokens live 5 minutes; rerun the demo for fresh ones):"
failures=0
for s in "${scenarios[@]}"; do
  IFS='|' read -r status reason what args <<<"$s"
  echo
  echo "# $what -> $status $reason"
  echo "curl -s -i $args"
  if [ $CHECK = 1 ]; then
    out=$(eval "curl -s -i $args")
    got_status=$(printf '%s' "$out" | head -1 | awk '{print $2}')
    body=$(printf '%s' "$out" | sed -n '/^\r$/,$p' | tail -n +2)
    if [ "$status" = 200 ]; then got=$(printf '%s' "$body" | jq -r '.headers["x-nhi-route"] // empty'); else got=$(printf '%s' "$body" | jq -r '.reason // empty'); fi
    if [ "$got_status" = "$status" ] && [ "$got" = "$reason" ]; then echo "   ok: $got_status $got"; else echo "   FAILED: got $got_status $got"; failures=$((failures+1)); fi
  fi
done
# await OUTCOME CURL_ARGS...: repeats the request for up to 6 s until its reason (or "allowed") is OUTCOME; sets $got.
await() {
  local want=$1; shift
  for _ in $(seq 1 60); do
    got=$(curl -s "$@" | jq -r '.reason // "allowed"')
    [ "$got" = "$want" ] && return 0
    sleep 0.1
  done
  return 0  # the caller compares $got (set -e must not stop the demo here)
}
echo
echo "# Shared Signals: the workforce IdP pushes a RISC account-disabled event for Moneywise Insights' app (RFC 8935):"
SET=$($CLI set --key policies/demo-keys/idp-es256.pem --kid idp-es256 --iss https://idp.bank.example --aud https://feed.bank.example \
  --event risc:account-disabled --subject opaque:moneywise-insights)
PUSH="curl -s -i -X POST -H 'Content-Type: application/secevent+jwt' -H 'Authorization: Bearer $NHI_GUARD_FEED_PUSH_TOKEN' --data '$SET' http://127.0.0.1:$FEED/ssf/push/workforce-idp"
echo "$PUSH"
echo "# -> 202 Accepted; then its balances call (allowed before) gets 403 client_revoked"
if [ $CHECK = 1 ]; then
  before=$(curl -s -H "Authorization: Bearer $READONLY" -H "x-consent: $OTHER_PARTNER" $URL/accounts/22289/balances | jq -r '.reason // "allowed"')
  status=$(eval "$PUSH" | head -1 | awk '{print $2}')
  await client_revoked -H "Authorization: Bearer $READONLY" -H "x-consent: $OTHER_PARTNER" $URL/accounts/22289/balances
  if [ "$before" = allowed ] && [ "$status" = 202 ] && [ "$got" = client_revoked ]; then echo "   ok: SET accepted, client revoked in Envoy"; else echo "   FAILED: SET: before $before, push $status, after $got"; failures=$((failures+1)); fi
fi
echo
echo "# Live revocation: the bank's partner management offboards Moneywise through the feed service's API (no redeploy):"
OFFBOARD="curl -s -X POST -H 'Authorization: Bearer $NHI_GUARD_FEED_PARTNER_MGMT_TOKEN' -d '{\"reason\": \"contract ended\"}' http://127.0.0.1:$FEED/v1/partners/moneywise/offboard"
echo "$OFFBOARD"
echo "# -> within about a second the first line gets 403 partner_offboarded (audit: target/demo/feed/audit/offboarding.jsonl)"
if [ $CHECK = 1 ]; then
  out=$(eval "$OFFBOARD")
  await partner_offboarded -H "Authorization: Bearer $GOOD" -H "x-consent: $BALANCES" $URL/accounts/22289/balances
  if [ "$got" = partner_offboarded ] && [ "$(jq -r .outcome <<<"$out")" = changed ]; then echo "   ok: offboarded through the API, denied in Envoy"; else echo "   FAILED: live revocation: got $got ($out)"; failures=$((failures+1)); fi
fi
echo
echo "# Key rotation at the STS, no redeploy: a token under a new kid is refused until the JWKS lists it."
$CLI keygen ES256 > target/demo/sts-next.pem
ROTATED=$(sts --key target/demo/sts-next.pem --kid sts-next --client ledger-sync --scope "ledger:read")
PUBLISH="$CLI jwks policies/demo-keys/sts-es256.pem:sts-es256 target/demo/sts-next.pem:sts-next > $JWKS.new && mv $JWKS.new $JWKS"
echo "curl -s -H 'Authorization: Bearer $ROTATED' $URL/internal/ledger/accounts/7   # -> 401 kid_unknown"
echo "$PUBLISH"
echo "# -> the unknown kid asked the poller for a refetch (at most one per 2 s): the same curl now gets 200."
if [ $CHECK = 1 ]; then
  got=$(curl -s -H "Authorization: Bearer $ROTATED" $URL/internal/ledger/accounts/7 | jq -r '.reason // "allowed"')
  if [ "$got" = kid_unknown ]; then echo "   ok: unknown kid refused"; else echo "   FAILED: before rotation: got $got"; failures=$((failures+1)); fi
  eval "$PUBLISH"
  await allowed -H "Authorization: Bearer $ROTATED" $URL/internal/ledger/accounts/7
  if [ "$got" = allowed ]; then echo "   ok: rotated key verifies"; else echo "   FAILED: rotation: got $got"; failures=$((failures+1)); fi
fi
echo
echo "# Why was a request refused? The filter's own engine, offline, every check and the fix:"
EXPLAIN="$CLI explain policies/open-banking.json --method POST --path /domestic-payments --token '$READONLY'"
echo "$EXPLAIN"
if [ $CHECK = 1 ]; then
  got=$(eval "$EXPLAIN --format json" | jq -r '.reason')
  if [ "$got" = scope_missing ]; then echo "   ok: explain says scope_missing, as Envoy did"; else echo "   FAILED: explain: got $got"; failures=$((failures+1)); fi
fi
echo
echo "# The governance report for this policy and this demo's traffic (one HTML file, no network):"
REPORT="curl -s http://127.0.0.1:$ADMIN/stats > target/demo/stats.txt && $CLI report policies/open-banking.json --stats target/demo/stats.txt --audit target/demo/audit-token.jsonl -o target/demo/report.html && xdg-open target/demo/report.html"
echo "$REPORT"
if [ $CHECK = 1 ]; then
  eval "${REPORT% && xdg-open *}" 2>/dev/null
  if grep -q 'id="chart-routes"' target/demo/report.html && grep -q 'id="id-moneywise-app"' target/demo/report.html; then
    echo "   ok: target/demo/report.html written"
  else
    echo "   FAILED: report"; failures=$((failures+1))
  fi
fi
echo
echo "Counters: curl -s http://127.0.0.1:$ADMIN/stats?filter=nhi_guard"
echo "Decisions log: grep 'nhi-guard' target/demo/envoy.log"
if [ $CHECK = 1 ]; then
  [ $failures = 0 ] || { echo "demo check: $failures scenario(s) failed" >&2; exit 1; }
  echo "demo check: all ${#scenarios[@]} scenarios behaved as printed"
  exit 0
fi
echo "Ctrl-C to stop."
wait

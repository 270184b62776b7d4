#!/usr/bin/env python3
"""Envoy load benchmark: nhi-guard against Envoy passthrough, jwt_authn+RBAC and two reference
floors, side by side.

Every configuration fronts the same upstream (an Envoy answering with direct_response), takes the
same tokens and the same wrk load, in interleaved rounds (A B C D A B C D ...). Reports req/s,
p50/p99 latency, front-Envoy CPU microseconds per request (and above the empty proxy-wasm filter's,
the floor of any wasm filter), and ratios, as a markdown table. The reference rows: an empty
proxy-wasm filter built in this repository (benches/empty-filter), and ext_authz to an allow-all
service (the floor of any external-authorizer design: OPA, Authorino, a consent service). nhi-guard
runs the config `nhi-guard envoy-config` renders, so what is measured is what ships.

Run through scripts/bench.sh (it builds and installs what this needs). Loopback only; every run is
bounded in time and stops by itself.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = os.environ.get("NHI_GUARD_ENVOY", os.path.join(ROOT, "target/envoy-venv/bin/envoy"))
CLI = os.path.join(ROOT, "target/release/nhi-guard")
WASM = os.environ.get("NHI_GUARD_WASM", os.path.join(ROOT, "target/wasm32-wasip1/release/nhi_guard.wasm"))
EMPTY_WASM = os.path.join(ROOT, "target/empty-filter/wasm32-wasip1/release/nhi_guard_empty_filter.wasm")
EMPTY = "empty proxy-wasm"
EXT_AUTHZ = "ext_authz allow-all"
# Rows that measure a floor, not a guard: they let every token through.
REFERENCES = (EMPTY, EXT_AUTHZ)
# Comma-separated scenario prefixes to run (e.g. "hot"), for profiling one path; empty runs all.
ONLY = [p for p in os.environ.get("NHI_GUARD_BENCH_ONLY", "").split(",") if p]
# Profiling aid: also run nhi-guard without the audit access logs (NHI_GUARD_BENCH_VARIANTS=1), and
# other modules (NHI_GUARD_BENCH_WASM_B=path,path,...: builds of a change, side by side with the current one).
VARIANTS = os.environ.get("NHI_GUARD_BENCH_VARIANTS") == "1"
# Profiling aid: only these configurations (comma-separated names; passthrough always runs).
CONFIGS = [c for c in os.environ.get("NHI_GUARD_BENCH_CONFIGS", "").split(",") if c]
WASM_B = [w for w in os.environ.get("NHI_GUARD_BENCH_WASM_B", "").split(",") if w]
POLICY = os.path.join(ROOT, "policies/open-banking.json")
ISS = "https://auth.bank.example"
AUD = "https://api.bank.example/open-banking"
PATH = "/accounts/22289/balances"
SMOKE = os.environ.get("NHI_GUARD_BENCH_SMOKE") == "1"
DURATION = int(os.environ.get("NHI_GUARD_BENCH_SECONDS", "1" if SMOKE else "8"))
ROUNDS = int(os.environ.get("NHI_GUARD_BENCH_ROUNDS", "1" if SMOKE else "3"))
CONNECTIONS = 16
COLD_TOKENS = 300 if SMOKE else 20000
WORK = tempfile.mkdtemp(prefix="nhi-bench-")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hcm(filters, cluster="upstream"):
    """The listener's HTTP connection manager, identical for every configuration but the filters."""
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "normalize_path": True,
        "merge_slashes": True,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
        "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }


def bootstrap(port, admin, filters=None, upstream_port=None, direct=False):
    if direct:
        chain = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "upstream",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "{\"ok\":true}"}}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        }
    else:
        chain = hcm(filters or [])
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": chain}]}]}],
            "clusters": [] if direct else [{
                "name": "upstream", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}]}]},
            }],
        },
    }
    return cfg


def jwt_authn_filters(jwks, cache, consent_jwks=None):
    """Envoy's native JWT filter plus RBAC requiring the scope: the same token checks nhi-guard does first."""
    provider = {
        "issuer": ISS, "audiences": [AUD],
        "local_jwks": {"inline_string": json.dumps(jwks)},
        "payload_in_metadata": "access_token",
        "normalize_payload_in_metadata": {"space_delimited_claims": ["scope"]},
        "clock_skew_seconds": 30,
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 4096}
    providers = {"bank": provider}
    requires = {"provider_name": "bank"}
    if consent_jwks is not None:
        providers["consent"] = {
            "issuer": "https://consent.bank.example",
            "local_jwks": {"inline_string": json.dumps(consent_jwks)},
            "from_headers": [{"name": "x-consent"}], "payload_in_metadata": "consent",
        }
        requires = {"requires_all": {"requirements": [{"provider_name": "bank"}, {"provider_name": "consent"}]}}
    return [
        {"name": "envoy.filters.http.jwt_authn", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": providers,
            "rules": [{"match": {"prefix": "/"}, "requires": requires}],
        }},
        {"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": {"scope": {
                "permissions": [{"any": True}],
                "principals": [{"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "access_token"}, {"key": "scope"}],
                                             "value": {"list_match": {"one_of": {"string_match": {"exact": "accounts"}}}}}}],
            }}},
        }},
    ]


def empty_wasm_filters():
    """The floor: a proxy-wasm filter whose HTTP context returns Continue, in the same V8 runtime."""
    return [{"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "empty", "root_id": "empty", "failure_policy": "FAIL_CLOSED",
                   "vm_config": {"vm_id": "empty", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": EMPTY_WASM}}}},
    }}]


def ext_authz_filters():
    """ext_authz over HTTP to a service that allows everything (the upstream Envoy's direct_response)."""
    return [{"name": "envoy.filters.http.ext_authz", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "http_service": {"server_uri": {"uri": "http://127.0.0.1/authz", "cluster": "authz", "timeout": "1s"}, "path_prefix": "/authz"},
        "failure_mode_allow": False,
    }}]


def with_authz_cluster(cfg, port):
    cfg["static_resources"]["clusters"].append({
        "name": "authz", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "authz", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    })
    return cfg


def nhi_guard_config(port, admin, upstream_port, feed_port, wasm=WASM, access_logs=True):
    """nhi-guard's Envoy config exactly as `nhi-guard envoy-config` renders it (audit access logs included)."""
    audit = os.path.join(WORK, f"audit-{port}")
    os.makedirs(audit, exist_ok=True)
    text = subprocess.run([CLI, "envoy-config", "--policy", POLICY, "--wasm", wasm, "--listen", str(port), "--admin", str(admin),
                           "--upstream", str(upstream_port), "--feed", str(feed_port), "--audit-dir", audit],
                          check=True, capture_output=True, text=True).stdout
    if not access_logs:
        text = re.sub(r"          access_log:\n(?:          [ -].*\n|            .*\n)+?(?=          route_config:)", "", text)
    return text


def policy_text():
    with open(POLICY) as f:
        return f.read()


class Envoy:
    def __init__(self, name, cfg, concurrency, ports=None):
        """`cfg` is a bootstrap dict, or YAML text with `ports` = (listener, admin)."""
        self.name = name
        if isinstance(cfg, str):
            self.port, self.admin = ports
            path = os.path.join(WORK, f"{name}.yaml")
            with open(path, "w") as f:
                f.write(cfg)
        else:
            self.admin = cfg["admin"]["address"]["socket_address"]["port_value"]
            self.port = cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
            path = os.path.join(WORK, f"{name}.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
        self.log = open(os.path.join(WORK, f"{name}.log"), "w")
        self.proc = subprocess.Popen([ENVOY, "-c", path, "--concurrency", str(concurrency), "--base-id", str(self.port), "-l", "warning"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: {name} exited; see {self.log.name}")
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=1).status == 200:
                    return
            except Exception:
                time.sleep(0.1)
        raise SystemExit(f"bench: {name} not ready")

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def denials(self):
        """Non-zero nhi-guard denial counters by reason, to say why a run failed."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats?filter=nhi_guard.denied", timeout=5).read().decode()
        return [line for line in text.splitlines() if not line.endswith(": 0")]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# Consent carried in the access token (the example policy accepts it): the common case for a bench.
TOKEN_CONSENT = ("--claim", 'consent_id="aac-bench"',
                 "--claim", 'authorization_details=[{"type":"openbanking_account_access","actions":["ReadBalances"]}]')


def wait_for_feed(envoy):
    deadline = time.time() + 20
    while time.time() < deadline:
        stats = urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin}/stats?filter=nhi_guard.feed.fetch_ok", timeout=2).read().decode()
        if re.search(r"fetch_ok: [1-9]", stats):
            return
        time.sleep(0.1)
    raise SystemExit("bench: the revocation feed never loaded")


def mint(key, kid, count, client="moneywise-app", scope="accounts payments", extra=TOKEN_CONSENT, sub="customer-8841", ttl=600):
    """`count` tokens; `sub=None` mints client-credentials tokens (the subject is the client)."""
    cmd = [CLI, "token", "--key", os.path.join(ROOT, "policies/demo-keys", key), "--kid", kid, "--iss", ISS, "--aud", AUD,
           "--client", client, "--scope", scope, "--ttl", str(ttl), "--count", str(count), *extra]
    if sub:
        cmd += ["--sub", sub]
    if key.startswith("as-ps256"):
        cmd += ["--alg", "PS256"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    return out


def mint_consents(count):
    """Consent artefacts from the consent service, one per access token (distinct consent ids)."""
    return subprocess.run([CLI, "consent", "--key", os.path.join(ROOT, "policies/demo-keys/consent-es256.pem"), "--kid", "consent-es256",
                           "--iss", "https://consent.bank.example", "--client", "moneywise-app", "--sub", "customer-8841",
                           "--consent-id", "aac-bench", "--permissions", "ReadBalances", "--count", str(count)],
                          check=True, capture_output=True, text=True).stdout.split()


DPOP_PATH = "/domestic-payment-consents"
DPOP_URL = "https://api.bank.example" + DPOP_PATH


# DPoP clients in the scenario. The replay cache lets one key hold at most half of a bucket (about 2 000 proofs a
# second sustained, by design: a flooding client runs into its own share); a fast machine sends more than that
# from one key, so the load comes from several clients, as real traffic does.
DPOP_CLIENTS = 8


def dpop_scenario(fronts):
    """Client-credentials payments tokens bound to DPoP keys, each request with a new proof (RFC 9449), against the
    same tokens as bearer tokens on the same route. jwt_authn has no DPoP, so the comparison is with bearer."""
    keys = []
    for i in range(DPOP_CLIENTS):
        key = os.path.join(WORK, f"dpop-{i}.pem")
        with open(key, "w") as f:
            subprocess.run([CLI, "keygen", "ES256"], stdout=f, check=True)
        keys.append(key)
    # The route takes client-credentials tokens of at most 300 s.
    bearer = mint("as-es256.pem", "as-es256", 1, scope="payments", extra=(), sub=None, ttl=300)
    bound = [mint("as-es256.pem", "as-es256", 1, scope="payments", extra=("--bind-dpop-key", k), sub=None, ttl=300)[0] for k in keys]

    def proofs(rate):
        # Fresh before every run (iat window 60 s), sized from a measured rate: half again what passthrough (always
        # faster than nhi-guard) sent per second, so no machine runs out. The Lua script also stops a thread before
        # its share runs out, so a request never goes without a proof whatever the machine's speed. Request n
        # (both wrk threads) uses token n % DPOP_CLIENTS: its proofs sit at 2n and 2n+1.
        count = int(max(rate, 1000) * 1.5 * DURATION) + 2 * CONNECTIONS
        per_key = count // DPOP_CLIENTS + 2
        by_key = [subprocess.run([CLI, "dpop", "--key", k, "--method", "POST", "--url", DPOP_URL, "--token", t, "--count", str(per_key)],
                                 check=True, capture_output=True, text=True).stdout.split() for k, t in zip(keys, bound)]
        out = []
        for n in range(count // 2):
            k, j = n % DPOP_CLIENTS, (n // DPOP_CLIENTS) * 2
            out += by_key[k][j:j + 2]
        return out

    runs = {"passthrough": [], "nhi-guard bearer": [], "nhi-guard DPoP": []}
    for _ in range(ROUNDS):
        # Passthrough ignores proofs: the same tokens with the DPoP scheme, no proof header.
        p = measure(fronts["passthrough"], bound, method="POST", path=DPOP_PATH, scheme="DPoP")
        runs["passthrough"].append(p)
        r = measure(fronts["nhi-guard"], bearer, method="POST", path=DPOP_PATH)
        if r["non2xx"]:
            raise SystemExit(f"bench: nhi-guard denied {r['non2xx']} bearer requests in the dpop scenario; see {WORK}")
        runs["nhi-guard bearer"].append(r)
        r = measure(fronts["nhi-guard"], bound, proofs=proofs(p["rps"]), method="POST", path=DPOP_PATH)
        if r["non2xx"]:
            raise SystemExit(f"bench: nhi-guard denied {r['non2xx']} of {r['total']} DPoP requests: {fronts['nhi-guard'].denials()}")
        runs["nhi-guard DPoP"].append(r)
    return {n: {k: statistics.median(x[k] for x in rs) for k in ("rps", "p50", "p99", "cpu_us")} for n, rs in runs.items()}


def garbage(count):
    return [f"eyJhbGciOiJFUzI1NiJ9.not-base64-{i}!.x" for i in range(count)]


def forged(tokens):
    """Same header and claims, last signature character changed: passes every pre-check but the signature."""
    out = []
    for t in tokens:
        head, sig = t.rsplit(".", 1)
        out.append(f"{head}.{('A' if sig[0] != 'A' else 'B')}{sig[1:]}")
    return out


LUA = """
local tokens = {}
for line in io.lines("%s") do tokens[#tokens + 1] = line end
local consent = nil
%s
local proofs = nil
%s
-- wrk runs one Lua state per thread: each thread takes every second proof, so none is sent twice. A thread
-- stops while it still has a proof for each of its connections: no request ever goes out without one.
local threads = 0
setup = function(thread) thread:set("id", threads) threads = threads + 1 end
local n = 0
request = function()
  n = n + 1
  local i = (n - 1) %% #tokens + 1
  local headers = { ["Authorization"] = "%s " .. tokens[i] }
  if consent then headers["x-consent"] = consent[i] end
  if proofs then
    if (n + %d) * 2 > #proofs then wrk.thread:stop() end
    headers["DPoP"] = proofs[(n - 1) * 2 + id + 1]
  end
  return wrk.format("%s", "%s", headers)
end
"""


def wrk(port, tokens, consent=None, proofs=None, method="GET", path=PATH, scheme=None):
    tok_file = os.path.join(WORK, f"tokens-{len(tokens)}-{hash(tokens[0]) & 0xffff}.txt")
    with open(tok_file, "w") as f:
        f.write("\n".join(tokens) + "\n")
    def lua_list(name, items):
        """Lua that fills the table `name` from a file of `items`, one per line ("" without items)."""
        if not items:
            return ""
        path = f"{tok_file}.{name}"
        with open(path, "w") as f:
            f.write("\n".join(items) + "\n")
        return f'{name} = {{}}\nfor line in io.lines("{path}") do {name}[#{name} + 1] = line end'
    consent_lua, proofs_lua = lua_list("consent", consent), lua_list("proofs", proofs)
    script = os.path.join(WORK, "rotate.lua")
    with open(script, "w") as f:
        f.write(LUA % (tok_file, consent_lua, proofs_lua, scheme or ("DPoP" if proofs else "Bearer"), CONNECTIONS, method, path))
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "-s", script, f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=DURATION + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return {"rps": rps, "total": total, "p50": lat(50), "p99": lat(99), "non2xx": int(non2xx.group(1)) if non2xx else 0}


def measure(front, tokens, consent=None, **request):
    c0 = front.cpu_seconds()
    r = wrk(front.port, tokens, consent, **request)
    r["cpu_us"] = (front.cpu_seconds() - c0) * 1e6 / max(r["total"], 1)
    return r


def main():
    for tool in ("wrk",):
        if not shutil.which(tool):
            raise SystemExit("bench: wrk is missing (scripts/bench.sh installs it)")
    up_port, up_admin = free_port(), free_port()
    upstream = Envoy("upstream", bootstrap(up_port, up_admin, direct=True), 1)
    jwks = json.loads(subprocess.run([CLI, "jwks", f"{ROOT}/policies/demo-keys/as-es256.pem:as-es256", f"{ROOT}/policies/demo-keys/as-eddsa.pem:as-eddsa",
                                      f"{ROOT}/policies/demo-keys/as-ps256.pem:as-ps256:PS256"], check=True, capture_output=True, text=True).stdout)
    consent_jwks = json.loads(subprocess.run([CLI, "jwks", f"{ROOT}/policies/demo-keys/consent-es256.pem:consent-es256"],
                                             check=True, capture_output=True, text=True).stdout)
    configs = {
        "passthrough": [],
        EMPTY: empty_wasm_filters(),
        EXT_AUTHZ: ext_authz_filters(),
        "jwt_authn+RBAC": jwt_authn_filters(jwks, cache=False),
        "jwt_authn+RBAC cached": jwt_authn_filters(jwks, cache=True),
        "jwt_authn(2 JWTs)+RBAC": jwt_authn_filters(jwks, cache=False, consent_jwks=consent_jwks),
        "nhi-guard": None,
    }
    if VARIANTS:
        configs["nhi-guard, no access logs"] = None
    for i, _ in enumerate(WASM_B):
        configs[f"nhi-guard B{i + 1}"] = None
    if CONFIGS:
        configs = {n: f for n, f in configs.items() if n == "passthrough" or n in CONFIGS}
    fronts = {}
    feed_port = free_port()
    feed_file = os.path.join(WORK, "revocations.json")
    with open(feed_file, "w") as f:
        json.dump({"version": 1, "produced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)
    jwks_file = os.path.join(WORK, "sts-jwks.json")
    with open(jwks_file, "w") as f:
        subprocess.run([CLI, "jwks", os.path.join(ROOT, "policies/demo-keys/sts-es256.pem") + ":sts-es256"], stdout=f, check=True)
    feed = subprocess.Popen([CLI, "upstream", "--port", str(feed_port), "--feed-file", feed_file, "--jwks-file", jwks_file],
                            stderr=subprocess.DEVNULL)
    try:
        for name, filters in configs.items():
            label = re.sub(r"[^A-Za-z0-9]+", "_", name)
            if name.startswith("nhi-guard"):
                port, admin = free_port(), free_port()
                wasm = WASM_B[int(name.rsplit("B", 1)[1]) - 1] if name.startswith("nhi-guard B") else WASM
                text = nhi_guard_config(port, admin, up_port, feed_port, wasm=wasm,
                                        access_logs=name != "nhi-guard, no access logs")
                fronts[name] = Envoy(label, text, 2, ports=(port, admin))
                wait_for_feed(fronts[name])
                continue
            cfg = bootstrap(free_port(), free_port(), filters, up_port)
            if name == EXT_AUTHZ:
                cfg = with_authz_cluster(cfg, up_port)
            fronts[name] = Envoy(label, cfg, 2)
        # Tokens are minted just before their scenario runs: minted all at once, the last scenarios' tokens
        # would expire (600 s) while the first ones run.
        floors = ["passthrough", EMPTY, EXT_AUTHZ]
        variants = [n for n in configs if n.startswith("nhi-guard") and n != "nhi-guard"]
        es_tokens = lambda: mint("as-es256.pem", "as-es256", COLD_TOKENS)
        scenarios = [
            ("hot: one ES256 token", lambda: (mint("as-es256.pem", "as-es256", 1), None),
             floors + ["jwt_authn+RBAC", "jwt_authn+RBAC cached", "nhi-guard"] + variants, True),
            ("cold: distinct ES256 tokens", lambda: (es_tokens(), None), floors + ["jwt_authn+RBAC", "nhi-guard"], True),
            ("consent: distinct token + consent artefact pairs",
             lambda: (mint("as-es256.pem", "as-es256", COLD_TOKENS, extra=()), mint_consents(COLD_TOKENS)),
             floors + ["jwt_authn(2 JWTs)+RBAC", "nhi-guard"], True),
        ]
        if not SMOKE and not ONLY:
            scenarios += [
                ("forged flood: distinct bad signatures", lambda: (forged(es_tokens()), None), floors + ["jwt_authn+RBAC", "nhi-guard"], False),
                ("garbage flood: malformed tokens", lambda: (garbage(COLD_TOKENS), None), floors + ["jwt_authn+RBAC", "nhi-guard"], False),
                ("cold: distinct EdDSA tokens", lambda: (mint("as-eddsa.pem", "as-eddsa", COLD_TOKENS), None), floors + ["jwt_authn+RBAC", "nhi-guard"], True),
                ("cold: distinct PS256 tokens", lambda: (mint("as-ps256.pem", "as-ps256", 5000), None), floors + ["jwt_authn+RBAC", "nhi-guard"], True),
            ]
        results = []
        if ONLY:
            scenarios = [sc for sc in scenarios if any(sc[0].startswith(p) for p in ONLY)]
        for title, make, names, expect_ok in scenarios:
            print(f"bench: {title}...", file=sys.stderr)
            tokens, consent = make()
            names = [n for n in names if n in fronts]
            runs = {n: [] for n in names}
            for _ in range(ROUNDS):
                for n in names:
                    r = measure(fronts[n], tokens, consent)
                    if n != "passthrough" and expect_ok and r["non2xx"] > 0:
                        raise SystemExit(f"bench: {n} denied {r['non2xx']} valid requests in '{title}'; see {WORK}")
                    if n not in ("passthrough", *REFERENCES) and not expect_ok and r["non2xx"] < r["total"] * 0.99:
                        raise SystemExit(f"bench: {n} let bad tokens through in '{title}'")
                    runs[n].append(r)
            results.append((title, {n: {k: statistics.median(x[k] for x in rs) for k in ("rps", "p50", "p99", "cpu_us")} for n, rs in runs.items()}))
        if not ONLY or "dpop" in ONLY:
            try:
                results.append((f"dpop: {DPOP_CLIENTS} tokens, a new proof per request", dpop_scenario(fronts)))
            except SystemExit as e:
                report(results, None)  # what ran before is not lost
                raise e
        memory = None
        if not SMOKE and not ONLY:
            ng = fronts["nhi-guard"]
            before = ng.rss_mib()
            many = mint("as-es256.pem", "as-es256", 100_000)
            measure(ng, many)
            memory = (before, ng.rss_mib())
        report(results, memory)
    finally:
        for f in fronts.values():
            f.stop()
        upstream.stop()
        feed.kill()
        shutil.rmtree(WORK, ignore_errors=True)


def report(results, memory):
    cpu = os.popen("grep -m1 'model name' /proc/cpuinfo").read().split(":")[-1].strip()
    lines = [f"Machine: {os.cpu_count()} cores ({cpu}); Envoy 1.40 --concurrency 2; wrk -t2 -c{CONNECTIONS} -d{DURATION}s; "
             f"median of {ROUNDS} interleaved rounds; {'SMOKE RUN, not a measurement' if SMOKE else time.strftime('%Y-%m-%d')}", ""]
    lines.append("| scenario | config | req/s | p50 ms | p99 ms | Envoy CPU us/req | above passthrough | above the wasm floor | vs passthrough | vs jwt_authn |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for title, rs in results:
        base = rs["passthrough"]["rps"]
        base_cpu = rs["passthrough"]["cpu_us"]
        floor_cpu = rs.get(EMPTY, {}).get("cpu_us")
        reference = "jwt_authn+RBAC cached" if title.startswith("hot") else "jwt_authn(2 JWTs)+RBAC" if title.startswith("consent") else "jwt_authn+RBAC"
        jwt = rs.get(reference, {}).get("rps")
        for n, r in rs.items():
            vs_jwt = f"{r['rps'] / jwt:.2f}" if jwt and n.startswith("nhi-guard") else ""
            above_floor = f"{r['cpu_us'] - floor_cpu:.0f}" if floor_cpu is not None and n.startswith("nhi-guard") else ""
            lines.append(f"| {title} | {n} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.0f} | {r['cpu_us'] - base_cpu:.0f} "
                         f"| {above_floor} | {r['rps'] / base:.2f} | {vs_jwt} |")
    if memory:
        lines += ["", f"nhi-guard Envoy RSS: {memory[0]:.0f} MiB after warm-up, {memory[1]:.0f} MiB after 100k distinct tokens "
                      f"(token cache: 4096 entries per worker)."]
    lines += ["", "\"vs jwt_authn\" compares nhi-guard with jwt_authn+RBAC doing the same token checks: with its JWT cache on the hot "
              "path, without it on cold paths, and requiring both JWTs on the consent path."]
    text = "\n".join(lines)
    print(text)
    out = os.path.join(ROOT, "target/bench-results.md")
    with open(out, "w") as f:
        f.write(text + "\n")
    print(f"\n(written to {out})", file=sys.stderr)


if __name__ == "__main__":
    main()

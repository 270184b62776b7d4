#!/usr/bin/env python3
"""Soak: nhi-guard near saturation for SOAK_MINUTES (default 10) with a traffic mix, in one-minute
segments (fresh DPoP proofs each minute: a proof is only good for its iat window). Checks: zero 5xx,
zero Wasm VM restarts, Envoy's RSS in the last minute within 5% of the first. Run through
scripts/soak.sh; loopback only, bounded, stops by itself. Writes target/soak-results.md.

Mix per request: 40% valid bearer with consent in the token, 20% token + consent artefact,
10% DPoP-bound token with a new proof, 30% refused (forged signature, garbage, offboarded partner).
"""
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the benchmark's Envoy, config and minting helpers)

MINUTES = int(os.environ.get("SOAK_MINUTES", "10"))
SEGMENT = 55  # seconds of load per minute; the rest mints the next minute's proofs
REMINT = int(os.environ.get("SOAK_REMINT_MINUTES", "4"))  # tokens are good for 600 s

LUA = r"""
local function lines(p) local t = {} for l in io.lines(p) do t[#t + 1] = l end return t end
local bearer = lines("%(bearer)s")
local machine = lines("%(machine)s")
local artefacts = lines("%(artefacts)s")
local invalid = lines("%(invalid)s")
local dpop_token = lines("%(dpop_token)s")[1]
local proofs = lines("%(proofs)s")
local threads, all = 0, {}
setup = function(thread) thread:set("id", threads) threads = threads + 1 table.insert(all, thread) end
local n, p = 0, 0
s5 = 0  -- global: done() reads it from each thread
request = function()
  n = n + 1
  local k = n %% 10
  if k < 4 then
    return wrk.format("GET", "/accounts/22289/balances", {["Host"] = "api.bank.example", ["Authorization"] = "Bearer " .. bearer[n %% #bearer + 1]})
  elseif k < 6 then
    local i = n %% #machine + 1
    return wrk.format("GET", "/accounts/22289/balances", {["Host"] = "api.bank.example", ["Authorization"] = "Bearer " .. machine[i], ["x-consent"] = artefacts[i]})
  elseif k < 7 then
    p = p + 1
    local proof = proofs[(p - 1) * 2 + id + 1]
    if proof == nil then
      return wrk.format("GET", "/accounts/22289/balances", {["Host"] = "api.bank.example", ["Authorization"] = "Bearer " .. bearer[1]})
    end
    return wrk.format("POST", "%(dpop_path)s", {["Host"] = "api.bank.example", ["Authorization"] = "DPoP " .. dpop_token, ["DPoP"] = proof, ["content-length"] = "0"})
  else
    return wrk.format("GET", "/accounts/22289/balances", {["Host"] = "api.bank.example", ["Authorization"] = "Bearer " .. invalid[n %% #invalid + 1]})
  end
end
response = function(status, headers, body) if status >= 500 then s5 = s5 + 1 end end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(all) do total = total + (t:get("s5") or 0) end
  io.write(string.format("FIVE_XX %%d\n", total))
end
"""


def write(name, items):
    path = os.path.join(bench.WORK, name)
    with open(path, "w") as f:
        f.write("\n".join(items) + "\n")
    return path


def wasm_vms(front):
    """Wasm VMs Envoy has created so far (a restart after a trap creates another)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{front.admin}/stats?filter=wasm", timeout=5).read().decode()
    created = re.findall(r"^(\S*wasm\S*\.created): (\d+)$", text, re.M)
    if not created:
        raise SystemExit(f"soak: Envoy reports no Wasm VM creation counter:\n{text}")
    return sum(int(v) for _, v in created)


def envoy_heap_mib(front):
    """Envoy's own heap in use (tcmalloc `allocated`); Wasm linear memory is outside it."""
    import json as _json
    text = urllib.request.urlopen(f"http://127.0.0.1:{front.admin}/memory", timeout=5).read().decode()
    return int(_json.loads(text).get("allocated", 0)) / (1 << 20)


def main():
    up_port, up_admin = bench.free_port(), bench.free_port()
    upstream = bench.Envoy("soak-upstream", bench.bootstrap(up_port, up_admin, direct=True), 1)
    feed_port = bench.free_port()
    feed_file = os.path.join(bench.WORK, "revocations.json")
    with open(feed_file, "w") as f:
        f.write('{"version": 1, "produced_at": "%s"}' % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    jwks_file = os.path.join(bench.WORK, "sts-jwks.json")
    with open(jwks_file, "w") as f:
        subprocess.run([bench.CLI, "jwks", os.path.join(bench.ROOT, "policies/demo-keys/sts-es256.pem") + ":sts-es256"], stdout=f, check=True)
    feed = subprocess.Popen([bench.CLI, "upstream", "--port", str(feed_port), "--feed-file", feed_file, "--jwks-file", jwks_file],
                            stderr=subprocess.DEVNULL)
    front = bench.Envoy("soak-nhi-guard", bench.with_feed(bench.bootstrap(bench.free_port(), bench.free_port(), bench.nhi_guard_filters(), up_port), feed_port), 2)
    try:
        bench.wait_for_feed(front)
        key = os.path.join(bench.WORK, "dpop.pem")
        with open(key, "w") as f:
            subprocess.run([bench.CLI, "keygen", "ES256"], stdout=f, check=True)
        rows, vms0 = [], wasm_vms(front)
        # Minute 0 warms up (caches fill to their bounds) and is not reported. Tokens are re-minted every
        # four minutes (routes take tokens up to 600 s old), proofs every minute (their iat window).
        for minute in range(MINUTES + 1):
            if minute % REMINT == 0:
                bearer = bench.mint("as-es256.pem", "as-es256", 6000)
                # Every pool is larger than the cache it lands in (4096 verified tokens and consent
                # artefacts, 1024 forged ones per worker), so the warm-up fills each cache to its bound
                # and later pools only churn it.
                machine = bench.mint("as-es256.pem", "as-es256", 5000, extra=())
                artefacts = bench.mint_consents(5000)
                forged = [t[:-2] + ("AA" if not t.endswith("AA") else "BB") for t in bench.mint("as-es256.pem", "as-es256", 1500)]
                offboarded = bench.mint("as-es256.pem", "as-es256", 300, client="quickloans-app", scope="accounts")
                invalid = forged + offboarded + [f"eyJhbGciOiJFUzI1NiJ9.garbage-{i}!.x" for i in range(300)]
                dpop_token = bench.mint("as-es256.pem", "as-es256", 1, scope="payments", extra=("--bind-dpop-key", key), sub=None, ttl=600)
            proofs = subprocess.run([bench.CLI, "dpop", "--key", key, "--method", "POST", "--url", bench.DPOP_URL, "--token", dpop_token[0],
                                     "--count", "150000"], check=True, capture_output=True, text=True).stdout.split()
            script = os.path.join(bench.WORK, "soak.lua")
            with open(script, "w") as f:
                f.write(LUA % {"bearer": write("bearer", bearer), "machine": write("machine", machine), "artefacts": write("artefacts", artefacts),
                               "invalid": write("invalid", invalid), "dpop_token": write("dpop_token", dpop_token), "proofs": write("proofs", proofs),
                               "dpop_path": bench.DPOP_PATH})
            out = subprocess.run(["wrk", "-t2", "-c32", f"-d{SEGMENT}s", "-s", script, f"http://127.0.0.1:{front.port}/"],
                                 capture_output=True, text=True, timeout=SEGMENT + 60).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            five = int(re.search(r"FIVE_XX (\d+)", out).group(1))
            row = (minute, rps, five, front.rss_mib(), wasm_vms(front) - vms0)
            label = "warm-up" if minute == 0 else f"minute {minute}"
            print(f"soak {label}: {rps:.0f} req/s, {five} 5xx, RSS {row[3]:.1f} MiB (Envoy heap {envoy_heap_mib(front):.1f}), VM restarts {row[4]}", file=sys.stderr)
            if minute == 0:
                if five or row[4]:
                    rows.append(row)  # a failure in the warm-up counts too
                continue
            rows.append(row)
    finally:
        front.stop()
        upstream.stop()
        feed.terminate()
    first, last = rows[0][3], rows[-1][3]
    growth = (last - first) / first * 100
    five = sum(r[2] for r in rows)
    restarts = rows[-1][4]
    lines = [f"Soak: {MINUTES} min near saturation after a warm-up minute (wrk -t2 -c32, {SEGMENT} s of each minute), Envoy --concurrency 2, {os.cpu_count()} cores",
             "", "| minute | req/s | 5xx | Envoy RSS MiB | VM restarts |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {m} | {r:.0f} | {f} | {s:.1f} | {v} |" for m, r, f, s, v in rows]
    lines += ["", f"5xx: {five}; VM restarts: {restarts}; RSS last minute vs first: {growth:+.1f}%"]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(bench.ROOT, "target/soak-results.md"), "w") as f:
        f.write(text)
    print(text)
    if five or restarts or abs(growth) > 5:
        raise SystemExit("soak: FAILED (5xx, VM restarts or RSS growth over 5%)")


if __name__ == "__main__":
    main()

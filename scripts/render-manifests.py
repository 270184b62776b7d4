#!/usr/bin/env python3
"""Renders the fleet manifests in envoy/ from policies/open-banking.json (a test keeps them in sync,
and another runs their embedded policy in Envoy configured as each platform configures it).

Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy hand the plugin its configuration as a
JSON object: the example policy, adapted to the platform:
- fetch clusters renamed to the names the platform gives them (Istio: outbound|PORT||HOST of a
  Kubernetes service or ServiceEntry; Envoy Gateway: the clusters the EnvoyPatchPolicy adds), and
  the `upstream` blocks dropped (the platform makes those clusters, not envoy-config);
- the audit key taken from the VM's environment (`settings.audit_subject_key_env`), which each
  platform fills from a Kubernetes Secret, instead of sitting in the policy.
The module is pinned by the digest of its OCI image (scripts/wasm-image.py builds it).

Usage: scripts/render-manifests.py [--digest sha256:...] [--check]
  --digest  pin this image digest (default: the image scripts/wasm-image.py builds from the release
            module, when it is built; else the digest the manifests already carry)
  --check   exit 1 if the files differ from what would be rendered (the policy and structure; the
            digest is taken from the files)
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "registry.bank.example/security/nhi-guard"
AUDIT_KEY_ENV = "NHI_GUARD_AUDIT_KEY"
NAMESPACE = "banking-api"
ISTIO = "envoy/istio-wasmplugin.yaml"
GATEWAY = "envoy/envoy-gateway-extension-policy.yaml"

# Where each fetch cluster of the example policy lives in a bank's cluster: (host, port, external).
HOSTS = {
    "nhi_guard_feed": ("nhi-guard-feed.security.svc.cluster.local", 8080, False),
    "bank_sts": ("sts.identity.svc.cluster.local", 8080, False),
    "bank_auth_eu_jwks": ("auth-eu.bank.example", 443, True),
}


def yaml_of(value, indent):
    """JSON is YAML: a flow-style block keeps the manifest exact and diffable."""
    text = json.dumps(value, indent=2)
    return "\n".join((" " * indent) + line for line in text.splitlines())


def platform_policy(cluster_name):
    """The example policy as the platform runs it (see the module docstring)."""
    with open(os.path.join(ROOT, "policies/open-banking.json")) as f:
        policy = json.load(f)
    policy["settings"].pop("audit_subject_key", None)
    policy["settings"]["audit_subject_key_env"] = AUDIT_KEY_ENV
    sources = [policy["revocation"]] + [i["remote_jwks"] for i in policy["issuers"] if "remote_jwks" in i]
    for source in sources:
        source.pop("upstream", None)
        source["cluster"] = cluster_name(source["cluster"])
    return policy


def istio_cluster(name):
    host, port, _ = HOSTS[name]
    return f"outbound|{port}||{host}"


def gateway_cluster(name):
    return f"nhi_guard/{name}"


def patch_cluster(name):
    """The cluster the EnvoyPatchPolicy adds for one source: DNS, TLS for hosts outside the cluster."""
    host, port, external = HOSTS[name]
    cluster = {
        "name": gateway_cluster(name),
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "wait_for_warm_on_init": False,
        "load_assignment": {"cluster_name": gateway_cluster(name), "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
    }
    if external:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": host,
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}]}}}}
    return cluster


def istio(digest):
    policy = platform_policy(istio_cluster)
    external = [(n, h) for n, h in HOSTS.items() if h[2]]
    entries = "".join(f"""---
# {name}: outside the mesh. The filter calls cluster {istio_cluster(name)}; this entry makes it and the
# DestinationRule below originates TLS to it (SNI, and the certificate checked against the system CAs
# and the host name).
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: nhi-guard-{name.replace('_', '-')}
  namespace: {NAMESPACE}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {{ number: {port}, name: http-tls-origination, protocol: HTTP }}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: nhi-guard-{name.replace('_', '-')}
  namespace: {NAMESPACE}
spec:
  host: {host}
  trafficPolicy:
    portLevelSettings:
    - port: {{ number: {port} }}
      tls: {{ mode: SIMPLE, sni: {host}, subjectAltNames: [{host}] }}
""" for name, (host, port, _) in external)
    return f"""# Istio: nhi-guard on the Open Banking gateway. Generated by scripts/render-manifests.py.
# Delivered to the proxies by ECDS; no bootstrap extension: the plugin polls its revocation feed and
# the issuers' JWKS itself (one worker per proxy holds each source's lease).
# - FAIL_CLOSE: if the module cannot be fetched or started, requests are refused, never passed.
# - The module is pinned by its OCI image digest (scripts/wasm-image.py builds the image).
# - Istio gives every WasmPlugin the empty vm_id: several plugins share one VM; nhi-guard names its
#   shared data after each source, so two policies never read each other's state.
# - The audit key comes from the proxy's environment (valueFrom: HOST). Set it on the gateway's
#   istio-proxy container from a Secret, e.g.
#     env: [{{ name: {AUDIT_KEY_ENV}, valueFrom: {{ secretKeyRef: {{ name: nhi-guard-audit-key, key: key }} }} }}]
# - Fetch clusters: the feed and the STS are Kubernetes services in the mesh (outbound|8080||...,
#   mesh mTLS); the EU authorization server is outside: a ServiceEntry and DestinationRule follow.
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: nhi-guard
  namespace: {NAMESPACE}
spec:
  selector:
    matchLabels:
      app: open-banking-gateway
  url: oci://{IMAGE}@{digest}
  imagePullPolicy: IfNotPresent
  phase: AUTHN
  failStrategy: FAIL_CLOSE
  pluginName: nhi_guard
  vmConfig:
    env:
    - name: {AUDIT_KEY_ENV}
      valueFrom: HOST
  pluginConfig:
{yaml_of(policy, 4)}
{entries}"""


def gateway(digest):
    policy = platform_policy(gateway_cluster)
    patches = "\n".join(f"""  - type: type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: {gateway_cluster(name)}
    operation:
      op: add
      path: ""
      value:
{yaml_of(patch_cluster(name), 8)}""" for name in HOSTS)
    return f"""# Envoy Gateway: nhi-guard on the Open Banking HTTPRoute. Generated by scripts/render-manifests.py.
# Envoy Gateway adds the filter and names its VM itself (envoyextensionpolicy/<namespace>/<name>/wasm/<i>);
# no bootstrap extension is needed: the plugin polls its revocation feed and issuers' JWKS itself.
# - failOpen: false keeps the filter fail-closed; the module is pinned by its OCI image digest.
# - The fetch clusters are added by the EnvoyPatchPolicy below (enable it in the EnvoyGateway
#   config: extensionApis.enableEnvoyPatchPolicy: true); the EU authorization server's with TLS.
# - The audit key comes from the proxy's environment (env.hostKeys), which the EnvoyProxy below
#   fills from a Secret.
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata:
  name: nhi-guard
  namespace: {NAMESPACE}
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: open-banking
  wasm:
  - name: nhi-guard
    rootID: nhi_guard
    failOpen: false
    code:
      type: Image
      image:
        url: {IMAGE}@{digest}
    env:
      hostKeys: [{AUDIT_KEY_ENV}]
    config:
{yaml_of(policy, 6)}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyPatchPolicy
metadata:
  name: nhi-guard-fetch-clusters
  namespace: {NAMESPACE}
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: Gateway
    name: open-banking-gateway
  type: JSONPatch
  jsonPatches:
{patches}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyProxy
metadata:
  name: open-banking-proxy
  namespace: {NAMESPACE}
spec:
  provider:
    type: Kubernetes
    kubernetes:
      envoyDeployment:
        container:
          env:
          - name: {AUDIT_KEY_ENV}
            valueFrom:
              secretKeyRef: {{ name: nhi-guard-audit-key, key: key }}
"""


def current_digest():
    try:
        with open(os.path.join(ROOT, ISTIO)) as f:
            m = re.search(r"@(sha256:[0-9a-f]{64})", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


def main():
    args = sys.argv[1:]
    check = "--check" in args
    digest = args[args.index("--digest") + 1] if "--digest" in args else None
    module = os.path.join(ROOT, "target/wasm32-wasip1/release/nhi_guard.wasm")
    if digest is None and not check and os.path.exists(module):
        digest = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/wasm-image.py"), module],
                                check=True, capture_output=True, text=True).stdout.strip()
    digest = digest or current_digest() or "sha256:" + "0" * 64
    stale = []
    for name, text in [(ISTIO, istio(digest)), (GATEWAY, gateway(digest))]:
        path = os.path.join(ROOT, name)
        if check:
            with open(path) as f:
                if f.read() != text:
                    stale.append(name)
            continue
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {name} (image {digest})")
    if stale:
        print(f"stale: {', '.join(stale)}: run scripts/render-manifests.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

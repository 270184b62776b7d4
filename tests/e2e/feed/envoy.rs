//! The real Envoy with the filter polling the feed service: a signal or an API call becomes the
//! documented denial within two poll intervals (the example policy polls every second).

use super::*;
use crate::harness::{bearer, claims as token_claims, example_policy, token, Envoy, Launch, Response};
use serde_json::json;

fn balances(envoy: &Envoy, t: &str) -> Response {
    envoy.send("GET", "/accounts/22289/balances", &[("authorization", &bearer(t))])
}

fn outcome(r: &Response) -> String {
    if r.status == 200 {
        "allowed".into()
    } else {
        r.reason()
    }
}

fn jti_of(t: &str) -> String {
    let payload = nhi_guard::engine::base64url::decode(t.split('.').nth(1).unwrap().as_bytes()).unwrap();
    serde_json::from_slice::<Value>(&payload).unwrap()["jti"].as_str().unwrap().to_string()
}

fn envoy_suite(db: Db) {
    let tx = Transmitter::start();
    let svc = Service::start(&db, Some(&tx), |_| {});
    let launch = Launch { feed_port: Some(svc.port), clusters: vec!["bank_sts".into()], ..Launch::default() };
    let envoy = Envoy::start_fed(&example_policy(), launch);
    let mut times = Vec::new();

    // 1. CAEP session-revoked for one token (jwt_id): that token 401 token_revoked, others still allowed.
    let t1 = token(&token_claims("moneywise-app", "accounts"));
    let mut c2 = token_claims("moneywise-app", "accounts");
    c2["jti"] = json!("another-token");
    let t2 = token(&c2);
    assert!(envoy.wait_until(Duration::from_secs(5), || balances(&envoy, &t1).status == 200).is_some());
    let set = tx.set("e-1", &format!("{CAEP}session-revoked"), json!({}), jwt_id(crate::harness::ISS, &jti_of(&t1)));
    assert_eq!(svc.push(&set).0, 202);
    let took = envoy.wait_until(Duration::from_secs(5), || outcome(&balances(&envoy, &t1)) == "token_revoked");
    times.push(("caep session-revoked -> token_revoked", took));
    assert_eq!(balances(&envoy, &t1).status, 401);
    assert_eq!(balances(&envoy, &t2).status, 200, "only the revoked token is refused");

    // 2. The bank's partner management offboards the partner through the API: 403 partner_offboarded.
    let (s, _) = svc.api(PARTNER_MGMT, "/v1/partners/moneywise/offboard", json!({"reason": "contract ended"}));
    assert_eq!(s, 200);
    let took = envoy.wait_until(Duration::from_secs(5), || outcome(&balances(&envoy, &t2)) == "partner_offboarded");
    times.push(("api offboard -> partner_offboarded", took));

    // 3. RISC account-disabled for another partner's app: 403 client_revoked.
    let t3 = token(&token_claims("moneywise-insights", "accounts"));
    let before = outcome(&balances(&envoy, &t3));
    let set = tx.set("e-3", &format!("{RISC}account-disabled"), json!({}), opaque("moneywise-insights"));
    assert_eq!(svc.push(&set).0, 202);
    let took = envoy.wait_until(Duration::from_secs(5), || outcome(&balances(&envoy, &t3)) == "client_revoked");
    times.push(("risc account-disabled -> client_revoked", took));

    for (what, took) in &times {
        let took = took.unwrap_or_else(|| panic!("{what}: no denial within 5 s (before: {before})\n{}", svc.log()));
        assert!(took < Duration::from_millis(2500), "{what}: took {took:?}, more than two poll intervals");
    }
    eprintln!(
        "feed service -> Envoy ({}): {:?}",
        db.name(),
        times.iter().map(|(w, t)| format!("{w}: {} ms", t.unwrap().as_millis())).collect::<Vec<_>>()
    );
    // The filter fetched from the service: counted there too.
    assert!(svc.metric("nhi_guard_feed_feed_requests_total") > 0.0);
}

#[test]
fn a_signal_or_an_api_call_reaches_the_real_envoy_within_two_poll_intervals_on_sqlite() {
    envoy_suite(Db::Sqlite);
}

#[test]
fn a_signal_or_an_api_call_reaches_the_real_envoy_within_two_poll_intervals_on_postgres() {
    envoy_suite(Db::Postgres(shared_postgres()));
}

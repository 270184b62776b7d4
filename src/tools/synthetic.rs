//! Generated policies for the scale benchmark: the example policy's issuers, consent service and
//! settings, with `partners`, `clients` and `routes` made up in bulk. Route `i` is
//! `GET /svc{i}/accounts/{AccountId}/items` (scope `accounts`, machine-only), so the first and the
//! last route of a policy are both reachable by every client.

use serde_json::{json, Value};

/// The example policy with `partners` partners, `clients` partner apps (spread over the partners)
/// and `routes` routes. Client `c{i}` belongs to partner `p{i % partners}`.
pub fn policy(example_json: &str, partners: usize, clients: usize, routes: usize) -> Result<String, String> {
    let mut doc: Value = serde_json::from_str(example_json).map_err(|e| e.to_string())?;
    let partners = partners.max(1);
    doc["partners"] = (0..partners)
        .map(|i| {
            json!({"id": format!("p{i}"), "name": format!("Partner {i}"), "owner": "partner-management@bank.example",
                   "purpose": "generated for the scale benchmark", "status": "active",
                   "contract_end": "2031-12-31T23:59:59Z", "last_reviewed": "2026-09-01T00:00:00Z"})
        })
        .collect();
    doc["clients"] = (0..clients)
        .map(|i| {
            json!({"id": format!("c{i}"), "kind": "partner_app", "partner": format!("p{}", i % partners),
                   "owner": "partner-management@bank.example", "purpose": "generated for the scale benchmark",
                   "expires": "2030-12-31T23:59:59Z", "status": "active", "scope_ceiling": ["accounts", "payments"],
                   "issuers": ["https://auth.bank.example"], "last_reviewed": "2026-09-01T00:00:00Z"})
        })
        .collect();
    doc["routes"] = (0..routes)
        .map(|i| {
            json!({"id": format!("r{i}"), "methods": ["GET"], "path": format!("/svc{i}/accounts/{{AccountId}}/items"),
                   "owner": "team-accounts@bank.example", "purpose": "generated for the scale benchmark",
                   "scopes": ["accounts"], "client_kinds": ["partner_app"], "max_token_lifetime_seconds": 600,
                   "max_token_age_seconds": 600, "consent": "none"})
        })
        .collect();
    serde_json::to_string(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::POLICY_JSON;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_generated_policy_loads_with_every_identity_and_route() {
        let json = policy(POLICY_JSON, 7, 50, 30).unwrap();
        let p = crate::engine::policy::load(&json, "generated").unwrap();
        assert_eq!((p.partners.len(), p.clients.len(), p.routes.len()), (7, 50, 30));
        assert!(p.routes.find("GET", "/svc29/accounts/1/items").is_some());
        assert!(p.routes.find("GET", "/svc30/accounts/1/items").is_none());
    }
}

//! Governance you can run: findings about a policy (`nhi-guard check`) and the identity
//! inventory (`nhi-guard inventory`). Pure functions of a policy and a date.
//!
//! The loader already refuses what cannot run (missing owners, dangling references); these
//! findings are what runs but should not: stale partner access, over-privilege, long-lived
//! tokens, overdue reviews.

use crate::policy::{Client, ClientKind, ClientStatus, PartnerStatus, Policy, RouteRule};
use crate::timestamp::format_rfc3339;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable finding code, e.g. `stale_partner_access`.
    pub code: &'static str,
    /// What it is about, e.g. `client quickloans-app`.
    pub subject: String,
    pub message: String,
}

fn finding(severity: Severity, code: &'static str, subject: String, message: String) -> Finding {
    Finding { severity, code, subject, message }
}

/// Routes a client may call by kind and ceiling.
pub fn reachable_routes<'p>(policy: &'p Policy, client: &Client) -> Vec<&'p RouteRule> {
    policy
        .routes
        .iter()
        .filter(|r| r.client_kinds.contains(&client.kind) && r.scopes.iter().all(|s| client.scope_ceiling.contains(s)))
        .collect()
}

/// Every finding, errors first.
pub fn findings(policy: &Policy, now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    let day = 86_400;
    if policy.revocation.is_none() {
        out.push(finding(
            Severity::Warning,
            "no_revocation_path",
            "policy".into(),
            "no revocation feed: offboarding and revocations wait for a configuration push".into(),
        ));
    }
    if policy.audit_key.is_empty() {
        out.push(finding(
            Severity::Warning,
            "audit_key_missing",
            "settings.audit_subject_key".into(),
            "audit subject hashes are unkeyed; set a secret key".into(),
        ));
    }
    let mut partners: Vec<_> = policy.partners.values().collect();
    partners.sort_by(|a, b| a.id.cmp(&b.id));
    for p in partners {
        let subject = format!("partner {}", p.id);
        if p.status == PartnerStatus::Active && now >= p.contract_end {
            out.push(finding(
                Severity::Error,
                "contract_ended_partner_active",
                subject.clone(),
                format!("contract ended {} but status is active: offboard it", format_rfc3339(p.contract_end)),
            ));
        }
        review(&mut out, subject, p.last_reviewed, policy.governance.cadence_days(None), now);
    }
    let mut clients: Vec<_> = policy.clients.values().collect();
    clients.sort_by(|a, b| a.id.cmp(&b.id));
    for c in clients {
        let subject = format!("client {}", c.id);
        let partner = c.partner.as_ref().and_then(|p| policy.partners.get(p));
        if c.status == ClientStatus::Active {
            if let Some(p) = partner.filter(|p| p.status != PartnerStatus::Active || now >= p.contract_end) {
                out.push(finding(
                    Severity::Error,
                    "stale_partner_access",
                    subject.clone(),
                    format!(
                        "active client of partner {} ({}, contract end {}): revoke it",
                        p.id,
                        format!("{:?}", p.status).to_lowercase(),
                        format_rfc3339(p.contract_end)
                    ),
                ));
            }
            if now >= c.expires {
                out.push(finding(
                    Severity::Warning,
                    "expired_but_active",
                    subject.clone(),
                    format!("registration expired {} but status is active", format_rfc3339(c.expires)),
                ));
            }
        }
        let max_days = policy.governance.max_registration_days;
        if c.expires.saturating_sub(now) > max_days.saturating_mul(day) {
            out.push(finding(
                Severity::Warning,
                "long_lived_identity",
                subject.clone(),
                format!("expires {}, more than {max_days} days away", format_rfc3339(c.expires)),
            ));
        }
        let reachable = reachable_routes(policy, c);
        let needed: Vec<&String> =
            policy.routes.iter().filter(|r| r.client_kinds.contains(&c.kind)).flat_map(|r| &r.scopes).collect();
        for s in &c.scope_ceiling {
            if !needed.contains(&s) {
                out.push(finding(
                    Severity::Warning,
                    "over_privileged",
                    subject.clone(),
                    format!("scope {s:?} is in the ceiling but no route this kind of client may call needs it"),
                ));
            }
        }
        if reachable.is_empty() && c.status == ClientStatus::Active {
            out.push(finding(
                Severity::Info,
                "unused_identity",
                subject.clone(),
                "can reach no route: remove it or fix its ceiling".into(),
            ));
        }
        if c.kind != ClientKind::PartnerApp && !c.is_pinned() && !c.require_sender_constraint {
            out.push(finding(
                Severity::Info,
                "unbound_workload",
                subject.clone(),
                "an internal identity on plain bearer tokens: pin it to its SPIFFE ID (spiffe_ids) or require sender-constrained tokens".into(),
            ));
        }
        if policy.issuers.len() > 1 && c.issuers.is_empty() {
            out.push(finding(
                Severity::Warning,
                "issuer_not_pinned",
                subject.clone(),
                format!(
                    "any of the policy's {} issuers may mint tokens for it; list the one it uses in issuers",
                    policy.issuers.len()
                ),
            ));
        }
        review(&mut out, subject, c.last_reviewed, policy.governance.cadence_days(Some(c.kind)), now);
    }
    let partner_bound =
        policy.clients.values().any(|c| c.kind == ClientKind::PartnerApp && c.require_sender_constraint);
    let mut bearer_routes: Vec<&str> = policy
        .routes
        .iter()
        .filter(|r| r.client_kinds.contains(&ClientKind::PartnerApp) && !r.require_sender_constraint && !partner_bound)
        .map(|r| r.id.as_str())
        .collect();
    bearer_routes.sort_unstable();
    if !bearer_routes.is_empty() {
        out.push(finding(
            Severity::Info,
            "bearer_tokens_accepted",
            "routes".into(),
            format!(
                "{} partner routes take plain bearer tokens (FAPI 2.0 wants sender-constrained ones): {}",
                bearer_routes.len(),
                bearer_routes.join(", ")
            ),
        ));
    }
    for r in policy.routes.iter() {
        for kind in &r.client_kinds {
            let ceiling = policy.governance.lifetime_ceiling(*kind);
            if r.max_token_lifetime > ceiling {
                out.push(finding(
                    Severity::Warning,
                    "ttl_above_ceiling",
                    format!("route {}", r.id),
                    format!(
                        "max_token_lifetime_seconds {} exceeds the {} ceiling of {ceiling}",
                        r.max_token_lifetime,
                        kind.name()
                    ),
                ));
            }
        }
        if r.scopes.len() > 1 {
            out.push(finding(
                Severity::Info,
                "bundled_scopes",
                format!("route {}", r.id),
                format!("requires {} scopes at once ({}); prefer one scope per route", r.scopes.len(), r.scope_string),
            ));
        }
    }
    out.sort_by_key(|f| f.severity);
    out
}

fn review(out: &mut Vec<Finding>, subject: String, last: Option<i64>, cadence_days: i64, now: i64) {
    match last {
        None => out.push(finding(Severity::Warning, "never_reviewed", subject, "has no last_reviewed date".into())),
        Some(t) if now > t.saturating_add(cadence_days.saturating_mul(86_400)) => out.push(finding(
            Severity::Warning,
            "review_overdue",
            subject,
            format!("last reviewed {}, due every {cadence_days} days", format_rfc3339(t)),
        )),
        Some(_) => {}
    }
}

/// One identity in the inventory.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryRow {
    pub id: String,
    /// `partner`, or the client kind.
    pub kind: String,
    pub partner: Option<String>,
    pub owner: String,
    pub purpose: String,
    pub status: String,
    pub scopes: Vec<String>,
    pub expires: Option<String>,
    pub last_reviewed: Option<String>,
    pub review_due: Option<String>,
    pub routes: Vec<String>,
    /// How it authenticates: the issuers it takes tokens from, pinned mTLS credentials, bound tokens.
    pub authentication: Vec<String>,
}

/// Every partner and client, partners first, each with what it can reach.
pub fn inventory(policy: &Policy) -> Vec<InventoryRow> {
    let fmt = |t: Option<i64>| t.map(format_rfc3339);
    let mut partners: Vec<_> = policy.partners.values().collect();
    partners.sort_by(|a, b| a.id.cmp(&b.id));
    let mut rows: Vec<InventoryRow> = partners
        .into_iter()
        .map(|p| {
            let apps: Vec<&Client> = policy.clients.values().filter(|c| c.partner.as_deref() == Some(&p.id)).collect();
            let mut routes: Vec<String> =
                apps.iter().flat_map(|c| reachable_routes(policy, c)).map(|r| r.id.clone()).collect();
            routes.sort();
            routes.dedup();
            InventoryRow {
                id: p.id.clone(),
                kind: "partner".into(),
                partner: None,
                owner: p.owner.clone(),
                purpose: p.purpose.clone(),
                status: format!("{:?}", p.status).to_lowercase(),
                scopes: Vec::new(),
                expires: Some(format_rfc3339(p.contract_end)),
                last_reviewed: fmt(p.last_reviewed),
                review_due: fmt(p
                    .last_reviewed
                    .map(|t| t.saturating_add(policy.governance.cadence_days(None).saturating_mul(86_400)))),
                routes,
                authentication: Vec::new(),
            }
        })
        .collect();
    let mut clients: Vec<_> = policy.clients.values().collect();
    clients.sort_by(|a, b| (a.kind as u8, &a.id).cmp(&(b.kind as u8, &b.id)));
    rows.extend(clients.into_iter().map(|c| InventoryRow {
        id: c.id.clone(),
        kind: c.kind.name().into(),
        partner: c.partner.clone(),
        owner: c.owner.clone(),
        purpose: c.purpose.clone(),
        status: format!("{:?}", c.status).to_lowercase(),
        scopes: c.scope_ceiling.clone(),
        expires: Some(format_rfc3339(c.expires)),
        last_reviewed: fmt(c.last_reviewed),
        review_due: fmt(c.review_due),
        routes: reachable_routes(policy, c).into_iter().map(|r| r.id.clone()).collect(),
        authentication: authentication(policy, c),
    }));
    rows
}

/// A client's authentication controls, as the inventory lists them.
fn authentication(policy: &Policy, c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    match c.issuers.as_slice() {
        [] => out.push("tokens from any issuer".to_string()),
        list => out.extend(list.iter().filter_map(|i| policy.issuers.get(*i)).map(|i| format!("tokens from {}", i.id))),
    }
    out.extend(c.spiffe_ids.iter().map(|id| format!("pinned to {id}")));
    if !c.certificate_thumbprints.is_empty() {
        out.push(format!("pinned to {} certificate(s)", c.certificate_thumbprints.len()));
    }
    if c.require_sender_constraint {
        out.push("sender-constrained tokens only".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{policy, NOW, POLICY_JSON};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn codes(p: &Policy) -> Vec<(&'static str, String)> {
        findings(p, NOW).into_iter().map(|f| (f.code, f.subject)).collect()
    }

    fn variant(mutate: impl FnOnce(&mut Value)) -> Policy {
        let mut doc: Value = serde_json::from_str(POLICY_JSON).unwrap();
        mutate(&mut doc);
        crate::policy::load(&doc.to_string(), "t").unwrap()
    }

    #[test]
    fn the_example_shows_its_stale_partner_access_first() {
        let f = findings(&policy(), NOW);
        assert_eq!(f[0].severity, Severity::Error);
        let c = codes(&policy());
        for expected in [
            ("stale_partner_access", "client quickloans-app"),
            ("stale_partner_access", "client budgetbuddy-app"),
            ("stale_partner_access", "client oldbridge-app"),
            ("contract_ended_partner_active", "partner oldbridge"),
            ("review_overdue", "client ledger-sync"),
            ("never_reviewed", "client quickloans-app"),
            ("expired_but_active", "client moneywise-legacy"),
            ("unbound_workload", "client ledger-sync"),
            ("issuer_not_pinned", "client ledger-sync"),
            ("bearer_tokens_accepted", "routes"),
        ] {
            assert!(c.contains(&(expected.0, expected.1.to_string())), "missing {expected:?} in {c:?}");
        }
        assert!(!c.iter().any(|(code, s)| *code == "stale_partner_access" && s == "client moneywise-app"));
        assert!(!c.iter().any(|(code, s)| *code == "unbound_workload" && s == "client statements-batch"), "pinned");
        assert!(!c.iter().any(|(code, s)| *code == "issuer_not_pinned" && s == "client moneywise-app"), "pinned");
    }

    #[test]
    fn over_privilege_ttl_bundles_and_missing_controls_are_found() {
        let p = variant(|d| {
            d["clients"][0]["scope_ceiling"] = json!(["accounts", "payments", "admin"]);
            d["routes"][2]["max_token_lifetime_seconds"] = json!(3600);
            d["routes"][2]["scopes"] = json!(["accounts", "payments"]);
            d["settings"]["audit_subject_key"] = json!("");
            d.as_object_mut().unwrap().remove("revocation");
        });
        let c = codes(&p);
        for expected in [
            ("over_privileged", "client moneywise-app"),
            ("ttl_above_ceiling", "route accounts"),
            ("bundled_scopes", "route accounts"),
            ("audit_key_missing", "settings.audit_subject_key"),
            ("no_revocation_path", "policy"),
        ] {
            assert!(c.contains(&(expected.0, expected.1.to_string())), "missing {expected:?} in {c:?}");
        }
    }

    #[test]
    fn bearer_routes_are_not_reported_once_partner_apps_need_bound_tokens() {
        let p = variant(|d| d["sender_constraint"]["required_for_kinds"] = json!(["partner_app"]));
        assert!(!codes(&p).iter().any(|(code, _)| *code == "bearer_tokens_accepted"));
        let f = findings(&policy(), NOW);
        let bearer = f.iter().find(|f| f.code == "bearer_tokens_accepted").unwrap();
        assert!(bearer.message.starts_with("12 partner routes") && !bearer.message.contains("domestic-vrps-create"));
    }

    #[test]
    fn the_inventory_lists_every_identity_and_what_it_reaches() {
        let rows = inventory(&policy());
        assert_eq!(rows.len(), 4 + 9);
        let app = rows.iter().find(|r| r.id == "moneywise-app").unwrap();
        assert_eq!((app.kind.as_str(), app.partner.as_deref()), ("partner_app", Some("moneywise")));
        assert!(app.routes.contains(&"domestic-payments-create".to_string()));
        assert_eq!(app.review_due.as_deref(), Some("2027-02-11T00:00:00Z"));
        let insights = rows.iter().find(|r| r.id == "moneywise-insights").unwrap();
        assert!(!insights.routes.contains(&"domestic-payments-create".to_string()), "payments are beyond its ceiling");
        let moneywise = rows.iter().find(|r| r.id == "moneywise").unwrap();
        assert_eq!(moneywise.kind, "partner");
        assert!(moneywise.routes.contains(&"domestic-payments-create".to_string()));
    }
}

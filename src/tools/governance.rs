//! Governance you can run: findings about a policy (`nhi-guard check`) and the identity
//! inventory (`nhi-guard inventory`). Pure functions of a policy and a date.
//!
//! The loader already refuses what cannot run (missing owners, dangling references); these
//! findings are what runs but should not: stale partner access, over-privilege, long-lived
//! tokens, overdue reviews.

use crate::engine::policy::{Client, ClientKind, ClientStatus, Mode, PartnerStatus, Policy, RouteRule};
use crate::engine::timestamp::format_rfc3339;
use serde::Serialize;

/// Settings that run but loosen the guard: dry-run, stale revocation data accepted, status-less
/// consent, controls that cannot work where the policy is deployed.
fn permissive_settings(policy: &Policy, deployment: &Deployment) -> Vec<Finding> {
    let mut out = Vec::new();
    if policy.mode == Mode::DryRun {
        out.push(finding(
            Severity::Warning,
            "dry_run_mode",
            "settings.mode".into(),
            "the whole policy is in dry_run: denials are only logged as would_deny, every request passes".into(),
        ));
    }
    if policy.consent.accept_missing_status {
        out.push(finding(
            Severity::Warning,
            "consent_status_optional",
            "consent.accept_artefacts_without_status".into(),
            "consent artefacts without a status count as Authorised".into(),
        ));
    }
    let pinned: Vec<&Client> = policy.clients.values().filter(|c| c.is_pinned()).collect();
    if deployment.mtls_listener == Some(false) && !pinned.is_empty() {
        let mut ids: Vec<&str> = pinned.iter().map(|c| c.id.as_str()).collect();
        ids.sort();
        out.push(finding(
            Severity::Error,
            "pinned_client_without_mtls_listener",
            format!("clients {}", ids.join(", ")),
            "pinned to certificates or SPIFFE IDs, but the Envoy config has no listener that requires client \
             certificates: every request of theirs is refused (render with --mtls)"
                .into(),
        ));
    }
    let mut routes: Vec<&RouteRule> = policy.routes.iter().collect();
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    for r in routes {
        let subject = format!("route {}", r.id);
        if r.dry_run {
            out.push(finding(
                Severity::Warning,
                "route_dry_run",
                subject.clone(),
                "in dry_run: its denials are only logged as would_deny".into(),
            ));
        }
        if policy.revocation.is_some() && !r.require_fresh_revocation {
            out.push(finding(
                Severity::Warning,
                "stale_revocation_accepted",
                subject.clone(),
                "require_fresh_revocation is false: when the feed is stale, revoked credentials may pass".into(),
            ));
        }
        let usable = pinned.iter().any(|c| {
            !c.spiffe_ids.is_empty()
                && c.status == ClientStatus::Active
                && r.client_kinds.contains(&c.kind)
                && r.scopes.iter().all(|s| c.scope_ceiling.contains(s))
        });
        if r.accept_workload_identity && !usable {
            out.push(finding(
                Severity::Warning,
                "workload_identity_unusable",
                subject,
                "accepts workload identity, but no active client with SPIFFE IDs may call it".into(),
            ));
        }
    }
    out
}

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

/// Routes a client's registration covers, by kind and ceiling (whatever its status).
fn routes_within_ceiling<'p>(policy: &'p Policy, client: &Client) -> Vec<&'p RouteRule> {
    policy
        .routes
        .iter()
        .filter(|r| r.client_kinds.contains(&client.kind) && r.scopes.iter().all(|s| client.scope_ceiling.contains(s)))
        .collect()
}

/// Routes a client can actually reach at `now`: none while it is inactive or expired, or its
/// partner is not active or past its contract end (what the filter enforces, in the same terms).
pub fn reachable_routes<'p>(policy: &'p Policy, client: &Client, now: i64) -> Vec<&'p RouteRule> {
    let partner_active = client.partner.as_ref().is_none_or(|p| {
        policy.partners.get(p).is_some_and(|p| p.status == PartnerStatus::Active && now < p.contract_end)
    });
    if client.status != ClientStatus::Active || now >= client.expires || !partner_active {
        return Vec::new();
    }
    routes_within_ceiling(policy, client)
}

/// What is known of where the policy runs (`nhi-guard check --envoy-config FILE`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Deployment {
    /// Whether the Envoy config has a listener that requires client certificates (`None`: unknown).
    pub mtls_listener: Option<bool>,
}

/// Every finding, errors first.
pub fn findings(policy: &Policy, now: i64, deployment: &Deployment) -> Vec<Finding> {
    let mut out = permissive_settings(policy, deployment);
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
        // Unkeyed hashes of low-entropy customer ids can be reversed by enumeration from the logs.
        let severity = if policy.mode == Mode::Enforce { Severity::Error } else { Severity::Warning };
        out.push(finding(
            severity,
            "audit_key_missing",
            "settings.audit_subject_key".into(),
            "audit subject hashes are unkeyed, so customer ids can be enumerated from the logs; set a secret key \
             (settings.audit_subject_key_env keeps it out of the policy)"
                .into(),
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
        let reachable = routes_within_ceiling(policy, c);
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

/// Every partner and client, partners first, each with what it can reach at `now`.
pub fn inventory(policy: &Policy, now: i64) -> Vec<InventoryRow> {
    let fmt = |t: Option<i64>| t.map(format_rfc3339);
    let mut partners: Vec<_> = policy.partners.values().collect();
    partners.sort_by(|a, b| a.id.cmp(&b.id));
    let mut rows: Vec<InventoryRow> = partners
        .into_iter()
        .map(|p| {
            let apps: Vec<&Client> = policy.clients.values().filter(|c| c.partner.as_deref() == Some(&p.id)).collect();
            let mut routes: Vec<String> =
                apps.iter().flat_map(|c| reachable_routes(policy, c, now)).map(|r| r.id.clone()).collect();
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
        routes: reachable_routes(policy, c, now).into_iter().map(|r| r.id.clone()).collect(),
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
    use crate::engine::testkit::{policy, NOW, POLICY_JSON};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn codes(p: &Policy) -> Vec<(&'static str, String)> {
        findings(p, NOW, &Deployment::default()).into_iter().map(|f| (f.code, f.subject)).collect()
    }

    fn variant(mutate: impl FnOnce(&mut Value)) -> Policy {
        let mut doc: Value = serde_json::from_str(POLICY_JSON).unwrap();
        mutate(&mut doc);
        crate::engine::policy::load(&doc.to_string(), "t").unwrap()
    }

    #[test]
    fn permissive_settings_are_reported() {
        let p = variant(|d| {
            d["settings"]["mode"] = json!("dry_run");
            d["routes"][0]["dry_run"] = json!(true);
            d["routes"][1]["require_fresh_revocation"] = json!(false);
            d["consent"]["accept_artefacts_without_status"] = json!(true);
        });
        let c = codes(&p);
        for code in ["dry_run_mode", "route_dry_run", "stale_revocation_accepted", "consent_status_optional"] {
            assert!(c.iter().any(|(x, _)| *x == code), "missing {code} in {c:?}");
        }
        let clean = codes(&policy());
        for code in ["dry_run_mode", "route_dry_run", "stale_revocation_accepted", "consent_status_optional"] {
            assert!(!clean.iter().any(|(x, _)| *x == code), "{code} on the example policy");
        }
    }

    #[test]
    fn a_missing_audit_key_is_an_error_when_enforcing() {
        let severity = |mode: &str| {
            let p = variant(|d| {
                d["settings"]["audit_subject_key"] = json!("");
                d["settings"]["mode"] = json!(mode);
            });
            findings(&p, NOW, &Deployment::default())
                .into_iter()
                .find(|f| f.code == "audit_key_missing")
                .map(|f| f.severity)
        };
        assert_eq!(severity("enforce"), Some(Severity::Error));
        assert_eq!(severity("dry_run"), Some(Severity::Warning));
    }

    #[test]
    fn controls_that_cannot_work_where_deployed_are_reported() {
        let without_mtls = findings(&policy(), NOW, &Deployment { mtls_listener: Some(false) });
        let f = without_mtls.iter().find(|f| f.code == "pinned_client_without_mtls_listener").expect("finding");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.subject.contains("statements-batch"), "{f:?}");
        for known in [Deployment { mtls_listener: Some(true) }, Deployment::default()] {
            assert!(!findings(&policy(), NOW, &known).iter().any(|f| f.code == "pinned_client_without_mtls_listener"));
        }
        // A route taking workload identity that no SPIFFE-pinned client may call.
        let p = variant(|d| {
            for c in d["clients"].as_array_mut().unwrap() {
                c.as_object_mut().unwrap().remove("spiffe_ids");
            }
        });
        assert!(codes(&p).iter().any(|(c, _)| *c == "workload_identity_unusable"));
        assert!(!codes(&policy()).iter().any(|(c, _)| *c == "workload_identity_unusable"));
    }

    #[test]
    fn clients_of_offboarded_or_suspended_partners_reach_no_route() {
        let p = policy();
        let quickloans = p.clients.get("quickloans-app").unwrap();
        assert!(reachable_routes(&p, quickloans, NOW).is_empty(), "offboarded partner");
        let budget = p.clients.get("budgetbuddy-app").unwrap();
        assert!(reachable_routes(&p, budget, NOW).is_empty(), "suspended partner");
        assert!(reachable_routes(&p, p.clients.get("oldbridge-app").unwrap(), NOW).is_empty(), "contract ended");
        assert!(reachable_routes(&p, p.clients.get("moneywise-legacy").unwrap(), NOW).is_empty(), "expired client");
        assert!(!reachable_routes(&p, p.clients.get("moneywise-app").unwrap(), NOW).is_empty());
    }

    #[test]
    fn the_example_shows_its_stale_partner_access_first() {
        let f = findings(&policy(), NOW, &Deployment::default());
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
        let f = findings(&policy(), NOW, &Deployment::default());
        let bearer = f.iter().find(|f| f.code == "bearer_tokens_accepted").unwrap();
        assert!(bearer.message.starts_with("12 partner routes") && !bearer.message.contains("domestic-vrps-create"));
    }

    #[test]
    fn the_inventory_lists_every_identity_and_what_it_reaches() {
        let rows = inventory(&policy(), NOW);
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

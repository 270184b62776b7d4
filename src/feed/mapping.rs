//! What a security event means for the feed. The tables in the README and docs/feed.md are this
//! function; `tests::the_readme_table_is_this_mapping` keeps them equal.
//!
//! The rule: an event about a credential revokes that credential; an event that says an account is
//! disabled or compromised revokes the client (or suspends the partner); purging offboards. Nothing
//! is ever restored by a signal: re-enabling is a person's decision, taken through the API with a
//! name and a reason. Events the feed cannot act on are acknowledged and counted, never refused.

use crate::feed::change::Change;
use crate::feed::set::SecurityEvent;
use crate::feed::subject::Subject;

pub const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
pub const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
pub const SSF: &str = "https://schemas.openid.net/secevent/ssf/event-type/";

/// The feed's reading of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    Changes(Vec<Change>),
    /// Acknowledged, no feed change; the label says why (counted as `unmapped`).
    Ignored(&'static str),
}

/// Event names CAEP 1.0, RISC 1.0 and SSF 1.0 define: only these become label values, so a
/// transmitter cannot grow the metrics without bound.
const KNOWN: [(&str, &[&str]); 3] = [
    (
        CAEP,
        &[
            "session-revoked",
            "token-claims-change",
            "credential-change",
            "assurance-level-change",
            "device-compliance-change",
            "session-established",
            "session-presented",
            "risk-level-change",
        ],
    ),
    (
        RISC,
        &[
            "account-credential-change-required",
            "account-purged",
            "account-disabled",
            "account-enabled",
            "identifier-changed",
            "identifier-recycled",
            "credential-compromise",
            "opt-in",
            "opt-out-initiated",
            "opt-out-cancelled",
            "opt-out-effective",
            "recovery-activated",
            "recovery-information-changed",
            "sessions-revoked",
        ],
    ),
    (SSF, &["verification", "stream-updated"]),
];

/// The short event name for labels: `caep:session-revoked`, `risc:account-disabled`, or `other`.
pub fn event_label(event_type: &str) -> String {
    for (prefix, names) in KNOWN {
        if let Some(name) = event_type.strip_prefix(prefix) {
            if names.contains(&name) {
                let short = if prefix == CAEP {
                    "caep"
                } else if prefix == RISC {
                    "risc"
                } else {
                    "ssf"
                };
                return format!("{short}:{name}");
            }
        }
    }
    "other".into()
}

/// Maps an accepted event.
pub fn map(e: &SecurityEvent) -> Mapping {
    let s = &e.subject;
    let token = |s: &Subject| s.token().map(|(iss, jti)| Change::RevokeToken { iss: iss.into(), jti: jti.into() });
    let client = |s: &Subject| s.client().map(|c| Change::RevokeClient { client: c.into() });
    let one = |c: Option<Change>, why: &'static str| match c {
        Some(c) => Mapping::Changes(vec![c]),
        None => Mapping::Ignored(why),
    };
    match event_label(&e.event_type).as_str() {
        // A session of a machine client is its token: end the token. Other subjects are people's
        // sessions at the identity provider, which the feed does not hold.
        "caep:session-revoked" | "risc:sessions-revoked" => one(token(s), "subject_not_a_token"),
        "caep:credential-change" => match e.event.get("change_type").and_then(|v| v.as_str()) {
            Some("revoke") | Some("delete") => one(token(s).or_else(|| client(s)), "subject_not_a_machine"),
            Some(_) => Mapping::Ignored("credential_not_removed"),
            None => Mapping::Ignored("change_type_missing"),
        },
        "risc:credential-compromise" => one(token(s).or_else(|| client(s)), "subject_not_a_machine"),
        // A tenant (partner) subject suspends or offboards the partner; its application, if named
        // too, is revoked.
        "risc:account-disabled" => account(s, |partner| Change::SuspendPartner { partner }),
        "risc:account-purged" => account(s, |partner| Change::OffboardPartner { partner }),
        "risc:account-enabled" => Mapping::Ignored("restore_is_an_api_action"),
        "ssf:verification" | "ssf:stream-updated" => Mapping::Ignored("stream_control"),
        _ => Mapping::Ignored("event_type_not_mapped"),
    }
}

/// An account event: the partner change for a tenant, a revocation for an application.
fn account(s: &Subject, partner_change: fn(String) -> Change) -> Mapping {
    let mut changes: Vec<Change> = s.partner().map(|p| partner_change(p.into())).into_iter().collect();
    changes.extend(s.client().map(|c| Change::RevokeClient { client: c.into() }));
    if changes.is_empty() {
        Mapping::Ignored("subject_not_a_machine")
    } else {
        Mapping::Changes(changes)
    }
}

/// The README's rows, `(event, subject, what the feed gets)`, in the order the README lists them.
pub const TABLE: [(&str, &str, &str); 12] = [
    ("caep:session-revoked", "jwt_id", "tokens: 401 token_revoked"),
    ("caep:session-revoked", "anything else", "acknowledged, nothing (people's sessions stay at the IdP)"),
    ("caep:credential-change (revoke, delete)", "jwt_id", "tokens: 401 token_revoked"),
    ("caep:credential-change (revoke, delete)", "client", "clients: 403 client_revoked"),
    ("caep:credential-change (create, update)", "any", "acknowledged, nothing"),
    ("risc:credential-compromise", "jwt_id / client", "tokens: 401 token_revoked / clients: 403 client_revoked"),
    (
        "risc:account-disabled",
        "client / tenant",
        "clients: 403 client_revoked / partners suspended: 403 partner_suspended",
    ),
    (
        "risc:account-purged",
        "client / tenant",
        "clients: 403 client_revoked / partners offboarded: 403 partner_offboarded",
    ),
    ("risc:sessions-revoked", "jwt_id", "tokens: 401 token_revoked"),
    ("risc:account-enabled", "any", "acknowledged, nothing: reinstating is an API action"),
    ("ssf:verification, ssf:stream-updated", "-", "acknowledged, counted"),
    ("any other type", "any", "acknowledged, counted as unmapped"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    fn event(kind: &str, event: serde_json::Value, subject: serde_json::Value) -> SecurityEvent {
        SecurityEvent {
            jti: "j".into(),
            iat: 0,
            txn: None,
            event_type: kind.into(),
            event: event.as_object().cloned().unwrap_or_else(Map::new),
            subject: Subject::parse(&subject).unwrap(),
        }
    }

    fn token() -> serde_json::Value {
        json!({"format": "jwt_id", "iss": "https://auth.bank.example", "jti": "t-1"})
    }
    fn app() -> serde_json::Value {
        json!({"format": "opaque", "id": "moneywise-app"})
    }
    fn tenant() -> serde_json::Value {
        json!({"format": "complex", "tenant": {"format": "opaque", "id": "moneywise"}})
    }
    fn revoke_token() -> Change {
        Change::RevokeToken { iss: "https://auth.bank.example".into(), jti: "t-1".into() }
    }
    fn revoke_client() -> Change {
        Change::RevokeClient { client: "moneywise-app".into() }
    }

    #[test]
    fn each_row_of_the_table() {
        let cases = [
            (format!("{CAEP}session-revoked"), json!({}), token(), Mapping::Changes(vec![revoke_token()])),
            (format!("{CAEP}session-revoked"), json!({}), app(), Mapping::Ignored("subject_not_a_token")),
            (
                format!("{CAEP}credential-change"),
                json!({"change_type": "revoke"}),
                token(),
                Mapping::Changes(vec![revoke_token()]),
            ),
            (
                format!("{CAEP}credential-change"),
                json!({"change_type": "delete"}),
                app(),
                Mapping::Changes(vec![revoke_client()]),
            ),
            (
                format!("{CAEP}credential-change"),
                json!({"change_type": "create"}),
                app(),
                Mapping::Ignored("credential_not_removed"),
            ),
            (format!("{CAEP}credential-change"), json!({}), app(), Mapping::Ignored("change_type_missing")),
            (format!("{RISC}credential-compromise"), json!({}), app(), Mapping::Changes(vec![revoke_client()])),
            (format!("{RISC}credential-compromise"), json!({}), token(), Mapping::Changes(vec![revoke_token()])),
            (format!("{RISC}account-disabled"), json!({}), app(), Mapping::Changes(vec![revoke_client()])),
            (
                format!("{RISC}account-disabled"),
                json!({}),
                tenant(),
                Mapping::Changes(vec![Change::SuspendPartner { partner: "moneywise".into() }]),
            ),
            (
                format!("{RISC}account-purged"),
                json!({}),
                tenant(),
                Mapping::Changes(vec![Change::OffboardPartner { partner: "moneywise".into() }]),
            ),
            (format!("{RISC}account-purged"), json!({}), app(), Mapping::Changes(vec![revoke_client()])),
            (
                format!("{RISC}account-purged"),
                json!({}),
                json!({"format": "email", "email": "a@b.example"}),
                Mapping::Ignored("subject_not_a_machine"),
            ),
            (format!("{RISC}sessions-revoked"), json!({}), token(), Mapping::Changes(vec![revoke_token()])),
            (format!("{RISC}account-enabled"), json!({}), tenant(), Mapping::Ignored("restore_is_an_api_action")),
            (format!("{SSF}verification"), json!({"state": "x"}), app(), Mapping::Ignored("stream_control")),
            ("https://example.com/custom".to_string(), json!({}), app(), Mapping::Ignored("event_type_not_mapped")),
            (format!("{CAEP}token-claims-change"), json!({}), token(), Mapping::Ignored("event_type_not_mapped")),
        ];
        for (kind, payload, subject, want) in cases {
            assert_eq!(map(&event(&kind, payload, subject.clone())), want, "{kind} {subject}");
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(event_label(&format!("{CAEP}session-revoked")), "caep:session-revoked");
        assert_eq!(event_label(&format!("{RISC}{}", "a".repeat(100))), "other");
        assert_eq!(event_label(&format!("{RISC}made-up-event")), "other", "only names the specs define");
        assert_eq!(event_label(&format!("{SSF}verification")), "ssf:verification");
        assert_eq!(event_label(&format!("{RISC}Account\"Disabled")), "other");
        assert_eq!(event_label("urn:x"), "other");
    }

    #[test]
    fn the_readme_table_is_this_mapping() {
        for doc in ["README.md", "docs/feed.md"] {
            let text = std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            for (event, subject, outcome) in TABLE {
                let row = format!("| `{event}` | {subject} | {outcome} |");
                assert!(text.contains(&row), "{doc} lacks the row {row}");
            }
        }
    }
}

//! The feed document as the filter reads it (`policies/revocation.schema.json`), rendered from a
//! store snapshot, and the copy each replica serves: rebuilt when the database's version moves,
//! kept (with its age) while the database is away, up to `serve_stale_max_seconds`.

use crate::feed::store::Snapshot;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Doc<'a> {
    version: i64,
    produced_at: String,
    tokens: Vec<IssJti<'a>>,
    clients: Vec<&'a str>,
    partners: Vec<Partner<'a>>,
    consents: Vec<&'a str>,
    keys: Vec<IssKid<'a>>,
}

#[derive(Serialize)]
struct IssJti<'a> {
    iss: &'a str,
    jti: &'a str,
}

#[derive(Serialize)]
struct IssKid<'a> {
    iss: &'a str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Partner<'a> {
    id: &'a str,
    status: &'a str,
}

/// A rendered document, ready to serve.
#[derive(Debug, Clone)]
pub struct Published {
    pub version: i64,
    pub etag: String,
    pub body: bytes::Bytes,
    /// Entries by kind (`tokens`, `clients`, ...), for the metrics.
    pub counts: BTreeMap<&'static str, usize>,
}

/// Renders a snapshot in the filter's format (same version, same bytes, on every replica).
pub fn render(s: &Snapshot) -> Published {
    let mut doc = Doc {
        version: s.version,
        produced_at: crate::engine::timestamp::format_rfc3339(s.produced_at),
        tokens: Vec::new(),
        clients: Vec::new(),
        partners: Vec::new(),
        consents: Vec::new(),
        keys: Vec::new(),
    };
    for (kind, k1, k2, status) in &s.entries {
        match kind.as_str() {
            "token" => doc.tokens.push(IssJti { iss: k1, jti: k2 }),
            "client" => doc.clients.push(k1),
            "partner" => doc.partners.push(Partner { id: k1, status }),
            "consent" => doc.consents.push(k1),
            "key" => doc.keys.push(IssKid { iss: k1, kid: k2 }),
            _ => {}
        }
    }
    let counts = BTreeMap::from([
        ("tokens", doc.tokens.len()),
        ("clients", doc.clients.len()),
        ("partners", doc.partners.len()),
        ("consents", doc.consents.len()),
        ("keys", doc.keys.len()),
    ]);
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    Published { version: s.version, etag: format!("\"v{}\"", s.version), body: bytes::Bytes::from(body), counts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::revocation::RevocationSnapshot;

    #[test]
    fn the_filter_parses_what_the_service_renders() {
        let e = |k: &str, a: &str, b: &str, st: &str| (k.to_string(), a.to_string(), b.to_string(), st.to_string());
        let snap = Snapshot {
            version: 12,
            produced_at: 1_800_000_000,
            entries: vec![
                e("client", "moneywise-app", "", "revoked"),
                e("consent", "aac-1", "", "revoked"),
                e("key", "https://as", "k1", "revoked"),
                e("partner", "moneywise", "", "offboarded"),
                e("partner", "quickloans", "", "suspended"),
                e("token", "https://as", "j1", "revoked"),
            ],
        };
        let p = render(&snap);
        let parsed = RevocationSnapshot::parse(&p.body).unwrap();
        assert_eq!(parsed.version, 12);
        assert!(parsed.consent_revoked("aac-1") && parsed.key_revoked("https://as", "k1"));
        assert_eq!(p.etag, "\"v12\"");
        assert_eq!(p.counts["partners"], 2);
        assert_eq!(render(&snap).body, p.body, "same snapshot, same bytes");
    }
}

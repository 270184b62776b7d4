//! Security Event Tokens (RFC 8417) as SSF 1.0 profiles them: what makes one acceptable.
//!
//! Checked in this order, cheapest first and the signature before any claim is believed:
//! the JWS decodes (the filter's own decoder: canonical base64url, no `crit`); `typ` is
//! `secevent+jwt`; `alg` is one the stream allows and `kid` names one of its keys; the signature
//! verifies; `iss` is the stream's transmitter and `aud` names us; no `sub` (SSF puts the subject in
//! `sub_id`) and no `exp` (a SET is a statement of fact, RFC 8417 §2.2); a `jti` and an `iat`; one
//! event. The refusal carries the RFC 8935 error code the transmitter gets back.

use crate::engine::jwt::jws;
use crate::engine::jwt::verifier::{PureRust, SignatureVerifier};
use crate::engine::keys::{choose_key, Alg, KeyChoiceError, VerificationKey};
use crate::feed::subject::Subject;
use serde_json::{Map, Value};

/// What a SET must match: the stream's transmitter, audience, algorithms and keys.
pub struct Trust<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub algorithms: &'a [Alg],
    pub keys: &'a [VerificationKey],
}

/// A SET that passed every check.
#[derive(Debug, Clone)]
pub struct SecurityEvent {
    pub jti: String,
    pub iat: i64,
    pub txn: Option<String>,
    pub event_type: String,
    /// The event's own members (`change_type`, `reason_admin`, ...).
    pub event: Map<String, Value>,
    pub subject: Subject,
}

/// Why a SET was refused: the counter label and the RFC 8935 §2.4 error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    Malformed(String),
    Typ,
    Alg,
    KidUnknown,
    Signature,
    Issuer,
    Audience,
    SubPresent,
    ExpPresent,
    Claims(String),
    Subject(String),
}

impl SetError {
    /// RFC 8935 `err`.
    pub fn code(&self) -> &'static str {
        match self {
            SetError::Alg | SetError::KidUnknown | SetError::Signature => "invalid_key",
            SetError::Issuer => "invalid_issuer",
            SetError::Audience => "invalid_audience",
            _ => "invalid_request",
        }
    }

    /// The `reason` label of `nhi_guard_feed_sets_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            SetError::Malformed(_) => "malformed",
            SetError::Typ => "typ",
            SetError::Alg => "alg_not_allowed",
            SetError::KidUnknown => "kid_unknown",
            SetError::Signature => "signature",
            SetError::Issuer => "issuer",
            SetError::Audience => "audience",
            SetError::SubPresent => "sub_present",
            SetError::ExpPresent => "exp_present",
            SetError::Claims(_) => "claims",
            SetError::Subject(_) => "subject",
        }
    }

    /// RFC 8935 `description`: says what is wrong, never echoes the SET.
    pub fn description(&self) -> String {
        match self {
            SetError::Malformed(d) => format!("not a JWS: {d}"),
            SetError::Typ => "typ must be secevent+jwt".into(),
            SetError::Alg => "alg not allowed for this stream".into(),
            SetError::KidUnknown => "kid names none of the stream's keys".into(),
            SetError::Signature => "signature does not verify".into(),
            SetError::Issuer => "iss is not this stream's transmitter".into(),
            SetError::Audience => "aud does not name this receiver".into(),
            SetError::SubPresent => "sub is not allowed in a SET; put the subject in sub_id".into(),
            SetError::ExpPresent => "exp is not allowed in a SET (RFC 8417 2.2)".into(),
            SetError::Claims(d) => d.clone(),
            SetError::Subject(d) => format!("subject: {d}"),
        }
    }
}

/// How far ahead of our clock a SET's `iat` may be.
pub const IAT_AHEAD_SECONDS: i64 = 300;

/// Validates a compact SET against the stream's trust; `now` in Unix seconds.
pub fn validate(token: &str, trust: &Trust<'_>, now: i64) -> Result<SecurityEvent, SetError> {
    let token = token.trim();
    let jws = jws::decode::<Map<String, Value>>(token).map_err(|e| SetError::Malformed(format!("{e:?}")))?;
    let typ = jws.header.typ.as_deref().unwrap_or("");
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    if !typ.eq_ignore_ascii_case("secevent+jwt") {
        return Err(SetError::Typ);
    }
    let key =
        choose_key(trust.keys, trust.algorithms, &jws.header.alg, jws.header.kid.as_deref()).map_err(|e| match e {
            KeyChoiceError::AlgNotAllowed => SetError::Alg,
            KeyChoiceError::KidUnknown => SetError::KidUnknown,
        })?;
    match PureRust.verify(key, jws.signing_input.as_bytes(), &jws.signature) {
        Ok(true) => {}
        _ => return Err(SetError::Signature),
    }
    let claims = jws.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(trust.issuer) {
        return Err(SetError::Issuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == trust.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(trust.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(SetError::Audience);
    }
    if claims.contains_key("sub") {
        return Err(SetError::SubPresent);
    }
    if claims.contains_key("exp") {
        return Err(SetError::ExpPresent);
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= 256 => j.to_string(),
        _ => return Err(SetError::Claims("jti is missing, empty or longer than 256".into())),
    };
    let iat =
        claims.get("iat").and_then(Value::as_i64).ok_or(SetError::Claims("iat is missing or not an integer".into()))?;
    if iat > now.saturating_add(IAT_AHEAD_SECONDS) {
        return Err(SetError::Claims("iat is in the future".into()));
    }
    let txn = match claims.get("txn") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(SetError::Claims("txn is not a string".into())),
    };
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .ok_or(SetError::Claims("events is missing or not an object".into()))?;
    // SSF 1.0: exactly one event per SET.
    let (event_type, event) = match (events.len(), events.iter().next()) {
        (1, Some((t, Value::Object(e)))) if !t.is_empty() && t.len() <= 256 => (t.clone(), e.clone()),
        _ => return Err(SetError::Claims("events must hold exactly one event, an object".into())),
    };
    // SSF puts the subject in `sub_id`; CAEP/RISC before SSF 1.0 put it in the event's `subject`.
    let subject = match (claims.get("sub_id"), event.get("subject")) {
        (Some(s), None) | (None, Some(s)) => Subject::parse(s).map_err(SetError::Subject)?,
        (Some(a), Some(b)) if a == b => Subject::parse(a).map_err(SetError::Subject)?,
        (Some(_), Some(_)) => return Err(SetError::Subject("sub_id and the event's subject differ".into())),
        (None, None) => return Err(SetError::Subject("no sub_id".into())),
    };
    Ok(SecurityEvent { jti, iat, txn, event_type, event, subject })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::mint::{sign_jws, SigningKey};
    use serde_json::json;

    const ISS: &str = "https://idp.example";
    const AUD: &str = "https://feed.bank.example";
    const NOW: i64 = 1_800_000_000;

    fn key() -> SigningKey {
        SigningKey::es256_from_bytes(&[7u8; 32]).unwrap()
    }

    fn keys() -> Vec<VerificationKey> {
        let jwk: crate::engine::keys::Jwk = serde_json::from_value(key().public_jwk("t1")).unwrap();
        vec![jwk.to_key().unwrap()]
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": AUD, "jti": "set-1", "iat": NOW,
            "sub_id": {"format": "opaque", "id": "moneywise-app"},
            "events": {"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {"reason": "hijacking"}}})
    }

    fn header() -> Value {
        json!({"alg": "ES256", "kid": "t1", "typ": "secevent+jwt"})
    }

    fn check(header: &Value, claims: &Value) -> Result<SecurityEvent, SetError> {
        let keys = keys();
        let trust = Trust { issuer: ISS, audience: AUD, algorithms: &[Alg::ES256, Alg::RS256], keys: &keys };
        validate(&sign_jws(header, claims, &key()), &trust, NOW)
    }

    #[test]
    fn a_good_set_is_accepted_with_its_subject() {
        let e = check(&header(), &claims()).unwrap();
        assert_eq!(e.jti, "set-1");
        assert_eq!(e.subject.client(), Some("moneywise-app"));
        assert!(e.event_type.ends_with("account-disabled"));
        let mut c = claims();
        c["aud"] = json!(["other", AUD]);
        assert!(check(&json!({"alg": "ES256", "kid": "t1", "typ": "application/secevent+jwt"}), &c).is_ok());
    }

    #[test]
    fn each_bad_set_is_refused_with_its_rfc8935_code() {
        let mut cases: Vec<(Value, Value, &str, &str)> = Vec::new();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            c
        };
        cases.push((json!({"alg": "ES256", "kid": "t1", "typ": "JWT"}), claims(), "typ", "invalid_request"));
        cases.push((json!({"alg": "ES256", "kid": "t1"}), claims(), "typ", "invalid_request"));
        cases.push((
            json!({"alg": "ES256", "kid": "nope", "typ": "secevent+jwt"}),
            claims(),
            "kid_unknown",
            "invalid_key",
        ));
        cases.push((
            json!({"alg": "PS256", "kid": "t1", "typ": "secevent+jwt"}),
            claims(),
            "alg_not_allowed",
            "invalid_key",
        ));
        cases.push((
            json!({"alg": "none", "kid": "t1", "typ": "secevent+jwt"}),
            claims(),
            "alg_not_allowed",
            "invalid_key",
        ));
        cases.push((header(), with(&|c| c["iss"] = json!("https://evil.example")), "issuer", "invalid_issuer"));
        cases.push((header(), with(&|c| c["aud"] = json!("https://other.example")), "audience", "invalid_audience"));
        cases.push((header(), with(&|c| c["sub"] = json!("moneywise-app")), "sub_present", "invalid_request"));
        cases.push((header(), with(&|c| c["exp"] = json!(NOW + 60)), "exp_present", "invalid_request"));
        cases.push((
            header(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "claims",
            "invalid_request",
        ));
        cases.push((
            header(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
            "claims",
            "invalid_request",
        ));
        cases.push((header(), with(&|c| c["iat"] = json!(NOW + 3600)), "claims", "invalid_request"));
        cases.push((header(), with(&|c| c["events"] = json!({})), "claims", "invalid_request"));
        cases.push((header(), with(&|c| c["events"] = json!({"a": {}, "b": {}})), "claims", "invalid_request"));
        cases.push((header(), with(&|c| c["events"] = json!({"a": "x"})), "claims", "invalid_request"));
        cases.push((
            header(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub_id");
            }),
            "subject",
            "invalid_request",
        ));
        cases.push((header(), with(&|c| c["sub_id"] = json!({"format": "opaque"})), "subject", "invalid_request"));
        for (h, c, label, code) in cases {
            let err = check(&h, &c).unwrap_err();
            assert_eq!((err.label(), err.code()), (label, code), "{h} {c}");
        }
    }

    #[test]
    fn a_forged_or_broken_token_is_refused() {
        let keys = keys();
        let trust = Trust { issuer: ISS, audience: AUD, algorithms: &[Alg::ES256], keys: &keys };
        let good = sign_jws(&header(), &claims(), &key());
        let other = SigningKey::es256_from_bytes(&[9u8; 32]).unwrap();
        let forged = sign_jws(&header(), &claims(), &other);
        assert_eq!(validate(&forged, &trust, NOW).unwrap_err(), SetError::Signature);
        let (head, rest) = good.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let swapped = format!("{head}.{}.{sig}", crate::engine::base64url::encode(br#"{"iss":"x"}"#));
        assert_eq!(validate(&swapped, &trust, NOW).unwrap_err().label(), "signature");
        for bad in ["", "a.b", "a.b.c.d", "!!!.e30.", &good[..good.len() / 2]] {
            assert!(validate(bad, &trust, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_legacy_event_subject_is_read_and_must_agree_with_sub_id() {
        let mut c = claims();
        let sub = c.as_object_mut().unwrap().remove("sub_id").unwrap();
        c["events"] =
            json!({"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {"subject": sub.clone()}});
        assert_eq!(check(&header(), &c).unwrap().subject.client(), Some("moneywise-app"));
        c["sub_id"] = json!({"format": "opaque", "id": "other-app"});
        assert_eq!(check(&header(), &c).unwrap_err().label(), "subject");
    }
}

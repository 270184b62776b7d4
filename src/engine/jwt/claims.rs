//! The access-token claims nhi-guard reads (RFC 9068 profile), and their normalised form.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// RFC 7519 NumericDate: seconds since the epoch, integer or (rarely) fractional. Fractions truncate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericDate(pub i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v).map(NumericDate).map_err(|_| E::custom("date out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && v.abs() < 1e15 {
                    // In range by the check above: the cast is exact for whole numbers below 2^53.
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(NumericDate(v.floor() as i64))
                } else {
                    Err(E::custom("date out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains_any(&self, accepted: &[String]) -> bool {
        match self {
            Audience::One(a) => accepted.iter().any(|x| x == a),
            Audience::Many(list) => list.iter().any(|a| accepted.iter().any(|x| x == a)),
        }
    }
}

/// Access-token claims as they arrive. Unknown claims are ignored; duplicated members are a
/// decode error (serde refuses duplicate fields), which the caller reports as malformed.
#[derive(Debug, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Option<Audience>,
    pub exp: Option<NumericDate>,
    pub nbf: Option<NumericDate>,
    pub iat: Option<NumericDate>,
    pub jti: Option<String>,
    pub client_id: Option<String>,
    /// RFC 9068 / RFC 8693: space-separated scopes.
    pub scope: Option<String>,
    /// The array form some authorization servers use instead of `scope`.
    pub scp: Option<Vec<String>>,
    /// Consent carried in the token: its id (UK Open Banking names it either way)...
    pub consent_id: Option<String>,
    pub openbanking_intent_id: Option<String>,
    /// ...and what it grants (RFC 9396).
    pub authorization_details: Option<Vec<AuthorizationDetail>>,
    /// RFC 8693 delegation: the actor (and, nested, its own actors).
    pub act: Option<serde_json::Value>,
    /// RFC 7800 confirmation: the key or certificate the token is bound to.
    pub cnf: Option<Confirmation>,
}

/// `cnf` members nhi-guard enforces. Others (`jwk`, `kid`) are refused: a binding we cannot check
/// must not pass as no binding.
#[derive(Debug, Clone, Deserialize)]
pub struct Confirmation {
    /// RFC 8705: base64url SHA-256 of the client certificate (DER).
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: Option<String>,
    /// RFC 9449: base64url SHA-256 JWK thumbprint (RFC 7638) of the DPoP key.
    pub jkt: Option<String>,
    #[serde(flatten)]
    pub other: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One RFC 9396 `authorization_details` entry; members nhi-guard does not read are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizationDetail {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub locations: Vec<String>,
}

/// Deepest `act` nesting read; deeper chains are refused as malformed.
pub const MAX_ACT_DEPTH: usize = 8;

/// The `act` chain, outermost (current) actor first. `None` if malformed (not objects, no `sub`, too deep).
pub fn actor_chain(act: &serde_json::Value) -> Option<Vec<String>> {
    let mut chain = Vec::new();
    let mut cur = act;
    loop {
        let sub = cur.get("sub")?.as_str()?;
        if sub.is_empty() || chain.len() == MAX_ACT_DEPTH {
            return None;
        }
        chain.push(sub.to_string());
        match cur.get("act") {
            None => return Some(chain),
            Some(next) => cur = next,
        }
    }
}

impl AccessTokenClaims {
    /// The token's scopes, from `scope` or `scp`. Both at once is ambiguous and refused (`None`).
    pub fn scopes(&self) -> Option<Vec<String>> {
        match (&self.scope, &self.scp) {
            (Some(_), Some(_)) => None,
            (Some(s), None) => Some(s.split(' ').filter(|x| !x.is_empty()).map(String::from).collect()),
            (None, Some(list)) => Some(list.clone()),
            (None, None) => Some(Vec::new()),
        }
    }
}

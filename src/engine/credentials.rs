//! What the request presents: the access token from exactly one `Authorization` header (scheme
//! `Bearer` or `DPoP`), the DPoP proof, and the mTLS peer identity Envoy verified.

use crate::engine::reason::Reason;

/// Prefix of every header nhi-guard sets upstream. Client-sent headers with it are always removed.
pub const IDENTITY_HEADER_PREFIX: &str = "x-nhi-";

/// What the host knows about a request, gathered once.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// `:path` as Envoy forwards it (after its own normalisation), query included.
    pub path: &'a str,
    /// Every `Authorization` header value, in order, as raw bytes.
    pub authorization: &'a [&'a [u8]],
    /// Every value of the policy's consent header (`consent.header`), as raw bytes.
    pub consent: &'a [&'a [u8]],
    /// Every `DPoP` header value, as raw bytes.
    pub dpop: &'a [&'a [u8]],
    /// The mTLS client certificate Envoy verified, if the connection has one.
    pub peer: Option<PeerCertificate<'a>>,
    /// Unix seconds.
    pub now: i64,
    /// The request carries a method-override header (`X-HTTP-Method-Override`, `X-HTTP-Method`,
    /// `X-Method-Override`): frameworks that honour them would run another method than the one
    /// the policy decided on, so such requests are refused.
    pub method_override: bool,
}

impl<'a> RequestFacts<'a> {
    /// A request with no credentials, no certificate and no method override: tools and tests fill
    /// in what they need with struct-update syntax.
    pub fn new(method: &'a str, path: &'a str, now: i64) -> RequestFacts<'a> {
        RequestFacts {
            method,
            path,
            authorization: &[],
            consent: &[],
            dpop: &[],
            peer: None,
            now,
            method_override: false,
        }
    }
}

/// Headers some frameworks take as the real method (lowercase, as Envoy hands them over).
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// What a request header is to the engine. One place decides, for the filter (which walks Envoy's
/// header map) and for `nhi-guard explain` (which takes headers from its command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRole {
    Authorization,
    Dpop,
    /// The policy's consent header (`consent.header`).
    Consent,
    /// `X-HTTP-Method-Override` and its kin: refused.
    MethodOverride,
    /// A client-sent `x-nhi-*` header: removed before the request goes anywhere.
    Identity,
    Other,
}

/// The role of header `name` (lowercase, as Envoy hands names over).
pub fn header_role(name: &[u8], consent_header: &[u8]) -> HeaderRole {
    match name {
        b"authorization" => HeaderRole::Authorization,
        b"dpop" => HeaderRole::Dpop,
        n if METHOD_OVERRIDE_HEADERS.iter().any(|h| h.as_bytes() == n) => HeaderRole::MethodOverride,
        n if n == consent_header => HeaderRole::Consent,
        n if n.starts_with(IDENTITY_HEADER_PREFIX.as_bytes()) => HeaderRole::Identity,
        _ => HeaderRole::Other,
    }
}

/// The `Authorization` scheme the token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    /// RFC 9449: the token is DPoP-bound and a `DPoP` proof header comes with it.
    Dpop,
}

/// The access token and how it was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedToken<'a> {
    pub scheme: Scheme,
    pub token: &'a str,
}

/// The client certificate of a mutual-TLS connection, as Envoy verified it against the listener's
/// trusted CA: its SHA-256 thumbprint and its first URI SAN (a SPIFFE ID for workloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCertificate<'a> {
    pub sha256: [u8; 32],
    pub uri_san: Option<&'a str>,
}

impl PeerCertificate<'_> {
    /// The SPIFFE ID, when the URI SAN is one.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.uri_san.filter(|u| u.starts_with("spiffe://"))
    }
}

/// Envoy's `connection.sha256_peer_certificate_digest`: 64 lowercase hex digits.
pub fn parse_hex_digest(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let nibble = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
        *out.get_mut(i)? = nibble(*pair.first()?)? << 4 | nibble(*pair.get(1)?)?;
    }
    Some(out)
}

/// Exactly one `DPoP` header value (RFC 9449 §4.3 check 1), as text. `Ok(None)` when absent.
pub fn dpop_proof<'a>(values: &[&'a [u8]]) -> Result<Option<&'a str>, Reason> {
    let value = match values {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(Reason::DpopProofDuplicated),
    };
    let value = std::str::from_utf8(value).map_err(|_| Reason::DpopProofMalformed)?;
    if value.contains(',') {
        // Repeated headers joined by a proxy: still two proofs.
        return Err(Reason::DpopProofDuplicated);
    }
    Ok(Some(value.trim_matches(|c| c == ' ' || c == '\t')))
}

/// RFC 6750 §2.1 b64token characters.
fn is_b64token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// Picks the access token out of every `Authorization` value the request carried.
///
/// Two headers are refused, and so is one value holding two credentials: Envoy joins repeated
/// inline headers with a comma, and a comma never occurs in a b64token. Values are raw bytes
/// (HTTP allows obs-text); anything that is not ASCII is refused, never decoded.
pub fn access_token<'a>(authorization: &[&'a [u8]]) -> Result<PresentedToken<'a>, Reason> {
    let value = match authorization {
        [] => return Err(Reason::TokenMissing),
        [one] => *one,
        _ => return Err(Reason::TokenDuplicated),
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return Err(Reason::TokenMalformed);
    };
    if value.contains(',') {
        return Err(Reason::TokenDuplicated);
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Reason::AuthSchemeUnsupported);
    };
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Reason::TokenMissing);
    }
    if !token.bytes().all(is_b64token_byte) {
        return Err(Reason::TokenMalformed);
    }
    Ok(PresentedToken { scheme, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn bearer_token<'a>(values: &[&'a str]) -> Result<&'a str, Reason> {
        let bytes: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        match super::access_token(&bytes) {
            Ok(PresentedToken { scheme: Scheme::Bearer, token }) => Ok(token),
            Ok(_) => Err(Reason::AuthSchemeUnsupported),
            Err(r) => Err(r),
        }
    }

    #[test]
    fn non_ascii_values_are_refused() {
        assert_eq!(super::access_token(&[b"Bearer \xff\xfe"]), Err(Reason::TokenMalformed));
        assert_eq!(super::access_token(&[b"Bearer caf\xc3\xa9"]), Err(Reason::TokenMalformed));
        assert_eq!(dpop_proof(&[b"a.b\xff.c"]), Err(Reason::DpopProofMalformed));
    }

    #[test]
    fn dpop_scheme_and_exactly_one_proof() {
        assert_eq!(
            super::access_token(&[b"DPoP abc.def.ghi"]),
            Ok(PresentedToken { scheme: Scheme::Dpop, token: "abc.def.ghi" })
        );
        assert_eq!(super::access_token(&[b"dpop abc"]).map(|p| p.scheme), Ok(Scheme::Dpop));
        assert_eq!(dpop_proof(&[]), Ok(None));
        assert_eq!(dpop_proof(&[b" a.b.c "]), Ok(Some("a.b.c")));
        assert_eq!(dpop_proof(&[b"a.b.c", b"d.e.f"]), Err(Reason::DpopProofDuplicated));
        assert_eq!(dpop_proof(&[b"a.b.c, d.e.f"]), Err(Reason::DpopProofDuplicated));
    }

    #[test]
    fn envoy_digests_decode_and_spiffe_ids_are_uri_sans_only() {
        let hex = "00ff10ab".repeat(8);
        let d = parse_hex_digest(hex.as_bytes()).unwrap();
        assert_eq!(&d[..4], &[0x00, 0xff, 0x10, 0xab]);
        assert_eq!(parse_hex_digest(b"00ff"), None);
        assert_eq!(parse_hex_digest("zz".repeat(32).as_bytes()), None);
        let peer = PeerCertificate { sha256: d, uri_san: Some("spiffe://bank.internal/ns/a/sa/b") };
        assert_eq!(peer.spiffe_id(), Some("spiffe://bank.internal/ns/a/sa/b"));
        let web = PeerCertificate { sha256: d, uri_san: Some("https://moneywise.example") };
        assert_eq!(web.spiffe_id(), None);
    }

    #[test]
    fn takes_exactly_one_bearer_token() {
        assert_eq!(bearer_token(&["Bearer abc.def.ghi"]), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(&["bearer abc"]), Ok("abc"), "scheme is case-insensitive");
        assert_eq!(bearer_token(&[]), Err(Reason::TokenMissing));
        assert_eq!(bearer_token(&["Bearer "]), Err(Reason::TokenMissing));
        assert_eq!(bearer_token(&["Bearer a", "Bearer b"]), Err(Reason::TokenDuplicated));
        assert_eq!(bearer_token(&["Bearer a,Bearer b"]), Err(Reason::TokenDuplicated));
        assert_eq!(bearer_token(&["Basic dXNlcjpwYXNz"]), Err(Reason::AuthSchemeUnsupported));
        assert_eq!(bearer_token(&["Digest abc"]), Err(Reason::AuthSchemeUnsupported));
        assert_eq!(bearer_token(&["Bearer a b"]), Err(Reason::TokenMalformed));
        assert_eq!(bearer_token(&["Bearer a\"b"]), Err(Reason::TokenMalformed));
    }
}

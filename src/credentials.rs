//! What the request presents: the access token from exactly one `Authorization: Bearer` header.

use crate::reason::Reason;

/// RFC 6750 §2.1 b64token characters.
fn is_b64token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// Picks the bearer token out of every `Authorization` value the request carried.
///
/// Two headers are refused, and so is one value holding two credentials: Envoy joins repeated
/// inline headers with a comma, and a comma never occurs in a b64token. Values are raw bytes
/// (HTTP allows obs-text); anything that is not ASCII is refused, never decoded.
pub fn bearer_token<'a>(authorization: &[&'a [u8]]) -> Result<&'a str, Reason> {
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
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Reason::AuthSchemeUnsupported);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Reason::TokenMissing);
    }
    if !token.bytes().all(is_b64token_byte) {
        return Err(Reason::TokenMalformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn bearer_token<'a>(values: &[&'a str]) -> Result<&'a str, Reason> {
        let bytes: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        super::bearer_token(&bytes)
    }

    #[test]
    fn non_ascii_values_are_refused() {
        assert_eq!(super::bearer_token(&[b"Bearer \xff\xfe"]), Err(Reason::TokenMalformed));
        assert_eq!(super::bearer_token(&[b"Bearer caf\xc3\xa9"]), Err(Reason::TokenMalformed));
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
        assert_eq!(bearer_token(&["DPoP abc"]), Err(Reason::AuthSchemeUnsupported));
        assert_eq!(bearer_token(&["Bearer a b"]), Err(Reason::TokenMalformed));
        assert_eq!(bearer_token(&["Bearer a\"b"]), Err(Reason::TokenMalformed));
    }
}

//! Strict base64url without padding (RFC 7515 §2): the only encoding JWS compact form allows.
//!
//! Strict means one token has exactly one spelling: padding, whitespace, the `+`/`/` alphabet and
//! non-zero trailing bits are all refused, so a cached token cannot be replayed under a second spelling.

use base64ct::{Base64UrlUnpadded, Encoding};

/// Decodes strict base64url. Returns `None` on any deviation (base64ct refuses padding, other
/// alphabets, whitespace, impossible lengths and non-zero trailing bits; the tests below hold it to that).
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    Base64UrlUnpadded::decode_vec(std::str::from_utf8(input).ok()?).ok()
}

/// Encodes base64url without padding.
pub fn encode(input: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for len in 0..70 {
            let slice = &data[..len];
            assert_eq!(decode(encode(slice).as_bytes()).as_deref(), Some(slice));
        }
    }

    #[test]
    fn refuses_every_non_canonical_spelling() {
        assert_eq!(decode(b"AQ==").as_deref(), None, "padding");
        assert_eq!(decode(b"A+8").as_deref(), None, "standard alphabet");
        assert_eq!(decode(b"A/8").as_deref(), None, "standard alphabet");
        assert_eq!(decode(b"AQ B").as_deref(), None, "whitespace");
        assert_eq!(decode(b"A").as_deref(), None, "impossible length");
        assert_eq!(decode(b"AR").as_deref(), None, "non-zero trailing bits");
        assert_eq!(decode(b"AQE").as_deref(), Some(&[1u8, 1][..]));
        assert_eq!(decode(b"AQF").as_deref(), None, "non-zero trailing bits");
        assert_eq!(decode(b"").as_deref(), Some(&[][..]));
    }
}

//! Strict base64url without padding (RFC 7515 §2): the only encoding JWS compact form allows.
//!
//! Strict means one token has exactly one spelling: padding, whitespace, the `+`/`/` alphabet and
//! non-zero trailing bits are all refused, so a cached token cannot be replayed under a second spelling.

const INVALID: u8 = 0xff;

const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

const ENCODE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Decodes strict base64url. Returns `None` on any deviation.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut chunks = input.chunks_exact(4);
    for chunk in &mut chunks {
        let mut n: u32 = 0;
        for &c in chunk {
            let v = DECODE[c as usize];
            if v == INVALID {
                return None;
            }
            n = (n << 6) | u32::from(v);
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut n: u32 = 0;
        for &c in rest {
            let v = DECODE[c as usize];
            if v == INVALID {
                return None;
            }
            n = (n << 6) | u32::from(v);
        }
        match rest.len() {
            2 => {
                // 12 bits carry 8: the low 4 must be zero for the spelling to be canonical.
                if n & 0x0f != 0 {
                    return None;
                }
                out.push((n >> 4) as u8);
            }
            3 => {
                if n & 0x03 != 0 {
                    return None;
                }
                out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Encodes base64url without padding.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = ((n >> (18 - 6 * i)) & 0x3f) as usize;
            out.push(char::from(ENCODE[idx]));
        }
    }
    out
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

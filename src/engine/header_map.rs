//! The proxy-wasm serialized header map, walked in place.
//!
//! Layout (proxy-wasm ABI): a little-endian u32 count, then `count` pairs of u32 (name length,
//! value length), then each name and each value followed by a NUL byte. The filter shell fetches the
//! buffer in one call; this walks it without copying, so a request costs one allocation, not two
//! per header. Pure, so it is tested natively and under wasm-bindgen.

/// Every (name, value) pair of a serialized map, in order. A malformed buffer ends the walk early;
/// a request that loses `:method` or `:path` that way is refused as ambiguous, so that fails closed.
pub fn pairs(bytes: &[u8]) -> Pairs<'_> {
    let count = read_u32(bytes, 0).unwrap_or(0);
    Pairs { bytes, index: 0, count, data: count.saturating_mul(8).saturating_add(4) }
}

fn read_u32(b: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

pub struct Pairs<'a> {
    bytes: &'a [u8],
    index: usize,
    count: usize,
    data: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        // Offsets come from the host's buffer: every step is checked, a bad one ends the walk.
        let sizes = self.index.checked_mul(8)?.checked_add(4)?;
        let (name_len, value_len) = (read_u32(self.bytes, sizes)?, read_u32(self.bytes, sizes.checked_add(4)?)?);
        let name = self.bytes.get(self.data..self.data.checked_add(name_len)?)?;
        let value_at = self.data.checked_add(name_len)?.checked_add(1)?;
        let value = self.bytes.get(value_at..value_at.checked_add(value_len)?)?;
        self.data = value_at.checked_add(value_len)?.checked_add(1)?;
        self.index = self.index.checked_add(1)?;
        Some((name, value))
    }
}

/// Serializes pairs in the same layout (tests and fuzzing build inputs with it).
pub fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn walks_what_serialize_writes() {
        let input: Vec<(&[u8], &[u8])> =
            vec![(b":method", b"GET"), (b":path", b"/a"), (b"x-empty", b""), (b"x-bin", b"\xff\x00\xfe")];
        let bytes = serialize(&input);
        let got: Vec<_> = pairs(&bytes).collect();
        assert_eq!(got, input);
    }

    #[test]
    fn malformed_buffers_end_the_walk_without_panicking() {
        let good = serialize(&[(b":method", b"GET"), (b":path", b"/accounts")]);
        for cut in 0..good.len() {
            let _ = pairs(&good[..cut]).count();
        }
        assert_eq!(pairs(&[]).count(), 0);
        assert_eq!(pairs(&[0xff, 0xff, 0xff, 0xff]).count(), 0, "a huge count with no data");
        let mut lying = good.clone();
        lying[4] = 200; // first name claims 200 bytes
        assert!(pairs(&lying).count() < 2);
    }
}

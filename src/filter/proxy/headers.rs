//! Reads the request header map in one host call, keeping the host's serialized buffer.
//!
//! The SDK's `get_map`/`get_map_bytes` copy every name and value (and the string variant panics on
//! a non-UTF-8 value, which would take the worker's VM down). `crate::engine::header_map` walks this buffer
//! in place instead.

use proxy_wasm::types::{MapType, Status};

extern "C" {
    // The proxy-wasm ABI call behind the SDK's `get_map`; declared here to keep the raw buffer.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// The serialized request header map, or `None` if the host refused.
pub fn request_headers() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated through this module's
    // `proxy_on_memory_allocate` (the SDK's: a `Vec<u8>` with capacity == size), or nothing.
    let status = unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) };
    match status {
        Status::Ok if data.is_null() || size == 0 => Some(Vec::new()),
        // SAFETY: as above; ownership of the buffer passes to us, exactly as the SDK's `get_map` takes it.
        Status::Ok => Some(unsafe { Vec::from_raw_parts(data, size, size) }),
        _ => None,
    }
}

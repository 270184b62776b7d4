//! RFC 8935 push delivery: `POST /ssf/push/{stream}` with `Content-Type: application/secevent+jwt`
//! and the stream's credentials (its bearer secret, its client certificate, or both). 202 only
//! after the SET is committed; 400 with an RFC 8935 error body (`{"err": ..., "description": ...}`)
//! when it is refused; 503 when the database did not take it (the transmitter retries; a retry of a stored SET is acknowledged, not applied twice).

use crate::feed::config::{Delivery, Presented};
use crate::feed::metrics::labels;
use crate::feed::receive::{receive, Received};
use crate::feed::server::{json, App};
use crate::feed::tls::PeerIdentity;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

fn error(status: StatusCode, err: &str, description: &str) -> Response {
    json(status, serde_json::json!({"err": err, "description": description}))
}

/// The bearer credential, if the header carries exactly one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(v), None) = (values.next(), values.next()) else { return None };
    let v = v.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

pub async fn push(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(stream) = app.stream(&id) else {
        return error(StatusCode::NOT_FOUND, "invalid_request", "no such stream");
    };
    if !matches!(stream.delivery, Delivery::Push { .. }) {
        return error(StatusCode::NOT_FOUND, "invalid_request", "this stream is polled, not pushed");
    }
    let refused =
        |reason: &str| app.metrics.sets_refused.get_or_create(&labels(&[("stream", &id), ("reason", reason)])).inc();
    let presented = Presented { bearer: bearer(&headers), peer: peer.as_ref().map(|p| &p.0) };
    if !stream.delivery.push_authenticates(&presented) {
        refused("unauthenticated");
        let mut r = error(StatusCode::UNAUTHORIZED, "authentication_failed", "this stream's credentials are required");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return r;
    }
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = media.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/secevent+jwt") {
        refused("content_type");
        return error(StatusCode::BAD_REQUEST, "invalid_request", "Content-Type must be application/secevent+jwt");
    }
    let bytes = match axum::body::to_bytes(body, app.config.limits.max_set_bytes).await {
        Ok(b) => b,
        Err(_) => {
            refused("too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the SET is larger than this receiver accepts",
            );
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        refused("malformed");
        return error(StatusCode::BAD_REQUEST, "invalid_request", "the body is not UTF-8");
    };
    match receive(&app, stream, text, "push").await {
        Received::Stored(_) | Received::Duplicate(_) => StatusCode::ACCEPTED.into_response(),
        Received::Refused(e) => error(StatusCode::BAD_REQUEST, e.code(), &e.description()),
        Received::Unavailable => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "not stored; retry");
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
            r
        }
    }
}

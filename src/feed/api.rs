//! The offboarding and consent API for the bank's own systems. Every call names its caller (a
//! bearer secret, a client certificate, or both, per caller; each granted its actions), carries a reason, is idempotent (a repeat
//! answers `unchanged` and keeps the version) and becomes an audit event in its stream. A change
//! is in the served document from the next fetch on.
//!
//! `POST /v1/partners/{id}/offboard|suspend|reinstate`, `POST /v1/clients/{id}/revoke`,
//! `POST /v1/consents/{id}/revoke` (optional `expires_at`), `POST /v1/tokens/revoke` (`iss`, `jti`),
//! `POST /v1/keys/retire` (`iss`, `kid`); body `{"reason": "..."}` plus those fields.

use crate::feed::change::Change;
use crate::feed::config::Caller;
use crate::feed::config::Presented;
use crate::feed::metrics::labels;
use crate::feed::push::bearer;
use crate::feed::server::{json, App};
use crate::feed::store::{ChangeResult, Write};
use crate::feed::tls::PeerIdentity;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json as j;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityBody {
    reason: String,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    reason: String,
    iss: String,
    jti: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    reason: String,
    iss: String,
    kid: String,
}

/// An identifier the feed will list: 1 to 256 visible characters.
fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

fn caller<'a>(app: &'a App, p: &Presented<'_>) -> Option<&'a Caller> {
    // Check every caller, so the time taken does not say which one matched.
    let mut found = None;
    for c in &app.config.callers {
        if c.authenticates(p) && found.is_none() {
            found = Some(c);
        }
    }
    found
}

/// The caller, before anything else about the request is looked at.
fn authenticate<'a>(app: &'a App, headers: &HeaderMap, peer: Option<&Extension<PeerIdentity>>) -> Option<&'a Caller> {
    caller(app, &Presented { bearer: bearer(headers), peer: peer.map(|p| &p.0) })
}

fn unauthenticated(app: &App) -> Response {
    app.metrics.api_changes.get_or_create(&labels(&[("action", "unknown"), ("outcome", "denied")])).inc();
    let mut r = json(StatusCode::UNAUTHORIZED, j!({"error": "unauthenticated"}));
    r.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    r
}

async fn body_of<T: serde::de::DeserializeOwned>(app: &App, body: Body) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(body, app.config.limits.max_api_body_bytes)
        .await
        .map_err(|_| json(StatusCode::PAYLOAD_TOO_LARGE, j!({"error": "body_too_large"})))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| json(StatusCode::BAD_REQUEST, j!({"error": "invalid_body", "detail": e.to_string()})))
}

async fn act(app: &App, who: &Caller, change: Result<Change, String>, reason: &str) -> Response {
    let count = |action: &str, outcome: &str| {
        app.metrics.api_changes.get_or_create(&labels(&[("action", action), ("outcome", outcome)])).inc()
    };
    let change = match change {
        Ok(c) => c,
        Err(e) => {
            count("unknown", "invalid");
            return json(StatusCode::BAD_REQUEST, j!({"error": "invalid_request", "detail": e}));
        }
    };
    let action = change.action();
    if !who.actions.contains(action) {
        count(action, "denied");
        return json(
            StatusCode::FORBIDDEN,
            j!({"error": "forbidden", "detail": format!("{} may not {action}", who.name)}),
        );
    }
    if reason.trim().is_empty() || reason.len() > 512 {
        count(action, "invalid");
        return json(
            StatusCode::BAD_REQUEST,
            j!({"error": "invalid_request", "detail": "reason: 1 to 512 characters, required"}),
        );
    }
    let changes = [change];
    let write = Write { changes: &changes, who: &who.name, why: reason, received: None, now: crate::feed::unix_now() };
    match app.store.apply(write, app.retention).await {
        Ok(o) => {
            app.audit.write(&o.audit);
            app.invalidate();
            let result = o.results.first().copied().unwrap_or(ChangeResult::Unchanged);
            let outcome = result.name();
            count(action, outcome);
            tracing::info!(who = %who.name, action, target = %changes[0].target(), outcome, version = o.version, "api change");
            let body = j!({"action": action, "target": changes[0].target(), "outcome": outcome, "version": o.version});
            if result == ChangeResult::Conflict {
                json(
                    StatusCode::CONFLICT,
                    j!({"error": "partner_offboarded", "detail": "an offboarding is final", "action": action}),
                )
            } else {
                json(StatusCode::OK, body)
            }
        }
        Err(e) => {
            app.database_failed(&e.0);
            count(action, "unavailable");
            json(StatusCode::SERVICE_UNAVAILABLE, j!({"error": "database_unavailable", "detail": "not stored; retry"}))
        }
    }
}

pub async fn entity_action(
    State(app): State<Arc<App>>,
    Path((kind, id, verb)): Path<(String, String, String)>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(who) = authenticate(&app, &headers, peer.as_ref()) else {
        return unauthenticated(&app);
    };
    let b: EntityBody = match body_of(&app, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let change = if !valid_id(&id) {
        Err("the id must be 1 to 256 visible characters".to_string())
    } else {
        match (kind.as_str(), verb.as_str()) {
            ("partners", "offboard") => Ok(Change::OffboardPartner { partner: id }),
            ("partners", "suspend") => Ok(Change::SuspendPartner { partner: id }),
            ("partners", "reinstate") => Ok(Change::ReinstatePartner { partner: id }),
            ("clients", "revoke") => Ok(Change::RevokeClient { client: id }),
            ("consents", "revoke") => match b.expires_at.as_deref().map(crate::engine::timestamp::parse_rfc3339) {
                Some(None) => Err("expires_at is not RFC 3339".into()),
                Some(Some(t)) => Ok(Change::RevokeConsent { consent: id, expires_at: Some(t) }),
                None => Ok(Change::RevokeConsent { consent: id, expires_at: None }),
            },
            _ => return json(StatusCode::NOT_FOUND, j!({"error": "not_found"})),
        }
    };
    if b.expires_at.is_some() && kind != "consents" {
        return json(
            StatusCode::BAD_REQUEST,
            j!({"error": "invalid_request", "detail": "expires_at is for consents only"}),
        );
    }
    act(&app, who, change, &b.reason).await
}

/// `POST /v1/tokens/revoke` and `POST /v1/keys/retire`: an issuer and an id (`jti`, `kid`).
async fn issued_action<B: serde::de::DeserializeOwned>(
    app: &App,
    peer: Option<Extension<PeerIdentity>>,
    headers: &HeaderMap,
    body: Body,
    parts: fn(B) -> (String, String, String),
    change: fn(String, String) -> Change,
) -> Response {
    let Some(who) = authenticate(app, headers, peer.as_ref()) else {
        return unauthenticated(app);
    };
    let (reason, iss, id) = match body_of(app, body).await {
        Ok(b) => parts(b),
        Err(r) => return r,
    };
    let c = if valid_id(&iss) && valid_id(&id) {
        Ok(change(iss, id))
    } else {
        Err("iss and the id must be 1 to 256 visible characters".into())
    };
    act(app, who, c, &reason).await
}

pub async fn revoke_token(
    State(app): State<Arc<App>>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let parts = |b: TokenBody| (b.reason, b.iss, b.jti);
    issued_action(&app, peer, &headers, body, parts, |iss, jti| Change::RevokeToken { iss, jti }).await
}

pub async fn retire_key(
    State(app): State<Arc<App>>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let parts = |b: KeyBody| (b.reason, b.iss, b.kid);
    issued_action(&app, peer, &headers, body, parts, |iss, kid| Change::RetireKey { iss, kid }).await
}

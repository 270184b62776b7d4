//! Receiving one SET, however it arrived (pushed or polled): validate, map, store with its audit
//! events, count. The answer is only "stored" after the commit.

use crate::engine::jwt::jws;
use crate::feed::config::Stream;
use crate::feed::mapping::{event_label, map, Mapping};
use crate::feed::metrics::labels;
use crate::feed::server::App;
use crate::feed::set::{validate, SetError, Trust};
use crate::feed::store::{ReceivedSet, Write};

#[derive(Debug)]
pub enum Received {
    /// Stored (mapped or not): acknowledge. Carries the SET's `jti`.
    Stored(String),
    /// Stored before: acknowledge, nothing applied again.
    Duplicate(String),
    Refused(SetError),
    /// The database did not take it, or the transmitter's keys could not be fetched: do not
    /// acknowledge (the transmitter delivers it again).
    Unavailable,
}

pub async fn receive(app: &App, stream: &Stream, token: &str, delivery: &str) -> Received {
    let m = &app.metrics;
    m.sets_received.get_or_create(&labels(&[("stream", &stream.id), ("delivery", delivery)])).inc();
    let kid = jws::decode::<serde::de::IgnoredAny>(token.trim()).ok().and_then(|j| j.header.kid);
    let keys = match app.stream_keys.get(&stream.id) {
        Some(k) => match k.keys(&app.http, kid.as_deref()).await {
            Ok(keys) => keys,
            Err(_) => {
                m.sets_refused.get_or_create(&labels(&[("stream", &stream.id), ("reason", "keys_unavailable")])).inc();
                return Received::Unavailable;
            }
        },
        None => std::sync::Arc::new(Vec::new()),
    };
    let trust =
        Trust { issuer: &stream.issuer, audience: &stream.audience, algorithms: &stream.algorithms, keys: &keys };
    let now = crate::feed::unix_now();
    let event = match validate(token, &trust, now) {
        Ok(e) => e,
        Err(e) => {
            m.sets_refused.get_or_create(&labels(&[("stream", &stream.id), ("reason", e.label())])).inc();
            tracing::warn!(stream = %stream.id, reason = e.label(), description = %e.description(), "SET refused");
            return Received::Refused(e);
        }
    };
    let label = event_label(&event.event_type);
    let (changes, outcome) = match map(&event) {
        Mapping::Changes(c) => (c, "mapped".to_string()),
        Mapping::Ignored(why) => (Vec::new(), format!("unmapped:{why}")),
    };
    // CAEP's reason_admin is a language map ({"en": "..."}); keep it short.
    let why: String = match event.event.get("reason_admin").or_else(|| event.event.get("reason")) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => label.clone(),
    }
    .chars()
    .take(256)
    .collect();
    let detail = serde_json::json!({
        "set_jti": event.jti, "event": event.event_type, "txn": event.txn, "iat": event.iat,
        "subject_format": event.subject.format(), "delivery": delivery,
    });
    let who = format!("ssf:{}", stream.id);
    let write = Write {
        changes: &changes,
        who: &who,
        why: &why,
        received: Some(ReceivedSet { stream: &stream.id, jti: &event.jti, event: &label, outcome: &outcome, detail }),
        now,
    };
    match app.store.apply(write, app.retention).await {
        Ok(o) if o.duplicate => {
            m.sets_duplicate.get_or_create(&labels(&[("stream", &stream.id)])).inc();
            Received::Duplicate(event.jti)
        }
        Ok(o) => {
            app.audit.write(&o.audit);
            if changes.is_empty() {
                let why = outcome.trim_start_matches("unmapped:");
                m.sets_unmapped
                    .get_or_create(&labels(&[("stream", &stream.id), ("event", &label), ("why", why)]))
                    .inc();
            } else {
                m.sets_accepted.get_or_create(&labels(&[("stream", &stream.id), ("event", &label)])).inc();
            }
            tracing::info!(stream = %stream.id, jti = %event.jti, event = %label, outcome = %outcome, version = o.version, "SET stored");
            app.invalidate();
            Received::Stored(event.jti)
        }
        Err(e) => {
            app.database_failed(&e.0);
            Received::Unavailable
        }
    }
}

//! The pipeline that turns request facts into a `Decision`, and the decision's HTTP rendering.
//!
//! route -> credential -> token -> machine authority. Pure: no host calls; the host shell
//! gathers `RequestFacts`, calls `Engine::decide`, and applies the result.

use crate::authority::{self, Authority};
use crate::credentials;
use crate::jwt::verifier::SignatureVerifier;
use crate::jwt::{Authenticator, VerifiedToken};
use crate::policy::{Policy, RouteRule};
use crate::reason::Reason;
use crate::route;
use std::rc::Rc;

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
    /// Unix seconds.
    pub now: i64,
}

/// The request may go upstream, with these verified identities.
#[derive(Debug)]
pub struct Allow<'p> {
    pub route: &'p RouteRule,
    pub authority: Authority<'p>,
    pub token: Rc<VerifiedToken>,
    pub cache_hit: bool,
}

/// The request is refused.
#[derive(Debug)]
pub struct Deny<'p> {
    pub reason: Reason,
    pub route: Option<&'p RouteRule>,
    /// The token's client, when the token got far enough to name one.
    pub client_id: Option<String>,
    /// The policy's realm, for the challenge.
    pub realm: &'p str,
}

#[derive(Debug)]
pub enum Decision<'p> {
    Allow(Allow<'p>),
    Deny(Deny<'p>),
}

impl<'p> Decision<'p> {
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny(d) => Some(d.reason),
        }
    }
}

/// A compiled policy plus this worker's verification state.
pub struct Engine {
    policy: Rc<Policy>,
    authenticator: Authenticator,
}

impl Engine {
    pub fn new(policy: Rc<Policy>, verifier: Box<dyn SignatureVerifier>) -> Self {
        let authenticator = Authenticator::new(&policy, verifier);
        Engine { policy, authenticator }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn backend(&self) -> &'static str {
        self.authenticator.backend()
    }

    pub fn cached_tokens(&self) -> usize {
        self.authenticator.cached_tokens()
    }

    pub fn decide(&mut self, facts: &RequestFacts<'_>) -> Decision<'_> {
        decide_with(&self.policy, &mut self.authenticator, facts)
    }
}

fn decide_with<'p>(policy: &'p Policy, auth: &mut Authenticator, facts: &RequestFacts<'_>) -> Decision<'p> {
    let realm = policy.realm.as_str();
    let deny = |reason, route, client_id| Decision::Deny(Deny { reason, route, client_id, realm });
    let Some((path, query)) = route::guard_path(facts.path) else {
        return deny(Reason::PathAmbiguous, None, None);
    };
    if query.is_some_and(route::query_has_access_token) {
        return deny(Reason::TokenInQuery, None, None);
    }
    let Some(route) = policy.routes.find(facts.method, path) else {
        return deny(Reason::RouteUnmatched, None, None);
    };
    let token = match credentials::bearer_token(facts.authorization) {
        Ok(t) => t,
        Err(r) => return deny(r, Some(route), None),
    };
    let authenticated = match auth.authenticate(policy, route, token, facts.now) {
        Ok(a) => a,
        Err(r) => return deny(r, Some(route), None),
    };
    match authority::check(policy, route, &authenticated.token, facts.now) {
        Ok(authority) => {
            Decision::Allow(Allow { route, authority, token: authenticated.token, cache_hit: authenticated.cache_hit })
        }
        Err(r) => deny(r, Some(route), Some(authenticated.token.client_id.clone())),
    }
}

impl Allow<'_> {
    /// The verified identity headers sent upstream (names are lowercase, prefixed `x-nhi-`).
    pub fn upstream_headers(&self) -> Vec<(&'static str, &str)> {
        let mut h = vec![
            ("x-nhi-route", self.route.id.as_str()),
            ("x-nhi-client", self.authority.client.id.as_str()),
            ("x-nhi-scopes", self.route.scope_string.as_str()),
            ("x-nhi-subject", self.token.subject.as_str()),
        ];
        if let Some(p) = self.authority.partner {
            h.push(("x-nhi-partner", p.id.as_str()));
        }
        h
    }
}

/// A denial as HTTP: status, headers and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Deny<'_> {
    pub fn response(&self, request_id: &str) -> DenyResponse {
        let scope = self.route.map_or("", |r| r.scope_string.as_str());
        let mut headers =
            vec![("content-type", "application/json".to_string()), ("cache-control", "no-store".to_string())];
        if let Some(challenge) = self.reason.www_authenticate(self.realm, scope) {
            headers.push(("www-authenticate", challenge));
        }
        let body = serde_json::json!({
            "error": self.reason.error_code(),
            "reason": self.reason.code(),
            "error_description": self.reason.description(),
            "route": self.route.map(|r| r.id.as_str()),
            "request_id": request_id,
        })
        .to_string();
        DenyResponse { status: self.reason.status(), headers, body }
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;

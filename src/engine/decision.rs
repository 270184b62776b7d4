//! The pipeline that turns request facts into a `Decision`, and the decision's HTTP rendering.
//!
//! route -> credential -> token -> machine authority -> delegation -> consent. Pure: no host calls;
//! the filter shell gathers `RequestFacts`, calls `Engine::decide`, and applies the result.

use crate::engine::authority::{self, Authority};
use crate::engine::binding::{self, AuthMethod, Presenter};
use crate::engine::consent::{ConsentUse, ConsentVerifier};
use crate::engine::credentials::{self, RequestFacts, Scheme};
use crate::engine::delegation;
use crate::engine::jwt::verifier::SignatureVerifier;
use crate::engine::jwt::{Authenticator, VerifiedToken};
use crate::engine::policy::{Client, Mode, Policy, RouteRule};
use crate::engine::reason::{Challenge, Reason};
use crate::engine::replay::{LocalReplayCache, ReplayGuard};
use crate::engine::revocation::{RevocationSnapshot, RevocationState};
use crate::engine::route;
use std::rc::Rc;

/// The response header that hands a client its DPoP server nonce (RFC 9449 §8.1).
pub const DPOP_NONCE: &str = "dpop-nonce";

/// The request may go upstream, with these verified identities.
#[derive(Debug)]
pub struct Allow<'p> {
    pub route: &'p RouteRule,
    pub authority: Authority<'p>,
    /// The verified token; `None` for a workload authenticated by its SPIFFE ID alone.
    pub token: Option<Rc<VerifiedToken>>,
    pub auth: AuthMethod,
    /// The connection's SPIFFE ID, when its client certificate has one.
    pub spiffe_id: Option<String>,
    pub cache_hit: bool,
    /// The current actor under delegation.
    pub actor: Option<&'p Client>,
    /// The consent the route relied on, for routes that need one.
    pub consent: Option<ConsentUse>,
    /// The next DPoP server nonce, when the proof's one is due for rotation (sent on the response
    /// as `DPoP-Nonce`).
    pub dpop_nonce: Option<String>,
}

/// The request is refused.
#[derive(Debug)]
pub struct Deny<'p> {
    pub reason: Reason,
    pub route: Option<&'p RouteRule>,
    /// The verified token, when the request got past authentication (for logs and audit).
    pub token: Option<Rc<VerifiedToken>>,
    /// The policy's realm, for the challenge.
    pub realm: &'p str,
    /// DPoP proof algorithms for DPoP challenges (empty without DPoP).
    pub dpop_algs: &'p str,
    /// The request used the DPoP scheme: token errors are challenged with DPoP.
    pub dpop_scheme: bool,
    /// The nonce to retry with (`DPoP-Nonce`), for `use_dpop_nonce` denials.
    pub dpop_nonce: Option<String>,
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
    verifier: Box<dyn SignatureVerifier>,
    authenticator: Authenticator,
    consents: ConsentVerifier,
    revocation: RevocationState,
    replay: Box<dyn ReplayGuard>,
}

impl Engine {
    pub fn new(policy: Rc<Policy>, verifier: Box<dyn SignatureVerifier>) -> Self {
        let authenticator = Authenticator::new(&policy);
        let consents = ConsentVerifier::new(&policy);
        let buckets = policy.dpop.as_ref().map_or(16, |d| d.replay_cache_buckets);
        // Tests and native use; the filter shell puts in the shared cache with a random secret.
        let replay = Box::new(LocalReplayCache::new(buckets, [0; 32]));
        Engine { policy, verifier, authenticator, consents, revocation: RevocationState::default(), replay }
    }

    /// Where DPoP proofs are remembered. The filter shell puts in one shared by all workers; the
    /// default is this engine's own memory.
    pub fn set_replay_guard(&mut self, replay: Box<dyn ReplayGuard>) {
        self.replay = replay;
    }

    /// Takes the feed poller's published status. The document is fetched (through `document`) and
    /// parsed only when `version` differs from the snapshot this worker holds. A document that does
    /// not parse leaves the last good snapshot in place (and its fetch time, so staleness still runs).
    pub fn observe_feed(
        &mut self,
        version: u64,
        fetched_at: i64,
        document: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<(), String> {
        if self.revocation.snapshot.as_ref().map(|s| s.version) != Some(version) {
            let body = document().ok_or("feed document missing from shared data")?;
            let snapshot = RevocationSnapshot::parse(&body)?;
            if snapshot.version != version {
                return Err(format!("feed document is version {}, status says {version}", snapshot.version));
            }
            self.revocation.snapshot = Some(snapshot);
        }
        self.revocation.fetched_at = Some(fetched_at);
        Ok(())
    }

    /// Takes a remote issuer's JWKS as the poller published it (`generation` identifies the
    /// document; it is read and parsed only when it differs from the one this worker holds). A
    /// document that does not validate leaves the last good keys in place.
    pub fn observe_jwks(
        &mut self,
        issuer: usize,
        generation: u64,
        document: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<(), String> {
        if self.authenticator.keys().generation(issuer) == Some(generation) {
            return Ok(());
        }
        let body = document().ok_or("JWKS document missing from shared data")?;
        self.authenticator.take_jwks(&self.policy, issuer, generation, &body)
    }

    /// Calls `ask` (with the issuer's index in the policy) for each remote issuer whose JWKS this
    /// worker wants refetched now (a token named a key it lacks), rate-limited per issuer by
    /// `unknown_kid_refetch_min_interval_ms`.
    pub fn jwks_refetch_requests(&mut self, now_ms: i64, ask: impl FnMut(usize, &crate::engine::policy::Issuer)) {
        self.authenticator.keys_mut().refetch_requests(&self.policy, now_ms, ask)
    }

    /// The feed version this worker decides with, if any.
    pub fn feed_version(&self) -> Option<u64> {
        self.revocation.snapshot.as_ref().map(|s| s.version)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn backend(&self) -> &'static str {
        self.verifier.name()
    }

    pub fn cached_tokens(&self) -> usize {
        self.authenticator.cached_tokens()
    }

    /// Decides, and hands back the policy the decision refers to (for audit and metrics).
    pub fn decide_with_policy(&mut self, facts: &RequestFacts<'_>) -> (&Policy, Decision<'_>) {
        let state = State {
            verifier: self.verifier.as_ref(),
            tokens: &mut self.authenticator,
            consents: &mut self.consents,
            revocation: &self.revocation,
            replay: self.replay.as_mut(),
        };
        let decision = decide_with(&self.policy, state, facts);
        #[cfg(test)]
        if let Decision::Deny(d) = &decision {
            crate::engine::testkit::record_reason(d.reason);
        }
        (&self.policy, decision)
    }

    pub fn decide(&mut self, facts: &RequestFacts<'_>) -> Decision<'_> {
        self.decide_with_policy(facts).1
    }
}

/// The per-worker mutable state one decision uses.
struct State<'e> {
    verifier: &'e dyn SignatureVerifier,
    tokens: &'e mut Authenticator,
    consents: &'e mut ConsentVerifier,
    revocation: &'e RevocationState,
    replay: &'e mut dyn ReplayGuard,
}

fn decide_with<'p>(policy: &'p Policy, state: State<'_>, facts: &RequestFacts<'_>) -> Decision<'p> {
    let deny = |reason, route, token| Decision::Deny(denial(policy, reason, route, token, false, facts.now));
    if facts.method_override {
        return deny(Reason::MethodOverride, None, None);
    }
    let Some((path, query)) = route::guard_path(facts.path) else {
        return deny(Reason::PathAmbiguous, None, None);
    };
    if query.is_some_and(route::query_has_access_token) {
        return deny(Reason::TokenInQuery, None, None);
    }
    let Some(route) = policy.routes.find(facts.method, path) else {
        return deny(Reason::RouteUnmatched, None, None);
    };
    // No Authorization at all, a route that takes workload identity, a SPIFFE ID on the connection.
    if facts.authorization.is_empty()
        && route.accept_workload_identity
        && facts.peer.is_some_and(|p| p.spiffe_id().is_some())
    {
        return decide_workload(policy, route, &state, facts);
    }
    let presented = match credentials::access_token(facts.authorization) {
        Ok(t) => t,
        Err(r) => return deny(r, Some(route), None),
    };
    let dpop_scheme = presented.scheme == Scheme::Dpop;
    let deny = |reason, token| Decision::Deny(denial(policy, reason, Some(route), token, dpop_scheme, facts.now));
    let authenticated = match state.tokens.authenticate(policy, route, presented.token, facts.now, state.verifier) {
        Ok(a) => a,
        Err(r) => return deny(r, None),
    };
    let token = authenticated.token;
    let client_denial = |r| deny(r, Some(token.clone()));
    // Revocation runs after the cache, so a revoked token, key, client or partner is denied at once.
    let snapshot = match fresh_snapshot(policy, route, state.revocation, facts.now) {
        Ok(s) => s,
        Err(r) => return client_denial(r),
    };
    if let Some(Err(r)) = snapshot.map(|s| s.check_token(policy, &token)) {
        return client_denial(r);
    }
    let authority = match authority::check(policy, route, &token, facts.now) {
        Ok(a) => a,
        Err(r) => return client_denial(r),
    };
    let presenter = Presenter {
        scheme: presented.scheme,
        dpop: credentials::dpop_proof(facts.dpop),
        peer: facts.peer,
        method: facts.method,
        path,
        token_text: presented.token,
        now: facts.now,
    };
    let sender = match binding::check(policy, route, authority.client, &token, &presenter, state.verifier, state.replay)
    {
        Ok(s) => s,
        Err(r) => return client_denial(r),
    };
    let actor = match delegation::check_actor(policy, route, &token, facts.now) {
        Ok(a) => a,
        Err(r) => return client_denial(r),
    };
    let consent = match state.consents.check(policy, route, &token, facts, state.verifier, snapshot) {
        Ok(c) => c,
        Err(r) => return client_denial(r),
    };
    Decision::Allow(Allow {
        route,
        authority,
        token: Some(token),
        auth: sender.method,
        spiffe_id: spiffe_id(facts),
        cache_hit: authenticated.cache_hit,
        actor,
        consent,
        dpop_nonce: sender.renew_nonce.then(|| next_nonce(policy, facts.now)).flatten(),
    })
}

/// A registered workload on its SPIFFE ID alone: registry status, expiry, owner's review, kind and
/// scope ceiling apply as for a token's client, and the feed can revoke it.
fn decide_workload<'p>(
    policy: &'p Policy,
    route: &'p RouteRule,
    state: &State<'_>,
    facts: &RequestFacts<'_>,
) -> Decision<'p> {
    let deny = |reason| Decision::Deny(denial(policy, reason, Some(route), None, false, facts.now));
    let client = match binding::workload(policy, facts.peer.as_ref()) {
        Ok(c) => c,
        Err(r) => return deny(r),
    };
    match fresh_snapshot(policy, route, state.revocation, facts.now) {
        Ok(Some(s)) => {
            if let Err(r) = s.check_client(policy, &client.id) {
                return deny(r);
            }
        }
        Ok(None) => {}
        Err(r) => return deny(r),
    }
    match authority::check_workload(policy, route, client, facts.now) {
        Ok(authority) => Decision::Allow(Allow {
            route,
            authority,
            token: None,
            auth: AuthMethod::Workload,
            spiffe_id: spiffe_id(facts),
            cache_hit: false,
            actor: None,
            consent: None,
            dpop_nonce: None,
        }),
        Err(r) => deny(r),
    }
}

/// The revocation snapshot to decide with: fresh, or (on routes that accept it) the last one.
fn fresh_snapshot<'s>(
    policy: &Policy,
    route: &RouteRule,
    revocation: &'s RevocationState,
    now: i64,
) -> Result<Option<&'s RevocationSnapshot>, Reason> {
    match &policy.revocation {
        None => Ok(None),
        Some(feed) => match revocation.fresh(now, feed.max_staleness) {
            Ok(s) => Ok(Some(s)),
            Err(r) if route.require_fresh_revocation => Err(r),
            Err(_) => Ok(revocation.snapshot.as_ref()),
        },
    }
}

fn spiffe_id(facts: &RequestFacts<'_>) -> Option<String> {
    facts.peer.as_ref().and_then(|p| p.spiffe_id()).map(String::from)
}

fn denial<'p>(
    policy: &'p Policy,
    reason: Reason,
    route: Option<&'p RouteRule>,
    token: Option<Rc<VerifiedToken>>,
    dpop_scheme: bool,
    now: i64,
) -> Deny<'p> {
    let dpop_algs = policy.dpop.as_ref().map_or("", |d| d.algs_challenge.as_str());
    let dpop_nonce = (reason.challenge() == Challenge::UseDpopNonce).then(|| next_nonce(policy, now)).flatten();
    Deny { reason, route, token, realm: &policy.realm, dpop_algs, dpop_scheme, dpop_nonce }
}

/// The nonce clients should use from now on.
fn next_nonce(policy: &Policy, now: i64) -> Option<String> {
    policy.dpop.as_ref().and_then(|d| d.nonce.as_ref()).map(|k| k.mint(now))
}

impl Allow<'_> {
    /// The verified identity headers sent upstream (names are lowercase, prefixed `x-nhi-`).
    pub fn upstream_headers(&self) -> Vec<(&'static str, &str)> {
        let subject = self.token.as_ref().map_or(self.authority.client.id.as_str(), |t| t.subject.as_str());
        let mut h = vec![
            ("x-nhi-route", self.route.id.as_str()),
            ("x-nhi-client", self.authority.client.id.as_str()),
            ("x-nhi-scopes", self.route.scope_string.as_str()),
            ("x-nhi-subject", subject),
            ("x-nhi-auth", self.auth.name()),
        ];
        if let Some(id) = &self.spiffe_id {
            h.push(("x-nhi-spiffe-id", id.as_str()));
        }
        if let Some(p) = self.authority.partner {
            h.push(("x-nhi-partner", p.id.as_str()));
        }
        if let Some(a) = self.actor {
            h.push(("x-nhi-actor", a.id.as_str()));
        }
        if let Some(c) = &self.consent {
            h.push(("x-nhi-consent-id", c.id.as_str()));
            h.push(("x-nhi-consent-permissions", c.permissions_used.as_str()));
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
    /// Whether this denial is enforced, or only logged as `would_deny` (dry-run, globally or on
    /// the route).
    pub fn enforced(&self, policy: &Policy) -> bool {
        policy.mode == Mode::Enforce && !self.route.is_some_and(|r| r.dry_run)
    }

    pub fn response(&self, request_id: &str) -> DenyResponse {
        let scope = self.route.map_or("", |r| r.scope_string.as_str());
        let mut headers =
            vec![("content-type", "application/json".to_string()), ("cache-control", "no-store".to_string())];
        if let Some(challenge) = self.reason.www_authenticate(self.realm, scope, self.dpop_algs, self.dpop_scheme) {
            headers.push(("www-authenticate", challenge));
        }
        if let Some(nonce) = &self.dpop_nonce {
            headers.push((DPOP_NONCE, nonce.clone()));
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
#[path = "decision_tests/mod.rs"]
mod tests;

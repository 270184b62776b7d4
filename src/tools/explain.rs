//! `nhi-guard explain`: one request decided offline by the same engine the filter runs (the same
//! `Engine::decide`, the same header roles), shown as the checks in the order the engine runs
//! them, the one that decided, the answer Envoy would give, and what would fix it.
//!
//! The engine stops at the first failing check, so the trace is exact: every check before the
//! deciding one passed, every one after it was not reached. Which check a reason belongs to is
//! `Check::of`, an exhaustive match: a new reason does not compile until it has its place.

use crate::engine::credentials::{header_role, HeaderRole, PeerCertificate, RequestFacts};
use crate::engine::decision::{Decision, Engine};
use crate::engine::jwt::verifier::PureRust;
use crate::engine::policy::{Policy, RouteConsent, RouteRule};
use crate::engine::reason::Reason;
use crate::engine::timestamp::format_rfc3339;
use serde::Serialize;
use serde_json::Value;
use std::rc::Rc;

/// The request to explain, as a person types it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// Path with query, as Envoy would forward it.
    pub path: String,
    /// Header lines (name, value); names compare case-insensitively.
    pub headers: Vec<(String, String)>,
    /// SHA-256 of the client certificate's DER, when the request came over mutual TLS.
    pub peer_sha256: Option<[u8; 32]>,
    /// The client certificate's SPIFFE ID (URI SAN), when it has one.
    pub spiffe_id: Option<String>,
    /// The time to decide at (Unix seconds).
    pub at: i64,
}

/// What the filter would have fetched: the revocation feed document and remote issuers' JWKS.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub feed: Option<Vec<u8>>,
    /// (issuer id, JWKS document).
    pub jwks: Vec<(String, Vec<u8>)>,
}

/// Every check the engine runs, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Route,
    Credential,
    TokenStructure,
    Issuer,
    Audience,
    Signature,
    TokenType,
    TokenTime,
    Revocation,
    Client,
    Registration,
    Partner,
    ClientKind,
    Scope,
    SenderBinding,
    Delegation,
    Consent,
    Engine,
}

impl Check {
    pub const ALL: [Check; 18] = [
        Check::Route,
        Check::Credential,
        Check::TokenStructure,
        Check::Issuer,
        Check::Audience,
        Check::Signature,
        Check::TokenType,
        Check::TokenTime,
        Check::Revocation,
        Check::Client,
        Check::Registration,
        Check::Partner,
        Check::ClientKind,
        Check::Scope,
        Check::SenderBinding,
        Check::Delegation,
        Check::Consent,
        Check::Engine,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Check::Route => "route match",
            Check::Credential => "credential",
            Check::TokenStructure => "token structure",
            Check::Issuer => "issuer and key",
            Check::Audience => "audience",
            Check::Signature => "signature",
            Check::TokenType => "token type",
            Check::TokenTime => "token time",
            Check::Revocation => "revocation",
            Check::Client => "client",
            Check::Registration => "registration",
            Check::Partner => "partner",
            Check::ClientKind => "client kind",
            Check::Scope => "scope",
            Check::SenderBinding => "sender binding",
            Check::Delegation => "delegation",
            Check::Consent => "consent",
            Check::Engine => "engine",
        }
    }

    /// The check a denial comes from.
    pub fn of(reason: Reason) -> Check {
        use Reason as R;
        match reason {
            R::RouteUnmatched | R::PathAmbiguous | R::MethodOverride | R::TokenInQuery => Check::Route,
            R::TokenMissing | R::AuthSchemeUnsupported | R::TokenDuplicated | R::TokenTooLarge | R::WorkloadUnknown => {
                Check::Credential
            }
            R::TokenMalformed | R::AlgNotAllowed | R::ClaimMissing => Check::TokenStructure,
            R::IssuerUnknown | R::JwksUnavailable | R::KidUnknown => Check::Issuer,
            R::AudienceInvalid => Check::Audience,
            R::SignatureInvalid => Check::Signature,
            R::TypInvalid => Check::TokenType,
            R::TokenExpired
            | R::TokenNotYetValid
            | R::TokenIssuedInFuture
            | R::TokenLifetimeTooLong
            | R::TokenTooOld => Check::TokenTime,
            R::TokenRevoked | R::KeyRevoked | R::ClientRevoked | R::RevocationStale => Check::Revocation,
            R::ClientUnknown | R::ClientIssuerNotAllowed => Check::Client,
            R::ClientInactive | R::ClientExpired | R::ReviewOverdue => Check::Registration,
            R::PartnerSuspended | R::PartnerOffboarded | R::PartnerContractEnded => Check::Partner,
            R::ClientKindNotAllowed => Check::ClientKind,
            R::ScopeMissing | R::ScopeBeyondCeiling => Check::Scope,
            R::SenderConstraintRequired
            | R::CertificateBindingMissing
            | R::CertificateBindingMismatch
            | R::ClientCredentialMismatch
            | R::DpopNotEnabled
            | R::DpopDowngrade
            | R::DpopTokenUnbound
            | R::DpopProofMissing
            | R::DpopProofDuplicated
            | R::DpopProofMalformed
            | R::DpopAlgNotAllowed
            | R::DpopJwkInvalid
            | R::DpopSignatureInvalid
            | R::DpopHtmMismatch
            | R::DpopHtuMismatch
            | R::DpopIatInvalid
            | R::DpopAthMismatch
            | R::DpopKeyMismatch
            | R::DpopReplayed
            | R::DpopNonceMissing
            | R::DpopNonceInvalid
            | R::DpopReplayCacheUnavailable => Check::SenderBinding,
            R::ActorUnknown | R::ActorNotAllowed => Check::Delegation,
            R::ClientCredentialsOnCustomerRoute
            | R::CustomerTokenOnMachineRoute
            | R::ConsentMissing
            | R::ConsentDuplicated
            | R::ConsentInvalid
            | R::ConsentExpired
            | R::ConsentNotAuthorised
            | R::ConsentRevoked
            | R::ConsentClientMismatch
            | R::ConsentSubjectMismatch
            | R::ConsentPermissionMissing => Check::Consent,
            R::PolicyUnavailable | R::VerifierError | R::HostError => Check::Engine,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    NotReached,
    NotApplicable,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    pub check: Check,
    pub label: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// One request explained.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub method: String,
    pub path: String,
    pub at: String,
    /// `allow`, `deny`, or `would_deny` (dry-run: logged, let through).
    pub decision: &'static str,
    pub status: u16,
    pub reason: Option<&'static str>,
    pub error: Option<&'static str>,
    pub description: Option<&'static str>,
    pub www_authenticate: Option<String>,
    pub checks: Vec<CheckLine>,
    pub fix: Option<String>,
    /// For an allowed request: the verified identity headers the upstream would get.
    pub upstream_headers: Vec<(String, String)>,
    /// What the presented token says, unverified (context for the reader, never trusted).
    pub token: Option<Value>,
    pub notes: Vec<String>,
}

/// Loads the policy as the filter would (secrets from the environment named in it fall back to
/// stand-ins: explaining never needs them) and decides `request`.
pub fn explain(
    policy: Policy,
    request: &Request,
    fetched: &Fetched,
    stand_in_notes: Vec<String>,
) -> Result<Explanation, String> {
    let mut notes = stand_in_notes;
    let policy = Rc::new(policy);
    let mut engine = Engine::new(policy.clone(), Box::new(PureRust));
    if policy.revocation.is_some() {
        match &fetched.feed {
            Some(doc) => {
                let snapshot = crate::engine::revocation::RevocationSnapshot::parse(doc)
                    .map_err(|e| format!("the feed document does not parse: {e}"))?;
                engine.observe_feed(snapshot.version, request.at, || Some(doc.clone()))?;
                notes.push(format!("revocation: feed document version {} taken as fetched just now", snapshot.version));
            }
            None => {
                let empty = format!(r#"{{"version": 1, "produced_at": "{}"}}"#, format_rfc3339(request.at));
                engine.observe_feed(1, request.at, || Some(empty.into_bytes()))?;
                notes.push("revocation: no feed document given (--feed); decided against an empty feed".into());
            }
        }
    }
    for (issuer_id, doc) in &fetched.jwks {
        let index = policy
            .issuers
            .iter()
            .position(|i| &i.id == issuer_id)
            .ok_or_else(|| format!("--jwks names {issuer_id:?}, which is not an issuer of the policy"))?;
        engine.observe_jwks(index, 1, || Some(doc.clone())).map_err(|e| format!("JWKS for {issuer_id}: {e}"))?;
    }
    let lower_auth = request.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    let presented_iss = lower_auth
        .and_then(|(_, v)| unverified_token(v.as_bytes()))
        .and_then(|t| t["claims"]["iss"].as_str().map(String::from));
    for issuer in policy.issuers.iter().filter(|i| i.remote_jwks.is_some()) {
        if presented_iss.as_deref() == Some(issuer.id.as_str()) && !fetched.jwks.iter().any(|(id, _)| id == &issuer.id)
        {
            notes.push(format!(
                "keys: {} publishes its keys at a JWKS endpoint and none was given (--jwks {}=FILE): its tokens get jwks_unavailable",
                issuer.id, issuer.id
            ));
        }
    }
    let lower: Vec<(String, &str)> =
        request.headers.iter().map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim())).collect();
    let consent_header = policy.consent.header.as_bytes();
    let of_role = |role: HeaderRole| -> Vec<&[u8]> {
        lower
            .iter()
            .filter(|(n, _)| header_role(n.as_bytes(), consent_header) == role)
            .map(|(_, v)| v.as_bytes())
            .collect()
    };
    let (authorization, dpop, consent) =
        (of_role(HeaderRole::Authorization), of_role(HeaderRole::Dpop), of_role(HeaderRole::Consent));
    let facts = RequestFacts {
        method: &request.method,
        path: &request.path,
        authorization: &authorization,
        consent: &consent,
        dpop: &dpop,
        peer: request.peer_sha256.map(|sha256| PeerCertificate { sha256, uri_san: request.spiffe_id.as_deref() }),
        now: request.at,
        method_override: !of_role(HeaderRole::MethodOverride).is_empty(),
    };
    let token = authorization.first().and_then(|a| unverified_token(a));
    let route =
        crate::engine::route::guard_path(&request.path).and_then(|(path, _)| policy.routes.find(&request.method, path));
    let decision = engine.decide(&facts);
    let mut out = Explanation {
        method: request.method.clone(),
        path: request.path.clone(),
        at: format_rfc3339(request.at),
        decision: "allow",
        status: 200,
        reason: None,
        error: None,
        description: None,
        www_authenticate: None,
        checks: Vec::new(),
        fix: None,
        upstream_headers: Vec::new(),
        token: token.clone(),
        notes,
    };
    match &decision {
        Decision::Allow(a) => {
            out.upstream_headers =
                a.upstream_headers().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let ctx = Seen {
                policy: &policy,
                route: Some(a.route),
                token: a.token.as_deref(),
                client: Some(a.authority.client),
                partner: a.authority.partner,
                allow: Some(a),
                now: request.at,
            };
            for check in Check::ALL.into_iter().filter(|c| *c != Check::Engine) {
                let (outcome, detail) = ctx.detail(check);
                out.checks.push(CheckLine { check, label: check.label(), outcome, detail });
            }
        }
        Decision::Deny(d) => {
            let response = d.response("explain");
            out.decision = if d.enforced(&policy) { "deny" } else { "would_deny" };
            out.status = if d.enforced(&policy) { response.status } else { 200 };
            out.reason = Some(d.reason.code());
            out.error = Some(d.reason.error_code());
            out.description = Some(d.reason.description());
            out.www_authenticate =
                response.headers.iter().find(|(k, _)| *k == "www-authenticate").map(|(_, v)| v.clone());
            let failed = Check::of(d.reason);
            // The engine hands back the verified token when the denial came after authentication.
            let verified = d.token.as_deref();
            let client = verified.and_then(|t| policy.clients.get(&t.client_id));
            let partner = client.and_then(|c| c.partner.as_ref()).and_then(|p| policy.partners.get(p));
            let ctx = Seen { policy: &policy, route, token: verified, client, partner, allow: None, now: request.at };
            for check in Check::ALL {
                let (outcome, detail) = if check < failed {
                    ctx.detail(check)
                } else if check == failed {
                    (Outcome::Failed, format!("{}: {}", d.reason.code(), d.reason.description()))
                } else {
                    (Outcome::NotReached, String::new())
                };
                if check == Check::Engine && outcome != Outcome::Failed {
                    continue;
                }
                out.checks.push(CheckLine { check, label: check.label(), outcome, detail });
            }
            out.fix = Some(fix(&policy, d.reason, route, token.as_ref()));
        }
    }
    Ok(out)
}

/// The token's header and claims as presented, decoded without verification.
fn unverified_token(authorization: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(authorization).ok()?;
    let token = text.split_once(' ').map_or(text, |(_, t)| t).trim();
    let mut parts = token.split('.');
    let mut part = || -> Option<Value> {
        let bytes = crate::engine::base64url::decode(parts.next()?.as_bytes())?;
        serde_json::from_slice(&bytes).ok()
    };
    let header = part()?;
    let claims = part().unwrap_or(Value::Null);
    Some(serde_json::json!({"header": header, "claims": claims}))
}

fn claim<'t>(token: Option<&'t Value>, name: &str) -> Option<&'t Value> {
    token.and_then(|t| t["claims"].get(name))
}

fn claim_text(token: Option<&Value>, name: &str) -> String {
    match claim(token, name) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "(none)".into(),
    }
}

fn route_summary(route: &RouteRule) -> String {
    let consent = match &route.consent {
        RouteConsent::None { .. } => "no customer consent".to_string(),
        RouteConsent::Permissions(groups) => {
            format!("consent {}", groups.iter().map(|g| g.join(" or ")).collect::<Vec<_>>().join(", and "))
        }
    };
    format!("{} ({} {}): scopes {}, {consent}", route.id, route.methods.join("|"), route.path, route.scope_string)
}

/// What the engine established on the way to its decision: everything up to the deciding check.
struct Seen<'a, 'p> {
    policy: &'a Policy,
    route: Option<&'a RouteRule>,
    /// The verified token (`None` before authentication, or for a workload).
    token: Option<&'a crate::engine::jwt::VerifiedToken>,
    client: Option<&'a crate::engine::policy::Client>,
    partner: Option<&'a crate::engine::policy::Partner>,
    allow: Option<&'a crate::engine::decision::Allow<'p>>,
    now: i64,
}

impl Seen<'_, '_> {
    /// A check that passed (or did not apply), with what it saw.
    fn detail(&self, check: Check) -> (Outcome, String) {
        let passed = |s: String| (Outcome::Passed, s);
        let skipped = |s: &str| (Outcome::NotApplicable, s.to_string());
        let workload = self.allow.is_some_and(|a| a.token.is_none());
        let t = self.token;
        match check {
            Check::Route => passed(self.route.map(route_summary).unwrap_or_default()),
            Check::Credential if workload => {
                passed(format!("no token: workload {}", self.allow.and_then(|a| a.spiffe_id.as_deref()).unwrap_or("?")))
            }
            Check::Credential => passed(match self.allow.map(|a| a.auth.name()) {
                Some("dpop") => "DPoP token".into(),
                _ => "token presented".into(),
            }),
            c if c < Check::Revocation && workload => skipped("no token (workload identity)"),
            Check::TokenStructure => {
                passed(t.map(|t| format!("compact JWS, alg {}", t.alg.name())).unwrap_or_default())
            }
            Check::Issuer => passed(
                t.map(|t| {
                    let iss = self.policy.issuers.get(t.issuer).map_or("?", |i| i.id.as_str());
                    format!("{iss} (key {})", t.kid)
                })
                .unwrap_or_default(),
            ),
            Check::Audience => passed("issued for this API".into()),
            Check::Signature => passed("verifies".into()),
            Check::TokenType => passed("accepted".into()),
            Check::TokenTime => passed(
                t.map(|t| {
                    format!(
                        "issued {}, expires {} (lifetime {} s, route max {} s; age {} s, route max {} s)",
                        format_rfc3339(t.iat),
                        format_rfc3339(t.exp),
                        t.exp.saturating_sub(t.iat),
                        self.route.map_or(0, |r| r.max_token_lifetime),
                        self.now.saturating_sub(t.iat),
                        self.route.map_or(0, |r| r.max_token_age)
                    )
                })
                .unwrap_or_default(),
            ),
            Check::Revocation if self.policy.revocation.is_none() => skipped("no revocation feed configured"),
            Check::Revocation => passed("not revoked (token, key, client, partner)".into()),
            Check::Client => passed(self.client.map(|c| format!("{} ({})", c.id, c.kind.name())).unwrap_or_default()),
            Check::Registration => passed(
                self.client
                    .map(|c| format!("{}, registered until {}", lower(&c.status), format_rfc3339(c.expires)))
                    .unwrap_or_default(),
            ),
            Check::Partner => match self.partner {
                Some(p) => {
                    passed(format!("{} {}, contract until {}", p.id, lower(&p.status), format_rfc3339(p.contract_end)))
                }
                None => skipped("no partner (internal client)"),
            },
            Check::ClientKind => {
                passed(self.client.map(|c| format!("{} may call this route", c.kind.name())).unwrap_or_default())
            }
            Check::Scope => passed(match (self.route, self.client) {
                (Some(r), Some(c)) => {
                    format!("route needs {}; within the client's ceiling {}", r.scope_string, c.scope_ceiling.join(" "))
                }
                _ => String::new(),
            }),
            Check::SenderBinding => match self.allow.map(|a| a.auth.name()) {
                Some("bearer") => skipped("bearer token, not sender-constrained (neither required here)"),
                Some(other) => passed(other.to_string()),
                None => passed(String::new()),
            },
            Check::Delegation => match self.allow.and_then(|a| a.actor) {
                Some(actor) => passed(format!("acting: {}", actor.id)),
                None if self.allow.is_some() => skipped("no act claim"),
                None => passed(String::new()),
            },
            Check::Consent => match self.allow.and_then(|a| a.consent.as_ref()) {
                Some(c) => passed(format!("consent {} grants {}", c.id, c.permissions_used)),
                None => skipped("the route needs no customer consent"),
            },
            Check::Engine => skipped(""),
        }
    }
}

/// A registry status as the policy writes it (`active`, `suspended`, ...).
fn lower(status: &impl std::fmt::Debug) -> String {
    format!("{status:?}").to_lowercase()
}

/// What would make the request pass, in the operator's terms.
fn fix(policy: &Policy, reason: Reason, route: Option<&RouteRule>, token: Option<&Value>) -> String {
    use Reason as R;
    let client_id = claim_text(token, "client_id");
    let client = policy.clients.get(&client_id);
    let route_scopes = route.map_or(String::new(), |r| r.scope_string.clone());
    let route_id = route.map_or("(no route)".to_string(), |r| r.id.clone());
    match reason {
        R::RouteUnmatched => "no route matches: check the method and path, or add a route (routes[]) with an owner and purpose".into(),
        R::PathAmbiguous => "send the path without encoded slashes, dot segments or empty segments".into(),
        R::MethodOverride => "drop the X-HTTP-Method-Override header and send the real method".into(),
        R::TokenInQuery => "send the token in the Authorization header, never in the URL".into(),
        R::TokenMissing => "send Authorization: Bearer <token> (or DPoP <token> with a DPoP proof)".into(),
        R::AuthSchemeUnsupported => "use the Bearer or DPoP scheme".into(),
        R::TokenDuplicated => "send exactly one Authorization header with one credential".into(),
        R::TokenTooLarge => format!("tokens are limited to {} bytes (settings.max_token_bytes)", policy.max_token_bytes),
        R::WorkloadUnknown => "register the workload's SPIFFE ID in clients[].spiffe_ids, or present a token".into(),
        R::TokenMalformed => "the token is not a well-formed JWS: check it was copied whole (three base64url parts)".into(),
        R::AlgNotAllowed => format!(
            "the token's alg {} is not in the issuer's algorithms or not its key's: sign with an allowed algorithm",
            token.map_or("?".into(), |t| t["header"]["alg"].to_string())
        ),
        R::ClaimMissing => "the token needs iss, sub, aud, exp, iat, jti and client_id: fix the authorization server's token profile".into(),
        R::IssuerUnknown => format!("{} is not an issuer of the policy: add it to issuers[] or get a token from a trusted one", claim_text(token, "iss")),
        R::JwksUnavailable => "the issuer's JWKS has not been fetched: check its endpoint (or pass --jwks ISSUER=FILE here)".into(),
        R::KidUnknown => format!("key {} is not in the issuer's keys: publish it in the JWKS (or the policy's jwks)", token.map_or("?".into(), |t| t["header"]["kid"].to_string())),
        R::AudienceInvalid => format!("aud {} is not one of the issuer's audiences: request the token for this API's resource", claim_text(token, "aud")),
        R::TokenExpired => format!("the token expired at {}: get a fresh one", claim_text(token, "exp")),
        R::TokenNotYetValid => "the token's nbf is in the future: check the authorization server's clock".into(),
        R::TokenIssuedInFuture => "the token's iat is ahead of the gateway's clock beyond the skew: check clocks".into(),
        R::TokenLifetimeTooLong => format!(
            "route {route_id} accepts tokens living at most {} s: issue shorter-lived tokens for it",
            route.map_or(0, |r| r.max_token_lifetime)
        ),
        R::TokenTooOld => format!("route {route_id} accepts tokens at most {} s old: get a fresh token", route.map_or(0, |r| r.max_token_age)),
        R::SignatureInvalid => "the signature does not verify with the issuer's key: the token was altered or signed by someone else".into(),
        R::TypInvalid => "the token's typ must be at+jwt (RFC 9068), or set the issuer's require_typ_at_jwt: false".into(),
        R::ScopeMissing => format!(
            "the token's scope {} lacks {route_scopes}: request a token with {route_scopes}",
            claim_text(token, "scope")
        ),
        R::ScopeBeyondCeiling => format!(
            "the client's scope ceiling ({}) lacks {route_scopes}: add it to clients[{client_id}].scope_ceiling, or use a client registered for {route_scopes}",
            client.map_or(String::new(), |c| c.scope_ceiling.join(" "))
        ),
        R::ClientUnknown => format!("client {client_id} is not registered: add it to clients[] with an owner, purpose and expiry"),
        R::ClientIssuerNotAllowed => format!(
            "client {client_id} takes tokens only from its listed issuers: get the token there, or add {} to its issuers",
            claim_text(token, "iss")
        ),
        R::ClientInactive => format!(
            "client {client_id} is {}: reactivate it (status) if that is intended",
            client.map_or("inactive".into(), |c| lower(&c.status))
        ),
        R::ClientExpired => format!("client {client_id}'s registration expired: review it and extend clients[].expires"),
        R::ReviewOverdue => format!("client {client_id}'s access review is overdue: review it and set last_reviewed"),
        R::ClientKindNotAllowed => format!(
            "route {route_id} admits {}: use a client of that kind",
            route.map_or(String::new(), |r| r.client_kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "))
        ),
        R::PartnerSuspended => "the client's partner is suspended: nothing to fix on the client's side until the partner is reinstated".into(),
        R::PartnerOffboarded => "the client's partner was offboarded: its apps have no access; this denial is the intended outcome".into(),
        R::PartnerContractEnded => "the partner's contract has ended: renew it (partners[].contract_end) or leave the access ended".into(),
        R::TokenRevoked => "this token was revoked by the feed: get a new one".into(),
        R::KeyRevoked => "the signing key was revoked by the feed: the issuer must sign with another key".into(),
        R::ClientRevoked => format!("client {client_id} was revoked by the feed (offboarding): remove the entry from the feed if that was a mistake"),
        R::RevocationStale => "the revocation feed is older than revocation.max_staleness_ms: restore the feed service".into(),
        R::SenderConstraintRequired => "this route or client requires a sender-constrained token: use an mTLS-bound or DPoP-bound token".into(),
        R::CertificateBindingMissing => "the token is bound to a client certificate: call over the mutual-TLS listener with that certificate".into(),
        R::CertificateBindingMismatch => "present the certificate the token was issued to (cnf.x5t#S256)".into(),
        R::ClientCredentialMismatch => format!("client {client_id} is pinned to its own certificate or SPIFFE ID: call with those"),
        R::DpopNotEnabled => "configure sender_constraint.dpop to accept DPoP, or use a bearer token".into(),
        R::DpopDowngrade => "a DPoP-bound token must be sent as Authorization: DPoP <token> with a DPoP proof".into(),
        R::DpopTokenUnbound => "the DPoP scheme needs a DPoP-bound token (cnf.jkt): request one with a DPoP proof at the token endpoint".into(),
        R::DpopProofMissing | R::DpopProofDuplicated => "send exactly one DPoP header with a fresh proof".into(),
        R::DpopProofMalformed => "the proof must be a dpop+jwt JWS with jti, htm, htu, iat and ath".into(),
        R::DpopAlgNotAllowed => format!(
            "sign proofs with {}",
            policy.dpop.as_ref().map_or("an allowed algorithm".into(), |d| d.algs_challenge.clone())
        ),
        R::DpopJwkInvalid => "put the public key (no private members) of the proof's algorithm in its jwk".into(),
        R::DpopSignatureInvalid => "sign the proof with the private key of its jwk".into(),
        R::DpopHtmMismatch => "set htm to the request's method".into(),
        R::DpopHtuMismatch => format!(
            "set htu to {} plus the request path",
            policy.dpop.as_ref().map_or("the API's origin".into(), |d| d.external_origin.clone())
        ),
        R::DpopIatInvalid => "make the proof just before the request (iat within the window)".into(),
        R::DpopAthMismatch => "set ath to the base64url SHA-256 of this access token".into(),
        R::DpopKeyMismatch => "sign the proof with the key the token is bound to (cnf.jkt)".into(),
        R::DpopReplayed => "make a new proof (fresh jti) for every request".into(),
        R::DpopNonceMissing | R::DpopNonceInvalid => "retry with the nonce from the DPoP-Nonce response header in the proof's nonce claim".into(),
        R::DpopReplayCacheUnavailable => "the gateway's replay cache is full: raise sender_constraint.dpop.replay_cache_buckets".into(),
        R::ClientCredentialsOnCustomerRoute => format!(
            "route {route_id} serves a customer's data: use a token issued for a customer (sub = the customer) with their consent"
        ),
        R::CustomerTokenOnMachineRoute => format!("route {route_id} is machine-only: use a client-credentials token"),
        R::ConsentMissing => format!("route {route_id} needs the customer's consent: send the artefact in {} or a token carrying consent", policy.consent.header),
        R::ConsentDuplicated => "send exactly one consent".into(),
        R::ConsentInvalid => "the consent artefact is not signed by the consent service's keys: get a fresh one".into(),
        R::ConsentExpired => "the customer's consent has expired: ask the customer to renew it".into(),
        R::ConsentNotAuthorised => "the consent is not Authorised: the customer has not (yet) approved it".into(),
        R::ConsentRevoked => "the customer revoked this consent: ask for a new one".into(),
        R::ConsentClientMismatch => format!("the consent was granted to another client than {client_id}"),
        R::ConsentSubjectMismatch => "the consent belongs to another customer than the token's subject".into(),
        R::ConsentPermissionMissing => format!(
            "route {route_id} needs permissions {}: ask the customer for a consent that grants them",
            route.map_or(String::new(), |r| match &r.consent {
                RouteConsent::Permissions(g) => g.iter().map(|g| g.join(" or ")).collect::<Vec<_>>().join(", and "),
                RouteConsent::None { .. } => String::new(),
            })
        ),
        R::ActorUnknown => "the token's act.sub is not a registered client: register the acting party".into(),
        R::ActorNotAllowed => "the acting party is inactive, expired or not allowed on this route".into(),
        R::PolicyUnavailable | R::VerifierError | R::HostError => "an engine fault: see the Envoy log".into(),
    }
}

/// The explanation as text for a terminal.
pub fn render_text(e: &Explanation) -> String {
    let mut out = format!("{} {} at {}\n", e.method, e.path, e.at);
    for c in &e.checks {
        let mark = match c.outcome {
            Outcome::Passed => "ok  ",
            Outcome::Failed => "FAIL",
            Outcome::NotReached => "  - ",
            Outcome::NotApplicable => " n/a",
        };
        let detail = if c.outcome == Outcome::NotReached { "not reached".to_string() } else { c.detail.clone() };
        out.push_str(&format!("  [{mark}] {:<16} {detail}\n", c.label));
    }
    match e.reason {
        None => out.push_str("decision: allow (200)\n"),
        Some(r) => out.push_str(&format!("decision: {} {} {r} ({})\n", e.decision, e.status, e.error.unwrap_or(""))),
    }
    if let Some(w) = &e.www_authenticate {
        out.push_str(&format!("WWW-Authenticate: {w}\n"));
    }
    for (k, v) in &e.upstream_headers {
        out.push_str(&format!("upstream gets {k}: {v}\n"));
    }
    if let Some(f) = &e.fix {
        out.push_str(&format!("fix: {f}\n"));
    }
    for n in &e.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{bearer, claims, policy, token, NOW};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn run(path: &str, headers: &[(&str, &str)]) -> Explanation {
        let request = Request {
            method: "GET".into(),
            path: path.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            at: NOW,
            ..Request::default()
        };
        explain(policy(), &request, &Fetched::default(), Vec::new()).unwrap()
    }

    #[test]
    fn a_denial_shows_the_checks_before_it_passed_and_the_fix() {
        let t = token(&claims("moneywise-app", "payments"));
        let e = run("/accounts", &[("Authorization", &bearer(&t))]);
        assert_eq!((e.decision, e.status, e.reason), ("deny", 403, Some("scope_missing")));
        let outcome = |c: Check| e.checks.iter().find(|l| l.check == c).map(|l| l.outcome);
        assert_eq!(outcome(Check::Signature), Some(Outcome::Passed));
        assert_eq!(outcome(Check::Partner), Some(Outcome::Passed));
        assert_eq!(outcome(Check::Scope), Some(Outcome::Failed));
        assert_eq!(outcome(Check::Consent), Some(Outcome::NotReached));
        assert!(e.fix.as_deref().unwrap_or("").contains("lacks accounts"), "{:?}", e.fix);
        let text = render_text(&e);
        assert!(text.contains("[FAIL] scope") && text.contains("decision: deny 403 scope_missing"), "{text}");
        assert!(text.contains("moneywise active, contract until 2031-12-31T23:59:59Z"), "{text}");
    }

    #[test]
    fn an_unreadable_token_is_a_decision_not_an_error() {
        for garbage in ["Bearer !!!", "Bearer a.b.c", "Bearer ", "\u{1F600}"] {
            let e = run("/accounts", &[("authorization", garbage)]);
            assert_eq!(e.decision, "deny", "{garbage}");
            assert!(e.reason.is_some());
        }
        let e = run("/accounts", &[("Authorization", "Bearer a.b.c")]);
        assert_eq!(e.reason, Some("token_malformed"));
    }

    #[test]
    fn headers_take_the_filters_roles_whatever_their_case() {
        let t = token(&claims("moneywise-app", "accounts"));
        let e = run("/accounts", &[("AUTHORIZATION", &bearer(&t)), ("X-HTTP-Method-Override", "DELETE")]);
        assert_eq!(e.reason, Some("method_override"));
        let e = run("/accounts", &[("authorization", &bearer(&t)), ("Authorization", &bearer(&t))]);
        assert_eq!(e.reason, Some("token_duplicated"));
        let e = run("/accounts", &[("authorization", &bearer(&t))]);
        assert_eq!((e.decision, e.status), ("allow", 200), "{}", render_text(&e));
        assert!(e.upstream_headers.iter().any(|(k, v)| k == "x-nhi-client" && v == "moneywise-app"));
        assert!(e.checks.iter().all(|c| c.outcome != Outcome::Failed && c.outcome != Outcome::NotReached));
    }

    #[test]
    fn a_jwks_for_an_issuer_the_policy_lacks_is_refused() {
        let fetched = Fetched { feed: None, jwks: vec![("https://nobody.example".into(), b"{}".to_vec())] };
        let r = explain(
            policy(),
            &Request { method: "GET".into(), path: "/".into(), at: NOW, ..Request::default() },
            &fetched,
            vec![],
        );
        assert!(r.unwrap_err().contains("not an issuer of the policy"));
        let fetched = Fetched { feed: Some(b"not json".to_vec()), jwks: vec![] };
        let r = explain(
            policy(),
            &Request { method: "GET".into(), path: "/".into(), at: NOW, ..Request::default() },
            &fetched,
            vec![],
        );
        assert!(r.unwrap_err().contains("feed document"));
    }

    #[test]
    fn every_reason_has_a_check_and_a_fix() {
        let p = policy();
        for r in Reason::ALL {
            let _ = Check::of(*r);
            assert!(!fix(&p, *r, None, None).is_empty(), "{r:?}");
        }
    }
}

//! Every reason a request can be denied for, with its HTTP status and RFC 6750 challenge, in one table.
//!
//! The `code()` strings are a stable, documented interface (README "Reason codes"): SIEM rules and
//! dashboards key on them, so a code is never renamed, only added.

/// The RFC 6750 §3.1 error code a denial carries in `WWW-Authenticate`, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No error code: the request carried no usable credentials (RFC 6750 §3.1, last paragraph).
    Bare,
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    /// A DPoP proof problem (RFC 9449 §7.1): `DPoP algs="...", error="invalid_dpop_proof"`.
    InvalidDpopProof,
    /// A DPoP-bound token problem: `DPoP algs="...", error="invalid_token"`.
    DpopInvalidToken,
    /// The proof lacks a valid server nonce (RFC 9449 §9): `DPoP algs="...", error="use_dpop_nonce"`,
    /// and the response carries a `DPoP-Nonce` header with the nonce to use.
    UseDpopNonce,
    /// Not an authentication problem (registry status, routing, engine): no `WWW-Authenticate` header.
    None,
}

macro_rules! reasons {
    ($( $variant:ident => ($code:literal, $status:literal, $challenge:ident, $text:literal), )*) => {
        /// Why a request was denied. One variant per distinct cause.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $( $variant, )* }

        impl Reason {
            /// Every reason, in table order (used for metrics and documentation).
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )* ];

            /// The stable reason code that appears in the JSON body, logs and metrics.
            pub fn code(self) -> &'static str {
                match self { $( Reason::$variant => $code, )* }
            }

            /// The HTTP status of the denial.
            pub fn status(self) -> u16 {
                match self { $( Reason::$variant => $status, )* }
            }

            /// The RFC 6750 challenge kind.
            pub fn challenge(self) -> Challenge {
                match self { $( Reason::$variant => Challenge::$challenge, )* }
            }

            /// A short human description, safe to show to the caller (no token material).
            pub fn description(self) -> &'static str {
                match self { $( Reason::$variant => $text, )* }
            }
        }
    };
}

reasons! {
    // Request shape and routing.
    RouteUnmatched => ("route_unmatched", 403, None, "no route in the policy matches this method and path"),
    PathAmbiguous => ("path_ambiguous", 400, InvalidRequest, "path has encoded slashes, dot segments or other ambiguities"),
    MethodOverride => ("method_override", 400, InvalidRequest, "method-override headers (X-HTTP-Method-Override and the like) are refused: the policy decides on the request's own method"),
    // Credential extraction.
    TokenMissing => ("token_missing", 401, Bare, "no access token was presented"),
    AuthSchemeUnsupported => ("auth_scheme_unsupported", 401, Bare, "the Authorization scheme is not Bearer"),
    TokenDuplicated => ("token_duplicated", 400, InvalidRequest, "more than one Authorization header or credential"),
    TokenInQuery => ("token_in_query", 400, InvalidRequest, "access tokens are accepted in the Authorization header only"),
    TokenTooLarge => ("token_too_large", 401, InvalidToken, "the access token exceeds the size limit"),
    // Token structure and header.
    TokenMalformed => ("token_malformed", 401, InvalidToken, "the access token is not a well-formed JWS"),
    AlgNotAllowed => ("alg_not_allowed", 401, InvalidToken, "the token's signing algorithm is not allowed for this issuer or key"),
    TypInvalid => ("typ_invalid", 401, InvalidToken, "the token's typ header is not at+jwt"),
    KidUnknown => ("kid_unknown", 401, InvalidToken, "the token's key id is not a known key of its issuer"),
    JwksUnavailable => ("jwks_unavailable", 503, None, "the issuer's signing keys have not been fetched yet; failing closed"),
    ClaimMissing => ("claim_missing", 401, InvalidToken, "a required claim (iss, sub, aud, exp, iat, jti, client_id) is missing"),
    // Claims.
    IssuerUnknown => ("issuer_unknown", 401, InvalidToken, "the token's issuer is not trusted"),
    AudienceInvalid => ("audience_invalid", 401, InvalidToken, "the token is not issued for this API"),
    TokenExpired => ("token_expired", 401, InvalidToken, "the token has expired"),
    TokenNotYetValid => ("token_not_yet_valid", 401, InvalidToken, "the token's nbf is in the future"),
    TokenIssuedInFuture => ("token_issued_in_future", 401, InvalidToken, "the token's iat is in the future beyond the allowed clock skew"),
    TokenLifetimeTooLong => ("token_lifetime_too_long", 401, InvalidToken, "the token's lifetime (exp - iat) exceeds the route's maximum"),
    TokenTooOld => ("token_too_old", 401, InvalidToken, "the token is older than the route's maximum age"),
    SignatureInvalid => ("signature_invalid", 401, InvalidToken, "the token's signature does not verify"),
    // Machine authority.
    ScopeMissing => ("scope_missing", 403, InsufficientScope, "the token lacks a scope the route requires"),
    ScopeBeyondCeiling => ("scope_beyond_ceiling", 403, InsufficientScope, "the route's scope lies outside the client's registered ceiling"),
    ClientUnknown => ("client_unknown", 403, None, "the token's client is not registered"),
    ClientIssuerNotAllowed => ("client_issuer_not_allowed", 401, InvalidToken, "the token comes from an issuer this client may not take tokens from"),
    ClientInactive => ("client_inactive", 403, None, "the client is suspended or revoked"),
    ClientExpired => ("client_expired", 403, None, "the client's registration has expired"),
    ClientKindNotAllowed => ("client_kind_not_allowed", 403, None, "this kind of client may not call the route"),
    PartnerSuspended => ("partner_suspended", 403, None, "the client's partner is suspended"),
    PartnerOffboarded => ("partner_offboarded", 403, None, "the client's partner has been offboarded"),
    PartnerContractEnded => ("partner_contract_ended", 403, None, "the client's partner contract has ended"),
    ReviewOverdue => ("review_overdue", 403, None, "the client's access review is overdue beyond the grace period"),
    // Live revocation.
    TokenRevoked => ("token_revoked", 401, InvalidToken, "the token (iss, jti) has been revoked"),
    KeyRevoked => ("key_revoked", 401, InvalidToken, "the key that signed the token has been revoked"),
    ClientRevoked => ("client_revoked", 403, None, "the client has been revoked by the revocation feed"),
    RevocationStale => ("revocation_stale", 503, None, "revocation data is missing or older than the policy allows; failing closed"),
    // Sender constraint (RFC 8705 mTLS binding, client pinning, workload identity).
    SenderConstraintRequired => ("sender_constraint_required", 401, InvalidToken, "the route or client requires a sender-constrained token (mTLS-bound or DPoP)"),
    CertificateBindingMissing => ("certificate_binding_missing", 401, InvalidToken, "the token is bound to a client certificate but the request did not come over mutual TLS"),
    CertificateBindingMismatch => ("certificate_binding_mismatch", 401, InvalidToken, "the token is bound to another client certificate than the one presented"),
    ClientCredentialMismatch => ("client_credential_mismatch", 401, InvalidToken, "the client is pinned to other mTLS credentials (certificate or SPIFFE ID) than the connection presented"),
    WorkloadUnknown => ("workload_unknown", 401, Bare, "the connection's SPIFFE ID is not a registered workload"),
    // DPoP (RFC 9449).
    DpopNotEnabled => ("dpop_not_enabled", 401, InvalidToken, "DPoP is not configured for this API; the DPoP scheme and DPoP-bound tokens are refused"),
    DpopDowngrade => ("dpop_downgrade", 401, DpopInvalidToken, "a DPoP-bound token was presented with the Bearer scheme"),
    DpopTokenUnbound => ("dpop_token_unbound", 401, DpopInvalidToken, "the DPoP scheme was used with a token that is not DPoP-bound (no cnf.jkt)"),
    DpopProofMissing => ("dpop_proof_missing", 401, InvalidDpopProof, "the DPoP scheme needs exactly one DPoP proof header"),
    DpopProofDuplicated => ("dpop_proof_duplicated", 401, InvalidDpopProof, "more than one DPoP proof was presented"),
    DpopProofMalformed => ("dpop_proof_malformed", 401, InvalidDpopProof, "the DPoP proof is not a well-formed dpop+jwt JWS with jti, htm, htu, iat and ath"),
    DpopAlgNotAllowed => ("dpop_alg_not_allowed", 401, InvalidDpopProof, "the DPoP proof's algorithm is not an allowed asymmetric one"),
    DpopJwkInvalid => ("dpop_jwk_invalid", 401, InvalidDpopProof, "the DPoP proof's jwk is not a usable public key (private parts, unsupported type, or not the alg's)"),
    DpopSignatureInvalid => ("dpop_signature_invalid", 401, InvalidDpopProof, "the DPoP proof's signature does not verify with its jwk"),
    DpopHtmMismatch => ("dpop_htm_mismatch", 401, InvalidDpopProof, "the DPoP proof's htm is not the request method"),
    DpopHtuMismatch => ("dpop_htu_mismatch", 401, InvalidDpopProof, "the DPoP proof's htu is not this API's origin plus the request path"),
    DpopIatInvalid => ("dpop_iat_invalid", 401, InvalidDpopProof, "the DPoP proof's iat is outside the accepted window"),
    DpopAthMismatch => ("dpop_ath_mismatch", 401, InvalidDpopProof, "the DPoP proof's ath is not the hash of the access token"),
    DpopKeyMismatch => ("dpop_key_mismatch", 401, InvalidDpopProof, "the DPoP proof's key is not the one the token is bound to (cnf.jkt)"),
    DpopReplayed => ("dpop_replayed", 401, InvalidDpopProof, "the DPoP proof's jti was already used"),
    DpopNonceMissing => ("dpop_nonce_missing", 401, UseDpopNonce, "this route requires a server nonce in the DPoP proof; retry with the DPoP-Nonce value"),
    DpopNonceInvalid => ("dpop_nonce_invalid", 401, UseDpopNonce, "the DPoP proof's nonce is expired or was not issued by this API; retry with the DPoP-Nonce value"),
    DpopReplayCacheUnavailable => ("dpop_replay_cache_unavailable", 503, None, "the DPoP replay cache is full or unavailable; failing closed"),
    // Customer consent.
    ClientCredentialsOnCustomerRoute => ("client_credentials_on_customer_route", 403, None, "the route needs a customer's consent but the token has no customer (sub is the client)"),
    CustomerTokenOnMachineRoute => ("customer_token_on_machine_route", 403, None, "the route is machine-only and refuses tokens bound to a customer"),
    ConsentMissing => ("consent_missing", 403, None, "the route needs a customer's consent and none was presented"),
    ConsentDuplicated => ("consent_duplicated", 400, InvalidRequest, "more than one consent was presented"),
    ConsentInvalid => ("consent_invalid", 403, None, "the consent is malformed, not signed by the consent service, or signed with an unknown key"),
    ConsentExpired => ("consent_expired", 403, None, "the consent has expired"),
    ConsentNotAuthorised => ("consent_not_authorised", 403, None, "the consent's status is not Authorised"),
    ConsentRevoked => ("consent_revoked", 403, None, "the consent has been revoked"),
    ConsentClientMismatch => ("consent_client_mismatch", 403, None, "the consent was granted to another client"),
    ConsentSubjectMismatch => ("consent_subject_mismatch", 403, None, "the consent was granted by another customer"),
    ConsentPermissionMissing => ("consent_permission_missing", 403, None, "the consent does not grant a permission the route needs"),
    // Delegation (RFC 8693).
    ActorUnknown => ("actor_unknown", 403, None, "the token's acting party (act.sub) is not a registered client"),
    ActorNotAllowed => ("actor_not_allowed", 403, None, "the token's acting party is inactive, expired or not allowed on the route"),
    // Engine.
    PolicyUnavailable => ("policy_unavailable", 503, None, "the filter has no valid policy; failing closed"),
    VerifierError => ("verifier_error", 503, None, "the signature verifier failed; failing closed"),
    HostError => ("host_error", 503, None, "a host call failed; failing closed"),
}

impl Reason {
    /// The `error` member of the JSON body: the RFC 6750 code where there is one.
    pub fn error_code(self) -> &'static str {
        match self.challenge() {
            Challenge::InvalidRequest => "invalid_request",
            Challenge::InvalidToken | Challenge::DpopInvalidToken => "invalid_token",
            Challenge::InsufficientScope => "insufficient_scope",
            Challenge::InvalidDpopProof => "invalid_dpop_proof",
            Challenge::UseDpopNonce => "use_dpop_nonce",
            Challenge::Bare => "unauthorized",
            Challenge::None if self.status() >= 500 => "temporarily_unavailable",
            Challenge::None => "access_denied",
        }
    }

    /// The `WWW-Authenticate` value for this denial, or `None` when the status carries no challenge.
    /// `scope` is the route's required scopes (space-separated), used by `insufficient_scope`.
    /// `dpop_algs` (empty without DPoP) are the proof algorithms; `dpop_scheme` says the request
    /// used the DPoP scheme, whose token errors are then challenged with the DPoP scheme too
    /// (RFC 9449 §7.1).
    pub fn www_authenticate(self, realm: &str, scope: &str, dpop_algs: &str, dpop_scheme: bool) -> Option<String> {
        let dpop = match self.challenge() {
            Challenge::None => return None,
            Challenge::Bare => return Some(format!("Bearer realm=\"{}\"", realm)),
            Challenge::InvalidDpopProof | Challenge::DpopInvalidToken | Challenge::UseDpopNonce => true,
            Challenge::InvalidToken | Challenge::InsufficientScope => dpop_scheme && !dpop_algs.is_empty(),
            Challenge::InvalidRequest => false,
        };
        let mut value = if dpop {
            format!("DPoP realm=\"{realm}\", algs=\"{dpop_algs}\"")
        } else {
            format!("Bearer realm=\"{}\"", realm)
        };
        value.push_str(", error=\"");
        value.push_str(self.error_code());
        value.push_str("\", error_description=\"");
        value.push_str(self.description());
        value.push('"');
        if self.challenge() == Challenge::InsufficientScope && !scope.is_empty() {
            value.push_str(", scope=\"");
            value.push_str(scope);
            value.push('"');
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_match_challenges() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            match r.challenge() {
                Challenge::InvalidToken | Challenge::Bare => assert_eq!(r.status(), 401, "{:?}", r),
                Challenge::InvalidDpopProof | Challenge::DpopInvalidToken | Challenge::UseDpopNonce => {
                    assert_eq!(r.status(), 401, "{:?}", r)
                }
                Challenge::InsufficientScope => assert_eq!(r.status(), 403),
                Challenge::InvalidRequest => assert_eq!(r.status(), 400, "{:?}", r),
                Challenge::None => assert!(r.status() == 403 || r.status() == 503),
            }
            assert!(!r.description().contains('"'), "descriptions go inside a quoted-string");
        }
    }

    #[test]
    fn challenges_follow_rfc6750() {
        let w = |r: Reason, scope| r.www_authenticate("bank", scope, "ES256 EdDSA", false).unwrap_or_default();
        assert_eq!(w(Reason::TokenMissing, ""), "Bearer realm=\"bank\"");
        assert!(w(Reason::TokenExpired, "").starts_with("Bearer realm=\"bank\", error=\"invalid_token\""));
        let scope = w(Reason::ScopeMissing, "accounts payments");
        assert!(scope.contains("error=\"insufficient_scope\""));
        assert!(scope.ends_with("scope=\"accounts payments\""));
        assert_eq!(Reason::PartnerOffboarded.www_authenticate("bank", "", "", false), None);
        // RFC 9449 §7.1: proof errors, and token errors under the DPoP scheme, challenge with DPoP.
        assert!(w(Reason::DpopReplayed, "")
            .starts_with("DPoP realm=\"bank\", algs=\"ES256 EdDSA\", error=\"invalid_dpop_proof\""));
        assert!(w(Reason::DpopDowngrade, "")
            .starts_with("DPoP realm=\"bank\", algs=\"ES256 EdDSA\", error=\"invalid_token\""));
        assert!(w(Reason::DpopNonceMissing, "")
            .starts_with("DPoP realm=\"bank\", algs=\"ES256 EdDSA\", error=\"use_dpop_nonce\""));
        let expired_dpop = Reason::TokenExpired.www_authenticate("bank", "", "ES256", true).unwrap_or_default();
        assert!(expired_dpop.starts_with("DPoP realm=\"bank\", algs=\"ES256\", error=\"invalid_token\""));
    }
}

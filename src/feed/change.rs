//! One change to the feed, whoever asked for it (an SSF event or the bank's API), and the audit
//! stream it belongs to.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    OffboardPartner {
        partner: String,
    },
    SuspendPartner {
        partner: String,
    },
    /// Lifts a suspension; an offboarding is final.
    ReinstatePartner {
        partner: String,
    },
    RevokeClient {
        client: String,
    },
    /// `expires_at`: the consent's own expiry, after which the entry can no longer matter.
    RevokeConsent {
        consent: String,
        expires_at: Option<i64>,
    },
    RevokeToken {
        iss: String,
        jti: String,
    },
    RetireKey {
        iss: String,
        kid: String,
    },
}

/// The audit streams: each a file of its own, as a bank's review reads them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditStream {
    /// Partners and clients: offboarding, suspension, reinstatement, revocation.
    Offboarding,
    /// Customer consents.
    Consent,
    /// Tokens and signing keys.
    Credential,
    /// Security events received (accepted, mapped or not).
    Signal,
}

impl AuditStream {
    pub fn name(self) -> &'static str {
        match self {
            AuditStream::Offboarding => "offboarding",
            AuditStream::Consent => "consent",
            AuditStream::Credential => "credential",
            AuditStream::Signal => "signal",
        }
    }

    pub const ALL: [AuditStream; 4] =
        [AuditStream::Offboarding, AuditStream::Consent, AuditStream::Credential, AuditStream::Signal];
}

impl Change {
    /// The action's name: the API's grant and the counter's label.
    pub fn action(&self) -> &'static str {
        match self {
            Change::OffboardPartner { .. } => "offboard_partner",
            Change::SuspendPartner { .. } => "suspend_partner",
            Change::ReinstatePartner { .. } => "reinstate_partner",
            Change::RevokeClient { .. } => "revoke_client",
            Change::RevokeConsent { .. } => "revoke_consent",
            Change::RevokeToken { .. } => "revoke_token",
            Change::RetireKey { .. } => "retire_key",
        }
    }

    pub fn stream(&self) -> AuditStream {
        match self {
            Change::OffboardPartner { .. }
            | Change::SuspendPartner { .. }
            | Change::ReinstatePartner { .. }
            | Change::RevokeClient { .. } => AuditStream::Offboarding,
            Change::RevokeConsent { .. } => AuditStream::Consent,
            Change::RevokeToken { .. } | Change::RetireKey { .. } => AuditStream::Credential,
        }
    }

    /// What it is about, as one string for the audit line.
    pub fn target(&self) -> String {
        match self {
            Change::OffboardPartner { partner }
            | Change::SuspendPartner { partner }
            | Change::ReinstatePartner { partner } => {
                format!("partner:{partner}")
            }
            Change::RevokeClient { client } => format!("client:{client}"),
            Change::RevokeConsent { consent, .. } => format!("consent:{consent}"),
            Change::RevokeToken { iss, jti } => format!("token:{iss}#{jti}"),
            Change::RetireKey { iss, kid } => format!("key:{iss}#{kid}"),
        }
    }
}

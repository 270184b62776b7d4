//! Subject identifiers (RFC 9493, as SSF 1.0 uses them in `sub_id`): who a security event is about.
//!
//! The feed knows machine identities only: a token (`jwt_id`), a client (`opaque` id, `iss_sub`
//! whose `sub` is the client, or a `complex` subject's `application`) and a partner (a `complex`
//! subject's `tenant`). People (`email`, `phone_number`, ...) are parsed and then left to the
//! identity provider: nothing in the feed names them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    IssSub {
        iss: String,
        sub: String,
    },
    JwtId {
        iss: String,
        jti: String,
    },
    Opaque {
        id: String,
    },
    Email {
        email: String,
    },
    /// A `complex` subject's members the feed can use (others, such as `user` or `device`, are dropped).
    Complex {
        application: Option<Box<Subject>>,
        tenant: Option<Box<Subject>>,
    },
    /// A format the feed does not use (`phone_number`, `did`, `uri`, `aliases`, `account`, ...).
    Other {
        format: String,
    },
}

/// Longest identifier kept (a longer one is a malformed event, not an identity).
pub const MAX_ID_LEN: usize = 512;

impl Subject {
    /// Reads a subject identifier; `Err` says what is malformed.
    pub fn parse(v: &Value) -> Result<Subject, String> {
        Subject::parse_at(v, 0)
    }

    fn parse_at(v: &Value, depth: u8) -> Result<Subject, String> {
        let obj = v.as_object().ok_or("the subject is not a JSON object")?;
        let format = obj.get("format").and_then(Value::as_str).ok_or("the subject has no string format")?;
        let field = |name: &str| -> Result<String, String> {
            match obj.get(name).and_then(Value::as_str) {
                Some(s) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(s.to_string()),
                Some(_) => Err(format!("{format} subject: {name} is empty or longer than {MAX_ID_LEN}")),
                None => Err(format!("{format} subject: {name} is missing or not a string")),
            }
        };
        Ok(match format {
            "iss_sub" => Subject::IssSub { iss: field("iss")?, sub: field("sub")? },
            "jwt_id" => Subject::JwtId { iss: field("iss")?, jti: field("jti")? },
            "opaque" => Subject::Opaque { id: field("id")? },
            "email" => Subject::Email { email: field("email")? },
            "complex" if depth == 0 => {
                let member = |name: &str| -> Result<Option<Box<Subject>>, String> {
                    obj.get(name).map(|m| Subject::parse_at(m, 1).map(Box::new)).transpose()
                };
                let (application, tenant) = (member("application")?, member("tenant")?);
                for name in ["user", "device", "session", "org_unit", "group"] {
                    if let Some(m) = obj.get(name) {
                        Subject::parse_at(m, 1)?;
                    }
                }
                Subject::Complex { application, tenant }
            }
            "complex" => return Err("a complex subject inside a complex subject".into()),
            other if other.is_empty() || other.len() > 64 => {
                return Err("the subject's format is empty or too long".into())
            }
            other => Subject::Other { format: other.to_string() },
        })
    }

    /// The client this subject names, if it names one.
    pub fn client(&self) -> Option<&str> {
        match self {
            Subject::Opaque { id } => Some(id),
            Subject::IssSub { sub, .. } => Some(sub),
            Subject::Complex { application: Some(a), .. } => a.client(),
            _ => None,
        }
    }

    /// The partner (a `complex` subject's `tenant`), if it names one.
    pub fn partner(&self) -> Option<&str> {
        match self {
            Subject::Complex { tenant: Some(t), .. } => match t.as_ref() {
                Subject::Opaque { id } => Some(id),
                Subject::IssSub { sub, .. } => Some(sub),
                _ => None,
            },
            _ => None,
        }
    }

    /// The token (`iss`, `jti`), if this is a `jwt_id` subject.
    pub fn token(&self) -> Option<(&str, &str)> {
        match self {
            Subject::JwtId { iss, jti } => Some((iss, jti)),
            _ => None,
        }
    }

    /// Its format, for logs and counters.
    pub fn format(&self) -> &str {
        match self {
            Subject::IssSub { .. } => "iss_sub",
            Subject::JwtId { .. } => "jwt_id",
            Subject::Opaque { .. } => "opaque",
            Subject::Email { .. } => "email",
            Subject::Complex { .. } => "complex",
            Subject::Other { format } => format,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_format_the_feed_uses_is_read() {
        let s = Subject::parse(&json!({"format": "jwt_id", "iss": "https://as", "jti": "j1"})).unwrap();
        assert_eq!(s.token(), Some(("https://as", "j1")));
        assert_eq!(
            Subject::parse(&json!({"format": "opaque", "id": "moneywise-app"})).unwrap().client(),
            Some("moneywise-app")
        );
        assert_eq!(
            Subject::parse(&json!({"format": "iss_sub", "iss": "https://as", "sub": "moneywise-app"}))
                .unwrap()
                .client(),
            Some("moneywise-app")
        );
        let c = Subject::parse(&json!({"format": "complex",
            "application": {"format": "opaque", "id": "moneywise-app"},
            "tenant": {"format": "opaque", "id": "moneywise"},
            "user": {"format": "email", "email": "ops@moneywise.example"}}))
        .unwrap();
        assert_eq!((c.client(), c.partner()), (Some("moneywise-app"), Some("moneywise")));
        let e = Subject::parse(&json!({"format": "email", "email": "a@b.example"})).unwrap();
        assert_eq!((e.client(), e.partner(), e.token()), (None, None, None));
        let o = Subject::parse(&json!({"format": "phone_number", "phone_number": "+44"})).unwrap();
        assert_eq!(o, Subject::Other { format: "phone_number".into() });
    }

    #[test]
    fn malformed_subjects_are_refused() {
        for bad in [
            json!("moneywise-app"),
            json!({"id": "x"}),
            json!({"format": 7, "id": "x"}),
            json!({"format": "opaque"}),
            json!({"format": "opaque", "id": ""}),
            json!({"format": "opaque", "id": "x".repeat(MAX_ID_LEN + 1)}),
            json!({"format": "jwt_id", "iss": "https://as"}),
            json!({"format": "iss_sub", "sub": "x"}),
            json!({"format": "complex", "application": {"format": "complex"}}),
            json!({"format": "complex", "tenant": {"format": "opaque", "id": 3}}),
            json!({"format": "complex", "user": {"format": "email"}}),
            json!({"format": ""}),
        ] {
            assert!(Subject::parse(&bad).is_err(), "{bad}");
        }
    }
}

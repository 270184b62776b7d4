//! The route table: method + path template matching, and the path ambiguity guard.
//!
//! Templates are compiled once per configure. Matching walks the request path's segments without
//! allocating. When two templates could match one path, the one with a literal segment earlier
//! wins (`/accounts/summary` before `/accounts/{AccountId}`); identical shapes are a load error.

/// One segment of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{Name}`: exactly one non-empty segment.
    Param(String),
}

/// A compiled path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    pub segments: Vec<Segment>,
}

/// Characters allowed in a path segment (RFC 3986 unreserved, plus a few sub-delims commonly used
/// in ids). Anything else, including `%`, makes the path ambiguous for us.
fn is_segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(b, b'-' | b'_' | b'~' | b'.' | b':' | b'@' | b'+' | b'!' | b'$' | b'\'' | b'*' | b',')
}

impl PathTemplate {
    /// Parses `/a/{B}/c`. The error says what is wrong, for the loader to prefix with the field path.
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        let Some(rest) = template.strip_prefix('/') else {
            return Err("must start with '/'".into());
        };
        if rest.is_empty() {
            return Ok(PathTemplate { segments: Vec::new() });
        }
        let mut segments = Vec::new();
        let mut names = Vec::new();
        for seg in rest.split('/') {
            if seg.is_empty() {
                return Err("has an empty segment ('//' or a trailing '/')".into());
            }
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("parameter {seg:?} must be {{Name}} with letters, digits or '_'"));
                }
                if names.contains(&name) {
                    return Err(format!("parameter {{{name}}} appears twice"));
                }
                names.push(name);
                segments.push(Segment::Param(name.to_string()));
            } else if seg == "." || seg == ".." || !seg.bytes().all(is_segment_byte) {
                return Err(format!("segment {seg:?} has characters a normalised path cannot contain"));
            } else {
                segments.push(Segment::Literal(seg.to_string()));
            }
        }
        Ok(PathTemplate { segments })
    }

    /// Does the (already guarded) path match? `path` has no query string.
    pub fn matches(&self, path: &str) -> bool {
        let rest = match path.strip_prefix('/') {
            Some(r) => r,
            None => return false,
        };
        if rest.is_empty() {
            return self.segments.is_empty();
        }
        let mut count: usize = 0;
        let mut tpl = self.segments.iter();
        for seg in rest.split('/') {
            count = count.saturating_add(1);
            match tpl.next() {
                Some(Segment::Literal(l)) if l == seg => {}
                Some(Segment::Param(_)) if !seg.is_empty() => {}
                _ => return false,
            }
        }
        count == self.segments.len()
    }

    /// Ordering key: literal segments sort before parameters, position by position.
    fn specificity(&self) -> Vec<u8> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::Param(_) => 1,
            })
            .collect()
    }

    /// The template's shape with parameter names erased: equal shapes match the same paths.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(_) => out.push_str("{}"),
            }
        }
        out
    }
}

/// Splits `:path` into path and query, and refuses anything whose meaning depends on who decodes it.
///
/// Envoy's `normalize_path` and `merge_slashes` run before us in our configs; this guard is the
/// second line for deployments that forgot them, and for encodings Envoy leaves alone (`%2F`, `%2e`).
pub fn guard_path(raw: &str) -> Option<(&str, Option<&str>)> {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let rest = path.strip_prefix('/')?;
    if !rest.is_empty() {
        for seg in rest.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." || !seg.bytes().all(is_segment_byte) {
                return None;
            }
        }
    }
    Some((path, query))
}

/// Does the query string carry an access token (RFC 6750 §2.3)? FAPI forbids that form.
pub fn query_has_access_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or("");
        name.eq_ignore_ascii_case("access_token") || name.eq_ignore_ascii_case("access%5Ftoken")
    })
}

/// A compiled table: routes in match order, each with its methods.
#[derive(Debug, Default)]
pub struct RouteTable<R> {
    entries: Vec<(PathTemplate, Vec<String>, R)>,
}

impl<R> RouteTable<R> {
    /// Builds the table. Errors name the two colliding indexes (in insertion order).
    pub fn build(routes: Vec<(PathTemplate, Vec<String>, R)>) -> Result<RouteTable<R>, (usize, usize)> {
        for (i, (ti, mi, _)) in routes.iter().enumerate() {
            for (j, (tj, mj, _)) in routes.iter().enumerate().skip(i.saturating_add(1)) {
                if ti.shape() == tj.shape() && mi.iter().any(|m| mj.contains(m)) {
                    return Err((i, j));
                }
            }
        }
        let mut entries = routes;
        // Stable: among equal specificity, the policy's order decides.
        entries.sort_by_key(|(t, _, _)| (t.segments.len(), t.specificity()));
        Ok(RouteTable { entries })
    }

    /// The first route whose method list has `method` and whose template matches `path`.
    pub fn find(&self, method: &str, path: &str) -> Option<&R> {
        self.entries
            .iter()
            .find(|(t, methods, _)| methods.iter().any(|m| m == method) && t.matches(path))
            .map(|(_, _, r)| r)
    }

    pub fn iter(&self) -> impl Iterator<Item = &R> {
        self.entries.iter().map(|(_, _, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn table(specs: &[(&str, &str, &'static str)]) -> RouteTable<&'static str> {
        let routes =
            specs.iter().map(|(m, p, id)| (PathTemplate::parse(p).unwrap(), vec![m.to_string()], *id)).collect();
        RouteTable::build(routes).unwrap()
    }

    #[test]
    fn matches_templates_by_method_and_segments() {
        let t = table(&[
            ("GET", "/accounts", "accounts"),
            ("GET", "/accounts/{AccountId}", "account"),
            ("GET", "/accounts/{AccountId}/balances", "balances"),
            ("GET", "/accounts/summary", "summary"),
            ("POST", "/domestic-payments", "pay"),
        ]);
        assert_eq!(t.find("GET", "/accounts"), Some(&"accounts"));
        assert_eq!(t.find("GET", "/accounts/22289"), Some(&"account"));
        assert_eq!(t.find("GET", "/accounts/summary"), Some(&"summary"), "literal beats parameter");
        assert_eq!(t.find("GET", "/accounts/22289/balances"), Some(&"balances"));
        assert_eq!(t.find("GET", "/accounts/22289/balances/x"), None);
        assert_eq!(t.find("GET", "/domestic-payments"), None, "method must match");
        assert_eq!(t.find("POST", "/domestic-payments"), Some(&"pay"));
        assert_eq!(t.find("GET", "/Accounts"), None, "case-sensitive");
    }

    #[test]
    fn identical_shapes_with_shared_methods_collide() {
        let a = (PathTemplate::parse("/a/{X}").unwrap(), vec!["GET".to_string()], 0);
        let b = (PathTemplate::parse("/a/{Y}").unwrap(), vec!["GET".to_string()], 1);
        assert_eq!(RouteTable::build(vec![a, b]).err(), Some((0, 1)));
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["accounts", "/a//b", "/a/", "/a/{}", "/a/{X}/{X}", "/a/../b", "/a/%2F", "/a/{X-Y}"] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn guard_refuses_ambiguous_paths() {
        for bad in [
            "/accounts/../payments",
            "/accounts/./x",
            "/accounts//x",
            "/accounts/%2e%2e/payments",
            "/accounts%2Fx",
            "/accounts/x%00",
            "/accounts\\x",
            "/accounts/x;jsessionid=1",
            "accounts",
            "/accounts/x#frag",
            "/accounts/",
        ] {
            assert!(guard_path(bad).is_none(), "{bad}");
        }
        assert_eq!(guard_path("/accounts/1?x=y"), Some(("/accounts/1", Some("x=y"))));
        assert_eq!(guard_path("/"), Some(("/", None)));
    }

    #[test]
    fn spots_tokens_in_the_query() {
        assert!(query_has_access_token("access_token=abc"));
        assert!(query_has_access_token("a=1&ACCESS_TOKEN=abc"));
        assert!(query_has_access_token("access%5Ftoken=abc"));
        assert!(!query_has_access_token("not_access_token=1"));
    }
}

//! The house rules of `src/`, checked: three parts, one direction, no cycles among the engine's
//! modules. The engine uses neither the filter nor the tools; the filter and the tools never use
//! each other; only `filter::proxy` names proxy-wasm. Test code (`*_tests.rs`, `*_tests/`, `testkit.rs`, and
//! what follows `#[cfg(test)]` in a file) may use anything.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (path relative to src/, the file's non-test code)
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|p| {
            (p.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/"), std::fs::read_to_string(&p).unwrap())
        })
        .filter(|(rel, _)| !rel.ends_with("_tests.rs") && !rel.contains("_tests/") && !rel.ends_with("testkit.rs"))
        .map(|(rel, text)| {
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            (rel, code)
        })
        .collect()
}

/// The engine module a file belongs to (`engine/jwt/cache.rs` -> `jwt`), if it is in the engine.
fn engine_module(rel: &str) -> Option<String> {
    let rest = rel.strip_prefix("engine/")?;
    let first = rest.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Engine modules a piece of code refers to, by `crate::engine::X` (and `super::X` from a file
/// directly in `engine/`).
fn engine_refs(rel: &str, code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut scan = |prefix: &str| {
        for (i, _) in code.match_indices(prefix) {
            let name: String =
                code[i + prefix.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    };
    scan("crate::engine::");
    if rel.starts_with("engine/") && rel.matches('/').count() == 1 {
        scan("super::");
    }
    out
}

#[test]
fn the_engine_uses_neither_the_filter_nor_the_tools_and_they_never_use_each_other() {
    let mut broken = Vec::new();
    for (rel, code) in sources() {
        let part = rel.split('/').next().unwrap_or("");
        let forbidden: &[&str] = match part {
            "engine" => &["crate::filter", "crate::tools", "crate::feed", "proxy_wasm"],
            "tools" => &["crate::filter", "crate::feed", "proxy_wasm"],
            // The feed service uses the engine's JOSE and policy code, nothing of Envoy's side.
            "feed" => &["crate::filter", "crate::tools", "proxy_wasm"],
            "bin" => &["nhi_guard::filter", "proxy_wasm"],
            "filter" if !rel.starts_with("filter/proxy/") => &["crate::tools", "crate::feed", "proxy_wasm"],
            "filter" => &["crate::tools", "crate::feed"],
            _ => &[],
        };
        for f in forbidden {
            if code.contains(f) {
                broken.push(format!("src/{rel} uses {f}"));
            }
        }
    }
    assert!(broken.is_empty(), "dependency direction broken:\n{}", broken.join("\n"));
}

#[test]
fn the_engine_modules_form_no_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources() {
        let Some(module) = engine_module(&rel) else { continue };
        if module == "mod" {
            continue;
        }
        let refs = engine_refs(&rel, &code);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != module));
    }
    assert!(graph.len() > 15, "the engine's modules were not found: {graph:?}");
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("module cycle in the engine: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checks_see_what_they_check() {
    // The scanner itself: a made-up file in the engine that uses the tools must be caught.
    assert_eq!(engine_module("engine/jwt/cache.rs").as_deref(), Some("jwt"));
    assert_eq!(engine_module("filter/proxy/root.rs"), None);
    let refs = engine_refs("engine/keys.rs", "use super::base64url;\nuse crate::engine::policy::Policy;");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["base64url", "policy"]);
}

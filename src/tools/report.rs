//! `nhi-guard report`: one self-contained HTML page for reviewers and auditors. Every identity
//! with its owner, purpose, status, dates, scope ceiling against what its routes need, how it
//! authenticates and what it can actually reach; the governance findings, linked to the identity;
//! and, from Envoy's stats and the audit files when given, decisions per route and partner,
//! denials by reason and over time as inline SVG charts. No script, no external asset: it opens
//! from a mail attachment, reads without JavaScript and prints.

use crate::engine::policy::{Client, Policy};
use crate::engine::reason::Reason;
use crate::engine::timestamp::{format_rfc3339, parse_rfc3339};
use crate::tools::governance::{findings, inventory, reachable_routes, Deployment, Finding, InventoryRow, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Largest stats or audit input read, per file: a report is not a log pipeline.
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// Allowed, denied and dry-run-denied counts of one route or partner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub allowed: u64,
    pub denied: u64,
    pub would_deny: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.allowed.saturating_add(self.denied).saturating_add(self.would_deny)
    }
}

/// What the traffic showed: from stats (counters since Envoy started) or, without stats, counted
/// from the audit files; denials over time only come from the audit files.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    pub source: String,
    pub routes: BTreeMap<String, Counts>,
    pub partners: BTreeMap<String, Counts>,
    pub denials_by_reason: BTreeMap<String, u64>,
    /// (Unix second of the decision, denied) from the audit files.
    pub decisions: Vec<(i64, bool)>,
}

/// Reads Envoy's `/stats` text (`wasmcustom.nhi_guard.route.balances.allowed: 3`) or its
/// Prometheus output (`envoy_wasmcustom_nhi_guard_route_balances_allowed{} 3`). Names are matched
/// against what the policy defines, so the counters of another filter never leak in.
pub fn read_stats(policy: &Policy, text: &str, traffic: &mut Traffic) {
    let sanitize = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    let mut values: Vec<(String, u64)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = match line.split_once(": ") {
            Some((n, v)) => (n, v),
            None => match line.rsplit_once(' ') {
                Some((n, v)) => (n.split('{').next().unwrap_or(n), v),
                None => continue,
            },
        };
        if let Ok(v) = value.trim().parse::<f64>() {
            // Counters are whole numbers; Prometheus writes them as floats.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            values.push((sanitize(name.trim()), v.max(0.0) as u64));
        }
    }
    let lookup = |metric: &str| -> Option<u64> {
        let want = sanitize(metric);
        values.iter().find(|(n, _)| n == &want || n.ends_with(&format!("_{want}"))).map(|(_, v)| *v)
    };
    let counts = |prefix: &str| Counts {
        allowed: lookup(&format!("{prefix}.allowed")).unwrap_or(0),
        denied: lookup(&format!("{prefix}.denied")).unwrap_or(0),
        would_deny: lookup(&format!("{prefix}.would_deny")).unwrap_or(0),
    };
    for route in policy.routes.iter() {
        let c = counts(&format!("nhi_guard.route.{}", route.id));
        if c.total() > 0 {
            traffic.routes.insert(route.id.clone(), c);
        }
    }
    for id in policy.partners.keys() {
        let c = counts(&format!("nhi_guard.partner.{id}"));
        if c.total() > 0 {
            traffic.partners.insert(id.clone(), c);
        }
    }
    for reason in Reason::ALL {
        let n = lookup(&format!("nhi_guard.denied.{}", reason.code())).unwrap_or(0);
        if n > 0 {
            traffic.denials_by_reason.insert(reason.code().to_string(), n);
        }
    }
}

#[derive(Deserialize)]
struct AuditLine {
    stream: Option<String>,
    time: String,
    route: Option<String>,
    partner: Option<String>,
    outcome: String,
    reason: Option<String>,
}

/// Reads an audit JSON-lines file (the token stream: one line per decision). Lines of other
/// streams and lines that do not parse are skipped and counted, never fatal.
pub fn read_audit(text: &str, counts_too: bool, traffic: &mut Traffic) -> usize {
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(a) = serde_json::from_str::<AuditLine>(line) else {
            skipped += 1;
            continue;
        };
        if a.stream.as_deref().is_some_and(|s| s != "token") {
            continue;
        }
        let Some(t) = parse_rfc3339(&a.time) else {
            skipped += 1;
            continue;
        };
        let denied = a.outcome == "deny";
        traffic.decisions.push((t, denied));
        if counts_too {
            let bump = |c: &mut Counts| match a.outcome.as_str() {
                "allow" => c.allowed += 1,
                "deny" => c.denied += 1,
                _ => c.would_deny += 1,
            };
            if let Some(r) = &a.route {
                bump(traffic.routes.entry(r.clone()).or_default());
            }
            if let Some(p) = &a.partner {
                bump(traffic.partners.entry(p.clone()).or_default());
            }
            if denied {
                *traffic.denials_by_reason.entry(a.reason.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
            }
        }
    }
    skipped
}

/// HTML-escapes text for element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An id usable in `id=` and `href="#..."`.
fn anchor(kind: &str, id: &str) -> String {
    let safe: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{kind}-{safe}")
}

fn day(t: &str) -> &str {
    t.get(..10).unwrap_or(t)
}

const STYLE: &str = r#"
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg-alt: #f6f8fa; --err: #b42318; --warn: #9a6700; --info: #0550ae; --ok: #1a7f37; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; color: var(--fg); margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; background: var(--bg-alt); }
.card b { display: block; font-size: 22px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
th { background: var(--bg-alt); font-weight: 600; position: sticky; top: 0; }
tr:target { background: #fff8c5; }
.status-active { color: var(--ok); } .status-suspended, .status-revoked, .status-offboarded, .overdue, .sev-error { color: var(--err); font-weight: 600; }
.sev-warning { color: var(--warn); font-weight: 600; } .sev-info { color: var(--info); }
.none { color: var(--err); } .muted { color: var(--muted); }
.scope-unused { text-decoration: line-through; color: var(--warn); }
ul.routes { margin: 2px 0 0; padding: 0; list-style: none; } ul.routes li { display: inline; } ul.routes li:not(:last-child)::after { content: ", "; }
table.fixed { table-layout: fixed; } td.status { white-space: nowrap; } td.date { white-space: nowrap; font-size: 12px; font-variant-numeric: tabular-nums; } code { font-size: 12px; }
figure { margin: 12px 0 20px; } figcaption { font-weight: 600; margin-bottom: 6px; }
svg text { font: 12px system-ui, sans-serif; fill: var(--fg); }
.legend span { display: inline-block; margin-right: 14px; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
@media print {
  body { font-size: 10.5px; } main { max-width: none; padding: 0; }
  th { position: static; } tr, figure { break-inside: avoid; } h2 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
}
"#;

const ALLOW_FILL: &str = "#2da44e";
const DENY_FILL: &str = "#cf222e";
const WOULD_FILL: &str = "#bf8700";

/// Horizontal stacked bars (allowed, denied, would-deny) per label.
fn stacked_bars(rows: &[(String, Counts)]) -> String {
    let max = rows.iter().map(|(_, c)| c.total()).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (260u64, 760u64, 22u64);
    let height = (rows.len() as u64).saturating_mul(row_h).saturating_add(8);
    let mut svg = format!(
        r#"<svg role="img" width="{w}" height="{height}" viewBox="0 0 {w} {height}" xmlns="http://www.w3.org/2000/svg">"#,
        w = label_w + bar_w + 80
    );
    for (i, (label, c)) in rows.iter().enumerate() {
        let y = (i as u64).saturating_mul(row_h);
        let _ = write!(svg, r#"<text x="0" y="{}">{}</text>"#, y + 15, esc(label));
        let mut x = label_w;
        for (n, fill, what) in [
            (c.allowed, ALLOW_FILL, "allowed"),
            (c.denied, DENY_FILL, "denied"),
            (c.would_deny, WOULD_FILL, "would deny"),
        ] {
            let w = n.saturating_mul(bar_w) / max;
            if n > 0 {
                let _ = write!(
                    svg,
                    r#"<rect x="{x}" y="{}" width="{}" height="16" fill="{fill}"><title>{} {what}: {n}</title></rect>"#,
                    y + 3,
                    w.max(1),
                    esc(label)
                );
            }
            x = x.saturating_add(w);
        }
        let _ = write!(svg, r#"<text x="{}" y="{}">{}</text>"#, x + 6, y + 15, c.total());
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars of one series per label.
fn bars(rows: &[(String, u64)], fill: &str) -> String {
    let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (300u64, 720u64, 22u64);
    let height = (rows.len() as u64).saturating_mul(row_h).saturating_add(8);
    let mut svg = format!(
        r#"<svg role="img" width="{w}" height="{height}" viewBox="0 0 {w} {height}" xmlns="http://www.w3.org/2000/svg">"#,
        w = label_w + bar_w + 80
    );
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = (i as u64).saturating_mul(row_h);
        let w = n.saturating_mul(bar_w) / max;
        let _ = write!(
            svg,
            r#"<text x="0" y="{ty}">{l}</text><rect x="{label_w}" y="{ry}" width="{w}" height="16" fill="{fill}"><title>{l}: {n}</title></rect><text x="{nx}" y="{ty}">{n}</text>"#,
            ty = y + 15,
            ry = y + 3,
            l = esc(label),
            w = w.max(1),
            nx = label_w + w + 6
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Denials (and all decisions, lighter) per time bucket; buckets sized so there are at most 60.
fn timeline(decisions: &[(i64, bool)]) -> String {
    let (Some(first), Some(last)) = (decisions.iter().map(|d| d.0).min(), decisions.iter().map(|d| d.0).max()) else {
        return String::new();
    };
    let span = last.saturating_sub(first).max(1);
    let bucket =
        [1i64, 5, 10, 30, 60, 300, 900, 3600, 21_600, 86_400].into_iter().find(|b| span / b < 60).unwrap_or(86_400);
    let start = first - first.rem_euclid(bucket);
    let n = usize::try_from((last - start) / bucket + 1).unwrap_or(1).min(200);
    let mut all = vec![0u64; n];
    let mut denied = vec![0u64; n];
    for (t, d) in decisions {
        let i = usize::try_from((t - start) / bucket).unwrap_or(0).min(n - 1);
        if let (Some(a), Some(x)) = (all.get_mut(i), denied.get_mut(i)) {
            *a += 1;
            *x += u64::from(*d);
        }
    }
    let max = all.iter().copied().max().unwrap_or(1).max(1);
    let (w, h, left, bottom) = (1100u64, 220u64, 50u64, 40u64);
    let bw = ((w - left) / n as u64).max(2);
    let mut svg = format!(
        r#"<svg role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let plot = h - bottom;
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{plot}" x2="{w}" y2="{plot}" stroke="#8c959f"/><text x="0" y="14">{max}</text><text x="0" y="{plot}">0</text>"##
    );
    for i in 0..n {
        let x = left + i as u64 * bw;
        let (a, d) = (all.get(i).copied().unwrap_or(0), denied.get(i).copied().unwrap_or(0));
        let ah = a * (plot - 10) / max;
        let dh = d * (plot - 10) / max;
        let at = format_rfc3339(start + i as i64 * bucket);
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{}" width="{}" height="{ah}" fill="#d0d7de"><title>{at}: {a} decisions</title></rect><rect x="{x}" y="{}" width="{}" height="{dh}" fill="{DENY_FILL}"><title>{at}: {d} denied</title></rect>"##,
            plot - ah,
            bw.saturating_sub(1).max(1),
            plot - dh,
            bw.saturating_sub(1).max(1)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
        h - 14,
        esc(&format_rfc3339(start)),
        w,
        h - 14,
        esc(&format!("{} (one bar = {bucket} s)", format_rfc3339(last)))
    );
    svg.push_str("</svg>");
    svg
}

/// The scopes its reachable routes need, and ceiling scopes none of them needs.
fn scope_use(policy: &Policy, c: &Client, now: i64) -> (Vec<String>, Vec<String>) {
    let mut needed: Vec<String> =
        reachable_routes(policy, c, now).iter().flat_map(|r| r.scopes.iter().cloned()).collect();
    needed.sort();
    needed.dedup();
    let unused = c.scope_ceiling.iter().filter(|s| !needed.contains(s)).cloned().collect();
    (needed, unused)
}

/// The finding's identity anchor, when its subject names one (`client X`, `partner X`).
fn finding_anchor(f: &Finding) -> Option<String> {
    let (kind, id) = f.subject.split_once(' ')?;
    matches!(kind, "client" | "partner").then(|| anchor("id", id))
}

/// The whole page.
pub fn render(policy: &Policy, source: &str, now: i64, traffic: Option<&Traffic>) -> String {
    let rows = inventory(policy, now);
    let found = findings(policy, now, &Deployment::default());
    let count = |s: Severity| found.iter().filter(|f| f.severity == s).count();
    let reachless = rows.iter().filter(|r| r.kind != "partner" && r.routes.is_empty()).count();
    let overdue = |r: &InventoryRow| r.review_due.as_deref().and_then(parse_rfc3339).is_some_and(|d| d < now);
    let mut h = String::with_capacity(64 << 10);
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>nhi-guard governance report: {realm}</title><style>{STYLE}</style></head><body><main>
<h1>Machine identities and access: {realm}</h1>
<p class="meta">Policy <code>{source}</code>, evaluated at <time datetime="{at}">{at}</time> by nhi-guard {version}. Reachable routes are what the filter would admit at that time: client and partner active, registration and contract running, kind and scope ceiling allowing.</p>
<div class="cards"><div class="card"><b id="n-partners">{partners}</b>partners</div><div class="card"><b id="n-clients">{clients}</b>machine identities</div><div class="card"><b id="n-routes">{routes}</b>routes</div><div class="card"><b class="sev-error" id="n-errors">{errors}</b>error findings</div><div class="card"><b class="sev-warning" id="n-warnings">{warnings}</b>warnings</div><div class="card"><b id="n-reachless">{reachless}</b>identities reaching no route</div></div>
"#,
        realm = esc(&policy.realm),
        source = esc(source),
        at = format_rfc3339(now),
        version = env!("CARGO_PKG_VERSION"),
        partners = policy.partners.len(),
        clients = policy.clients.len(),
        routes = policy.routes.iter().count(),
        errors = count(Severity::Error),
        warnings = count(Severity::Warning),
    );

    // Findings first: what a reviewer acts on.
    h.push_str(r#"<h2 id="findings">Findings</h2><table><thead><tr><th style="width:9%">Severity</th><th style="width:19%">Finding</th><th style="width:20%">About</th><th>What to do</th></tr></thead><tbody>"#);
    if found.is_empty() {
        h.push_str(r#"<tr><td colspan="4" class="muted">No findings.</td></tr>"#);
    }
    for f in &found {
        let sev = format!("{:?}", f.severity).to_lowercase();
        let about = match finding_anchor(f) {
            Some(a) => format!(r##"<a href="#{a}">{}</a>"##, esc(&f.subject)),
            None => esc(&f.subject),
        };
        let _ = write!(
            h,
            r#"<tr class="finding" data-code="{code}"><td class="sev-{sev}">{sev}</td><td><code>{code}</code></td><td>{about}</td><td>{msg}</td></tr>"#,
            code = esc(f.code),
            msg = esc(&f.message)
        );
    }
    h.push_str("</tbody></table>");

    // Identities.
    h.push_str(r#"<h2 id="identities">Identities</h2><table class="fixed"><thead><tr><th style="width:10%">Identity</th><th style="width:9%">Kind</th><th style="width:15%">Owner and purpose</th><th style="width:8%">Status</th><th style="width:7.5%">Expires</th><th style="width:7.5%">Last review</th><th style="width:8%">Review due</th><th style="width:10%">Scope ceiling / used by its routes</th><th style="width:10%">Authenticates with</th><th style="width:15%">Reaches</th></tr></thead><tbody>"#);
    for r in &rows {
        let client = policy.clients.get(&r.id).filter(|_| r.kind != "partner");
        let kind = match (&r.partner, client.map(|c| !c.spiffe_ids.is_empty())) {
            (Some(p), _) => format!(r##"{} of <a href="#{}">{}</a>"##, esc(&r.kind), anchor("id", p), esc(p)),
            (None, Some(true)) => format!("{} (workload)", esc(&r.kind)),
            _ => esc(&r.kind),
        };
        let scopes = match client {
            Some(c) => {
                let (needed, unused) = scope_use(policy, c, now);
                let ceiling: Vec<String> = c
                    .scope_ceiling
                    .iter()
                    .map(|s| {
                        if unused.contains(s) {
                            format!(
                                r#"<span class="scope-unused" title="no reachable route needs it">{}</span>"#,
                                esc(s)
                            )
                        } else {
                            esc(s)
                        }
                    })
                    .collect();
                format!(
                    "{}<br><span class=\"muted\">used: {}</span>",
                    ceiling.join(" "),
                    if needed.is_empty() { "nothing".into() } else { esc(&needed.join(" ")) }
                )
            }
            None => r#"<span class="muted">-</span>"#.into(),
        };
        let reaches = if r.routes.is_empty() {
            r#"<span class="none">none</span>"#.to_string()
        } else {
            let mut ids = r.routes.clone();
            ids.sort();
            let items: String = ids.iter().map(|id| format!("<li><code>{}</code></li>", esc(id))).collect();
            format!(r#"{} route(s)<ul class="routes">{items}</ul>"#, r.routes.len())
        };
        let due = r.review_due.as_deref().map_or_else(
            || r#"<span class="overdue">never<br>reviewed</span>"#.to_string(),
            |d| {
                if overdue(r) {
                    format!(r#"<span class="overdue">{}<br>(overdue)</span>"#, esc(day(d)))
                } else {
                    esc(day(d))
                }
            },
        );
        let _ = write!(
            h,
            r#"<tr id="{a}" class="identity" data-kind="{kind_raw}"><td><b>{id}</b></td><td>{kind}</td><td>{owner}<br><span class="muted">{purpose}</span></td><td class="status status-{status}">{status}</td><td class="date">{expires}</td><td class="date">{reviewed}</td><td class="date">{due}</td><td>{scopes}</td><td>{auth}</td><td class="reaches">{reaches}</td></tr>"#,
            a = anchor("id", &r.id),
            kind_raw = esc(&r.kind),
            id = esc(&r.id),
            owner = esc(&r.owner),
            purpose = esc(&r.purpose),
            status = esc(&r.status),
            expires = r.expires.as_deref().map_or("-".into(), |e| esc(day(e))),
            reviewed = r.last_reviewed.as_deref().map_or("-".into(), |e| esc(day(e))),
            auth = if r.authentication.is_empty() { "-".into() } else { esc(&r.authentication.join("; ")) },
        );
    }
    h.push_str("</tbody></table>");

    // Traffic.
    h.push_str(r#"<h2 id="traffic">Decisions</h2>"#);
    match traffic {
        None => h.push_str(r#"<p class="muted">No stats or audit files given (<code>--stats</code>, <code>--audit</code>): identities and findings only.</p>"#),
        Some(t) => {
            let _ = write!(h, r#"<p class="meta">From {}.</p>"#, esc(&t.source));
            let legend = format!(
                r#"<p class="legend"><span><i style="background:{ALLOW_FILL}"></i>allowed</span><span><i style="background:{DENY_FILL}"></i>denied</span><span><i style="background:{WOULD_FILL}"></i>would deny (dry-run)</span></p>"#
            );
            let mut by_route: Vec<(String, Counts)> = t.routes.iter().map(|(k, v)| (k.clone(), *v)).collect();
            by_route.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then(a.0.cmp(&b.0)));
            let mut by_partner: Vec<(String, Counts)> = t.partners.iter().map(|(k, v)| (k.clone(), *v)).collect();
            by_partner.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then(a.0.cmp(&b.0)));
            let mut reasons: Vec<(String, u64)> = t.denials_by_reason.iter().map(|(k, v)| (k.clone(), *v)).collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (id, title, body) in [
                ("chart-routes", "Decisions per route", if by_route.is_empty() { String::new() } else { format!("{legend}{}", stacked_bars(&by_route)) }),
                ("chart-partners", "Decisions per partner", if by_partner.is_empty() { String::new() } else { stacked_bars(&by_partner) }),
                ("chart-reasons", "Denials by reason", if reasons.is_empty() { String::new() } else { bars(&reasons, DENY_FILL) }),
                ("chart-time", "Decisions and denials over time (audit files)", timeline(&t.decisions)),
            ] {
                let body = if body.is_empty() { r#"<p class="muted">No data.</p>"#.to_string() } else { body };
                let _ = write!(h, r#"<figure id="{id}"><figcaption>{title}</figcaption>{body}</figure>"#);
            }
        }
    }
    h.push_str(r#"<p class="meta">Generated by <code>nhi-guard report</code>. Reason codes: docs/reason-codes.md; findings: docs/metrics-and-audit.md.</p></main></body></html>"#);
    h.push('\n');
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{policy, NOW};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_page_lists_every_identity_finding_and_what_each_reaches() {
        let p = policy();
        let html = render(&p, "policies/open-banking.json", NOW, None);
        for id in ["moneywise-app", "quickloans-app", "statements-batch", "moneywise", "quickloans"] {
            assert!(html.contains(&format!(r#"<tr id="id-{id}" class="identity""#)), "{id}");
        }
        // A client of an offboarded partner reaches nothing; an active one lists its routes.
        let row = |id: &str| {
            let start = html.find(&format!(r#"<tr id="id-{id}""#)).unwrap();
            html[start..].split("</tr>").next().unwrap().to_string()
        };
        assert!(row("quickloans-app").contains(r#"<span class="none">none</span>"#));
        assert!(row("moneywise-app").contains("<code>domestic-payments-create</code>"));
        assert!(row("moneywise-legacy").contains(r#"<span class="none">none</span>"#), "expired registration");
        assert!(row("ledger-sync").contains("2030-06-30"));
        assert!(html.contains(r#"data-code="stale_partner_access""#));
        assert!(html.contains(r##"<a href="#id-quickloans-app">client quickloans-app</a>"##));
        assert!(!html.contains("<script"), "no script");
        for external in [" src=", "href=\"http", "url(", "@import", "<link"] {
            assert!(!html.contains(external), "an external asset: {external}");
        }
    }

    #[test]
    fn stats_in_both_formats_and_audit_lines_feed_the_charts() {
        let p = policy();
        let mut t = Traffic { source: "test".into(), ..Traffic::default() };
        read_stats(
            &p,
            "wasmcustom.nhi_guard.route.balances.allowed: 7\nwasmcustom.nhi_guard.route.balances.denied: 2\n\
             cluster.x.upstream_rq: 99\nwasmcustom.nhi_guard.denied.scope_missing: 2\n",
            &mut t,
        );
        read_stats(&p, "# TYPE x counter\nenvoy_wasmcustom_nhi_guard_partner_moneywise_allowed{} 5\n", &mut t);
        assert_eq!(t.routes.get("balances"), Some(&Counts { allowed: 7, denied: 2, would_deny: 0 }));
        assert_eq!(t.partners.get("moneywise").map(|c| c.allowed), Some(5));
        assert_eq!(t.denials_by_reason.get("scope_missing"), Some(&2));
        let audit = r#"{"stream":"token","time":"2026-11-24T00:00:01.5Z","route":"balances","partner":"moneywise","outcome":"deny","reason":"consent_missing"}
not json
{"stream":"consent","time":"2026-11-24T00:00:02Z","route":"balances","outcome":"allow","reason":null}
{"stream":"token","time":"2026-11-24T00:05:00Z","route":"accounts","outcome":"allow","reason":null}"#;
        assert_eq!(read_audit(audit, false, &mut t), 1, "the line that does not parse");
        assert_eq!(t.decisions.len(), 2);
        let html = render(&p, "p", NOW, Some(&t));
        for chart in ["chart-routes", "chart-partners", "chart-reasons", "chart-time"] {
            let start = html.find(&format!(r#"<figure id="{chart}">"#)).unwrap();
            assert!(html[start..].split("</figure>").next().unwrap().contains("<svg"), "{chart}");
        }
        assert!(html.contains("<title>balances allowed: 7</title>"));
    }

    #[test]
    fn hostile_text_is_escaped() {
        let mut doc: serde_json::Value = serde_json::from_str(crate::engine::testkit::POLICY_JSON).unwrap();
        doc["clients"][0]["purpose"] = serde_json::json!("<script>alert(1)</script> & \"quotes\"");
        let p = crate::engine::policy::load(&doc.to_string(), "t").unwrap();
        let mut t = Traffic::default();
        read_audit(
            r#"{"time":"2026-11-24T00:00:00Z","route":"<img src=x>","outcome":"deny","reason":"<b>"}"#,
            true,
            &mut t,
        );
        let html = render(&p, "<policy>", NOW, Some(&t));
        assert!(
            !html.contains("<script>alert")
                && html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;")
        );
        assert!(!html.contains("<img src=x>") && !html.contains("<b>&lt;") && html.contains("&lt;policy&gt;"));
    }
}

//! `nhi-guard report` on real traffic, read by a real browser: the real Envoy serves a mix of
//! allowed and refused requests, the report is built from its `/stats` (text and Prometheus) and
//! the token audit file it wrote, and headless Chromium (Debian's package) loads the page, whose
//! DOM must show the example policy's identities, dates and findings. A screenshot at 1280 px and
//! a print to PDF are kept under target/report/ as test artefacts.

use crate::harness::*;
use nhi_guard::engine::policy::load;
use nhi_guard::tools::report::{read_audit, read_stats, render, Traffic};
use std::path::Path;
use std::process::Command;

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return c;
        }
    }
    panic!("chromium is not installed (scripts/setup.sh installs Debian's chromium package)");
}

/// Runs headless Chromium on `page` with `args`; returns stdout.
fn headless(page: &Path, args: &[String]) -> String {
    let profile = page.with_extension("profile");
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_report_of_real_traffic_reads_in_a_real_browser() {
    let envoy = Envoy::start(&example_policy());
    let good = token(&customer_claims("moneywise-app", "accounts"));
    let consent = artefact("moneywise-app", "aac-r1", &["ReadBalances"]);
    for _ in 0..6 {
        let r =
            envoy.send("GET", "/accounts/1/balances", &[("authorization", &bearer(&good)), ("x-consent", &consent)]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for (t, path) in [
        (token(&claims("quickloans-app", "accounts")), "/accounts"),
        (token(&claims("moneywise-insights", "accounts")), "/domestic-payments"),
        (good.clone(), "/accounts/1/balances"),
    ] {
        let r = envoy.send("GET", path, &[("authorization", &bearer(&t))]);
        assert!(r.status >= 400);
    }
    // Decision counters reach Envoy on the workers' 100 ms tick.
    let counted = envoy.wait_until(std::time::Duration::from_secs(5), || {
        envoy.stat("wasmcustom.nhi_guard.route.balances.allowed") == 6 && envoy.stat("wasmcustom.nhi_guard.denied") >= 3
    });
    assert!(counted.is_some(), "the counters never reached /stats");
    // Whole admin pages, as an operator saves them (curl: they come chunked).
    let admin = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{}{path}", envoy.admin))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (stats, prometheus) = (admin("/stats"), admin("/stats/prometheus"));
    // Access logs reach the file on Envoy's flush interval.
    let audit_file = envoy.dir.join("audit-token.jsonl");
    let read_audit_file = || std::fs::read_to_string(&audit_file).unwrap_or_default();
    envoy.wait_until(std::time::Duration::from_secs(10), || read_audit_file().lines().count() >= 9);
    let audit = read_audit_file();
    assert!(audit.lines().count() >= 9, "audit lines: {audit}");

    let policy = load(&example_policy(), "policies/open-banking.json").unwrap();
    let mut traffic = Traffic { source: "the test's Envoy".into(), ..Traffic::default() };
    read_stats(&policy, &stats, &mut traffic);
    let mut from_prometheus = Traffic::default();
    read_stats(&policy, &prometheus, &mut from_prometheus);
    let ours: Vec<&str> = stats.lines().filter(|l| l.contains("nhi_guard.route")).collect();
    assert_eq!(traffic.routes.get("balances").map(|c| c.allowed), Some(6), "{ours:?}");
    assert_eq!(from_prometheus.routes, traffic.routes, "the Prometheus output reads the same");
    assert_eq!(from_prometheus.denials_by_reason, traffic.denials_by_reason);
    assert_eq!(read_audit(&audit, false, &mut traffic), 0);
    let html = render(&policy, "policies/open-banking.json", now(), Some(&traffic));

    let dir = repo().join("target/report");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let dom = headless(&page, &["--dump-dom".into()]);
    // Every identity of the example policy, with its dates; what each can reach.
    for id in [
        "moneywise",
        "quickloans",
        "budgetbuddy",
        "oldbridge",
        "moneywise-app",
        "moneywise-insights",
        "moneywise-beta",
        "moneywise-legacy",
        "quickloans-app",
        "budgetbuddy-app",
        "oldbridge-app",
        "ledger-sync",
        "statements-batch",
    ] {
        assert!(dom.contains(&format!(r#"<tr id="id-{id}" class="identity""#)), "identity {id} missing from the DOM");
    }
    let row = |id: &str| {
        let start = dom.find(&format!(r#"<tr id="id-{id}""#)).unwrap();
        dom[start..].split("</tr>").next().unwrap().to_string()
    };
    assert!(row("moneywise-app").contains("2030-12-31") && row("moneywise-app").contains("2027-02-11"));
    assert!(row("quickloans-app").contains(r#"<span class="none">none</span>"#), "offboarded partner's app");
    assert!(row("statements-batch").contains("spiffe://bank.internal/ns/statements/sa/statements-batch"));
    assert!(row("ledger-sync").contains("overdue"));
    // Findings, linked to their identities.
    for code in ["stale_partner_access", "contract_ended_partner_active", "expired_but_active", "never_reviewed"] {
        assert!(dom.contains(&format!(r#"data-code="{code}""#)), "finding {code}");
    }
    assert!(dom.contains(r##"href="#id-quickloans-app""##));
    // The charts are there as SVG, with the traffic's numbers.
    for chart in ["chart-routes", "chart-partners", "chart-reasons", "chart-time"] {
        let start = dom.find(&format!(r#"<figure id="{chart}""#)).unwrap_or_else(|| panic!("{chart}"));
        assert!(dom[start..].split("</figure>").next().unwrap().contains("<svg"), "{chart} has no chart");
    }
    assert!(dom.contains("balances allowed: 6"));
    assert!(dom.contains("partner_offboarded"));

    // A screenshot at 1280 px wide and a print, kept for people to look at.
    let shot = dir.join("report.png");
    let pdf = dir.join("report.pdf");
    headless(&page, &["--window-size=1280,3400".into(), format!("--screenshot={}", shot.display())]);
    headless(&page, &["--no-pdf-header-footer".into(), format!("--print-to-pdf={}", pdf.display())]);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 50_000, "screenshot {} bytes", png.len());
    let printed = std::fs::read(&pdf).unwrap();
    assert!(printed.starts_with(b"%PDF") && printed.len() > 20_000, "pdf {} bytes", printed.len());
}

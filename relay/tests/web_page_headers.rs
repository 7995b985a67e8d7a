//! The web page and its scripts come with headers that keep the page to itself: its CSP lets
//! it open WebSockets to its own origin only (not `ws:`/`wss:` anywhere) and forbids framing
//! it, and no `Referer` carries its address, which holds the apikey, anywhere.
#![allow(clippy::unwrap_used)]

use moose_testkit::http::http_get_headers;
use moose_testkit::relay::Relay;

/// The directives of a CSP, by name: `connect-src 'self'` gives `("connect-src", "'self'")`.
fn directives(csp: &str) -> Vec<(String, String)> {
    csp.split(';')
        .filter_map(|d| {
            let d = d.trim();
            let (name, sources) = d.split_once(' ').unwrap_or((d, ""));
            (!name.is_empty()).then(|| (name.to_owned(), sources.trim().to_owned()))
        })
        .collect()
}

#[test]
fn the_page_talks_to_its_own_origin_only_and_leaks_no_referrer() {
    let relay = Relay::start(&[], &[]);
    for path in ["/", "/index.html", "/moose.js", "/worklet.js"] {
        let response = http_get_headers(relay.http, path);
        assert_eq!(response.status, 200, "{path}");
        let csp = response.header("Content-Security-Policy");
        assert_eq!(csp.len(), 1, "{path}: one CSP, got {csp:?}");
        let csp = directives(csp[0]);
        let source = |name: &str| {
            csp.iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.as_str())
                .unwrap_or_else(|| panic!("{path}: no {name} in {csp:?}"))
        };
        assert_eq!(source("default-src"), "'self'", "{path}");
        assert_eq!(
            source("connect-src"),
            "'self'",
            "{path}: WebSockets to the page's own origin only"
        );
        assert_eq!(source("frame-ancestors"), "'none'", "{path}");
        assert!(
            csp.iter().all(|(_, sources)| !sources
                .split_whitespace()
                .any(|s| matches!(s, "ws:" | "wss:" | "*" | "http:" | "https:"))),
            "{path}: a scheme-wide or wildcard source in {csp:?}"
        );
        assert_eq!(
            response.header("Referrer-Policy"),
            ["no-referrer"],
            "{path}"
        );
    }
    // Refusals carry no page, so no page headers either; they still answer.
    let missing = http_get_headers(relay.http, "/nothing-here");
    assert_eq!(missing.status, 404);
}

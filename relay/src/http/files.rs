//! The web client, embedded in the binary (relay/web/).

/// An embedded file: path, content type, body.
pub(crate) type File = (&'static str, &'static str, &'static [u8]);

const FILES: [File; 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../web/index.html"),
    ),
    (
        "/moose.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/moose.js"),
    ),
    (
        "/worklet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/worklet.js"),
    ),
];

/// The headers of every embedded file (docs/web-client.md, "Headers"):
/// - the page may load only its own scripts and open WebSockets only to its own origin
///   (CSP Level 3 lets `'self'` match `ws:`/`wss:` of the page's own host and port; a browser
///   that does not refuses the WebSocket rather than open one elsewhere), and may not be
///   framed by any page (clickjacking);
/// - no `Referer` leaves it: its address holds the apikey (`/?apikey=…`).
pub(crate) const PAGE_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; \
         frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
];

/// The embedded file served at `path`, if any (`/index.html` is `/`).
pub(crate) fn lookup(path: &str) -> Option<File> {
    let path = if path == "/index.html" { "/" } else { path };
    FILES.iter().copied().find(|(p, _, _)| *p == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_scripts_are_embedded() {
        for path in ["/", "/index.html", "/moose.js", "/worklet.js"] {
            let (_, _, body) = lookup(path).expect(path);
            assert!(!body.is_empty(), "{path} is empty");
        }
        assert!(lookup("/ws").is_none());
        assert!(lookup("/../Cargo.toml").is_none());
    }

    #[test]
    fn the_page_talks_to_its_own_origin_only() {
        let csp = PAGE_HEADERS
            .iter()
            .find(|(name, _)| *name == "Content-Security-Policy")
            .map(|(_, value)| *value)
            .expect("a CSP");
        let connect = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("connect-src"))
            .expect("connect-src");
        assert_eq!(connect, "connect-src 'self'");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            !csp.contains("unsafe-eval") && !csp.contains("script-src"),
            "{csp}"
        );
    }
}

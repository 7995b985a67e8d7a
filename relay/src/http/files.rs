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

/// The page may load only its own scripts and talk only to its own origin's WebSockets.
pub(crate) const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'";

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
}

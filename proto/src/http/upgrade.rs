//! The RFC 6455 §4.2.1 opening handshake: which requests ask for a WebSocket, which of those
//! are acceptable, and the `Sec-WebSocket-Accept` value.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use super::response::Status;

/// The GUID RFC 6455 §1.3 appends to the client's key before hashing.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Length of a `Sec-WebSocket-Key` value: base64 of 16 bytes with its `==` padding.
const KEY_TEXT_LEN: usize = 24;
/// Length of the nonce the key encodes.
const KEY_NONCE_LEN: usize = 16;

/// What a request says about upgrading.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade<'a> {
    /// No `Upgrade` header naming `websocket`: a plain HTTP request.
    None,
    /// A valid RFC 6455 upgrade: `GET`, HTTP/1.1, `Upgrade: websocket`, `Connection`
    /// listing `upgrade`, `Sec-WebSocket-Version: 13` and a key that is base64 of exactly 16
    /// bytes. `key` is the header value as sent, for [`accept_key`].
    WebSocket {
        /// The `Sec-WebSocket-Key` value.
        key: &'a str,
    },
    /// The request asks for a WebSocket but breaks a rule; answer with
    /// [`UpgradeError::status`] and [`UpgradeError::extra_headers`].
    Invalid(UpgradeError),
}

/// Why a WebSocket upgrade request is refused. Checked in this order, so the first broken
/// rule is the one reported.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeError {
    /// The method is not `GET`. Status 405 with `Allow: GET`.
    NotGet,
    /// The request line says HTTP/1.0; upgrades need HTTP/1.1. Status 400.
    NotHttp11,
    /// No `Connection` header lists the `upgrade` token. Status 400.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing, repeated or not `13`. Status 426 with
    /// `Sec-WebSocket-Version: 13` (RFC 6455 §4.4).
    BadVersion,
    /// `Sec-WebSocket-Key` is missing, repeated or not base64 of exactly 16 bytes. Status 400.
    BadKey,
}

impl UpgradeError {
    /// The status to refuse the upgrade with.
    pub fn status(&self) -> Status {
        match self {
            UpgradeError::NotGet => Status::METHOD_NOT_ALLOWED,
            UpgradeError::BadVersion => Status::UPGRADE_REQUIRED,
            UpgradeError::NotHttp11
            | UpgradeError::MissingConnectionUpgrade
            | UpgradeError::BadKey => Status::BAD_REQUEST,
        }
    }

    /// Headers the refusal must carry besides the standard ones of
    /// [`write_response`](super::write_response).
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            UpgradeError::NotGet => &[("Allow", "GET")],
            UpgradeError::BadVersion => &[("Sec-WebSocket-Version", "13")],
            UpgradeError::NotHttp11
            | UpgradeError::MissingConnectionUpgrade
            | UpgradeError::BadKey => &[],
        }
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpgradeError::NotGet => "websocket upgrade must use GET",
            UpgradeError::NotHttp11 => "websocket upgrade needs HTTP/1.1",
            UpgradeError::MissingConnectionUpgrade => "Connection header lacks \"upgrade\"",
            UpgradeError::BadVersion => "unsupported Sec-WebSocket-Version (need 13)",
            UpgradeError::BadKey => "bad Sec-WebSocket-Key",
        })
    }
}

impl std::error::Error for UpgradeError {}

/// Classifies a parsed request head. `minor` is the HTTP/1.x minor version.
pub(super) fn check_upgrade<'a>(
    method: &str,
    minor: u8,
    headers: &[httparse::Header<'a>],
) -> Upgrade<'a> {
    if !any_header_has_token(headers, "upgrade", "websocket") {
        return Upgrade::None;
    }
    match websocket_key(method, minor, headers) {
        Ok(key) => Upgrade::WebSocket { key },
        Err(e) => Upgrade::Invalid(e),
    }
}

fn websocket_key<'a>(
    method: &str,
    minor: u8,
    headers: &[httparse::Header<'a>],
) -> Result<&'a str, UpgradeError> {
    if method != "GET" {
        return Err(UpgradeError::NotGet);
    }
    if minor != 1 {
        return Err(UpgradeError::NotHttp11);
    }
    if !any_header_has_token(headers, "connection", "upgrade") {
        return Err(UpgradeError::MissingConnectionUpgrade);
    }
    match only_value(headers, "sec-websocket-version") {
        Some(b"13") => {}
        _ => return Err(UpgradeError::BadVersion),
    }
    let key = only_value(headers, "sec-websocket-key").ok_or(UpgradeError::BadKey)?;
    if !is_valid_key(key) {
        return Err(UpgradeError::BadKey);
    }
    // Base64 text is ASCII, so this cannot fail after the check above.
    std::str::from_utf8(key).map_err(|_| UpgradeError::BadKey)
}

/// True when some header `name` holds `token` in its comma-separated list (both compared
/// ASCII case-insensitively). Headers may repeat; RFC 9110 §5.3 makes that the same list.
fn any_header_has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| {
            h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
}

/// The value of header `name` when it appears exactly once (httparse trims it).
fn only_value<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    let mut matching = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    let first = matching.next()?;
    match matching.next() {
        None => Some(first.value),
        Some(_) => None,
    }
}

/// RFC 6455 §4.1: the key is a base64-encoded 16-byte nonce. We ask for the canonical
/// 24-character padded form, which is what every client sends.
fn is_valid_key(key: &[u8]) -> bool {
    if key.len() != KEY_TEXT_LEN {
        return false;
    }
    // 24 base64 characters decode to at most 18 bytes.
    let mut nonce = [0u8; 18];
    matches!(STANDARD.decode_slice(key, &mut nonce), Ok(KEY_NONCE_LEN))
}

/// `base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))`, RFC 6455 §1.3.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    fn good() -> Vec<httparse::Header<'static>> {
        vec![
            h("Upgrade", "websocket"),
            h("Connection", "Upgrade"),
            h("Sec-WebSocket-Version", "13"),
            h("Sec-WebSocket-Key", KEY),
        ]
    }

    /// The good request with header `name` removed, then added back as `value` if given.
    fn with(name: &'static str, value: Option<&'static str>) -> Vec<httparse::Header<'static>> {
        let mut hs: Vec<_> = good()
            .into_iter()
            .filter(|x| !x.name.eq_ignore_ascii_case(name))
            .collect();
        hs.extend(value.map(|v| h(name, v)));
        hs
    }

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_upgrade_case_insensitive() {
        assert_eq!(
            check_upgrade("GET", 1, &good()),
            Upgrade::WebSocket { key: KEY }
        );
        let hs = [
            h("upgrade", "WebSocket"),
            h("connection", "keep-alive"),
            h("CONNECTION", "foo ,UPGRADE"),
            h("sec-websocket-version", "13"),
            h("SEC-WEBSOCKET-KEY", KEY),
        ];
        assert_eq!(
            check_upgrade("GET", 1, &hs),
            Upgrade::WebSocket { key: KEY }
        );
    }

    #[test]
    fn not_websocket_is_none() {
        assert_eq!(check_upgrade("GET", 1, &[]), Upgrade::None);
        assert_eq!(
            check_upgrade("POST", 0, &with("Upgrade", Some("h2c"))),
            Upgrade::None
        );
        assert_eq!(
            check_upgrade("GET", 1, &with("Upgrade", None)),
            Upgrade::None
        );
    }

    #[test]
    fn each_rule() {
        let bad =
            |method, minor, hs: &[httparse::Header<'_>]| match check_upgrade(method, minor, hs) {
                Upgrade::Invalid(e) => e,
                other => panic!("expected invalid, got {other:?}"),
            };
        assert_eq!(bad("POST", 1, &good()), UpgradeError::NotGet);
        assert_eq!(bad("get", 1, &good()), UpgradeError::NotGet);
        assert_eq!(bad("GET", 0, &good()), UpgradeError::NotHttp11);
        assert_eq!(
            bad("GET", 1, &with("Connection", None)),
            UpgradeError::MissingConnectionUpgrade
        );
        assert_eq!(
            bad("GET", 1, &with("Connection", Some("upgraded, keep-alive"))),
            UpgradeError::MissingConnectionUpgrade
        );
        assert_eq!(
            bad("GET", 1, &with("Sec-WebSocket-Version", None)),
            UpgradeError::BadVersion
        );
        assert_eq!(
            bad("GET", 1, &with("Sec-WebSocket-Version", Some("8"))),
            UpgradeError::BadVersion
        );
        assert_eq!(
            bad("GET", 1, &with("Sec-WebSocket-Version", Some("13, 8"))),
            UpgradeError::BadVersion
        );
        let mut twice = good();
        twice.push(h("Sec-WebSocket-Version", "13"));
        assert_eq!(bad("GET", 1, &twice), UpgradeError::BadVersion);
        assert_eq!(
            bad("GET", 1, &with("Sec-WebSocket-Key", None)),
            UpgradeError::BadKey
        );
        for key in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",   // unpadded
            "dGhlIHNhbXBsZSBub25jZQ=",  // short padding
            "dGhlIHNhbXBsZSBub25jZWE=", // 17 bytes
            "dGhlIHNhbXBsZSBub25jZ!==", // not base64
            "dGhlIHNhbXBsZSBub25j",     // 15 bytes
        ] {
            assert_eq!(
                bad("GET", 1, &with("Sec-WebSocket-Key", Some(key))),
                UpgradeError::BadKey,
                "{key}"
            );
        }
        let mut twice = good();
        twice.push(h("Sec-WebSocket-Key", KEY));
        assert_eq!(bad("GET", 1, &twice), UpgradeError::BadKey);
    }

    #[test]
    fn statuses_and_headers() {
        assert_eq!(UpgradeError::BadVersion.status(), Status(426));
        assert_eq!(
            UpgradeError::BadVersion.extra_headers(),
            &[("Sec-WebSocket-Version", "13")]
        );
        assert_eq!(UpgradeError::NotGet.status(), Status(405));
        assert_eq!(UpgradeError::NotGet.extra_headers(), &[("Allow", "GET")]);
        for e in [
            UpgradeError::NotHttp11,
            UpgradeError::MissingConnectionUpgrade,
            UpgradeError::BadKey,
        ] {
            assert_eq!(e.status(), Status(400));
            assert!(e.extra_headers().is_empty());
            assert!(!e.to_string().is_empty());
        }
    }
}

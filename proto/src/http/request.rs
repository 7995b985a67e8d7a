//! Incremental parsing of one request head into a borrowed [`Request`].

use std::fmt;

use super::response::Status;
use super::upgrade::{Upgrade, check_upgrade};

/// Largest request head (request line + headers + blank line) we accept. A browser's
/// upgrade request is well under 1 KiB; the limit bounds the memory a silent client holds.
pub const MAX_HEAD_BYTES: usize = 8192;
/// Most header lines we accept in one request.
pub const MAX_HEADERS: usize = 32;

/// Result of an incremental parse.
#[derive(Debug)]
pub enum Parse<T> {
    /// The head is complete; it occupies `buf[..head_len]`, anything after belongs to the
    /// connection's next protocol.
    Complete {
        /// The parsed value, borrowing from the buffer.
        value: T,
        /// Length of the head including the final blank line.
        head_len: usize,
    },
    /// More bytes are needed; call again with the longer buffer.
    Partial,
}

/// Why a request head is refused. Each maps to one HTTP status ([`RequestError::status`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Not a valid HTTP/1.x request head (bad token, bad line ending, bad header, duplicate
    /// `Host` or `Origin`, a `Host`/`Origin` value that is not UTF-8), or a query string with
    /// bad percent-encoding. Status 400.
    Malformed,
    /// The head is not complete within [`MAX_HEAD_BYTES`]. Status 431.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header lines. Status 431.
    TooManyHeaders,
    /// The request line names a version other than HTTP/1.0 or HTTP/1.1. Status 505.
    UnsupportedVersion,
}

impl RequestError {
    /// The status to answer with before closing the connection.
    pub fn status(&self) -> Status {
        match self {
            RequestError::Malformed => Status::BAD_REQUEST,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => {
                Status::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            RequestError::UnsupportedVersion => Status::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::Malformed => "malformed request",
            RequestError::HeadTooLarge => "request head too large",
            RequestError::TooManyHeaders => "too many request headers",
            RequestError::UnsupportedVersion => "unsupported HTTP version",
        })
    }
}

impl std::error::Error for RequestError {}

/// A request head, borrowed from the read buffer.
#[derive(Debug)]
pub struct Request<'a> {
    /// Method token as sent (`GET`, `HEAD`, ...). Case-sensitive per RFC 9110.
    pub method: &'a str,
    /// Request target up to the first `?` (still percent-encoded).
    pub path: &'a str,
    /// Everything after the first `?`, without the `?`; `""` when there is none.
    pub query: &'a str,
    /// The `Origin` header, if sent.
    pub origin: Option<&'a str>,
    /// The `Host` header, if sent.
    pub host: Option<&'a str>,
    /// Whether and how the request asks for a WebSocket upgrade.
    pub upgrade: Upgrade<'a>,
}

/// Parses a request head from the start of `buf`.
///
/// Call again with the whole accumulated buffer after each read: `Partial` while the head is
/// incomplete and `buf` is shorter than [`MAX_HEAD_BYTES`], then `HeadTooLarge`. Never reads
/// past the head.
pub fn parse_request(buf: &[u8]) -> Result<Parse<Request<'_>>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(RequestError::HeadTooLarge)
            } else {
                Ok(Parse::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(RequestError::UnsupportedVersion),
        Err(_) => return Err(RequestError::Malformed),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(RequestError::HeadTooLarge);
    }
    // httparse fills all three on Complete; treat anything else as malformed, not a panic.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let headers = &*req.headers;
    let host = single_text_header(headers, "host")?;
    let origin = single_text_header(headers, "origin")?;
    let upgrade = check_upgrade(method, minor, headers);

    Ok(Parse::Complete {
        value: Request {
            method,
            path,
            query,
            origin,
            host,
            upgrade,
        },
        head_len,
    })
}

/// The value of a header that may appear at most once and must be text. Two `Host` headers
/// are a 400 per RFC 9112 §3.2; two `Origin` headers could slip past an allowlist that reads
/// the other one, so they are refused too.
fn single_text_header<'a>(
    headers: &[httparse::Header<'a>],
    name: &str,
) -> Result<Option<&'a str>, RequestError> {
    let mut found = None;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        if found.is_some() {
            return Err(RequestError::Malformed);
        }
        found = Some(std::str::from_utf8(h.value).map_err(|_| RequestError::Malformed)?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::UpgradeError;

    const BROWSER: &[u8] = b"GET /ws?apikey=abcdefghijklmnop HTTP/1.1\r\n\
        Host: relay.example\r\n\
        Upgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Origin: https://relay.example\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse_request(buf) {
            Ok(Parse::Complete { value, head_len }) => (value, head_len),
            other => panic!("expected complete, got {other:?}"),
        }
    }

    #[test]
    fn browser_upgrade() {
        let (req, head_len) = complete(BROWSER);
        assert_eq!(head_len, BROWSER.len());
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/ws");
        assert_eq!(req.query, "apikey=abcdefghijklmnop");
        assert_eq!(req.host, Some("relay.example"));
        assert_eq!(req.origin, Some("https://relay.example"));
        assert_eq!(
            req.upgrade,
            Upgrade::WebSocket {
                key: "dGhlIHNhbXBsZSBub25jZQ=="
            }
        );
    }

    #[test]
    fn every_prefix_is_partial_and_trailing_bytes_are_left() {
        for n in 0..BROWSER.len() {
            assert!(
                matches!(parse_request(&BROWSER[..n]), Ok(Parse::Partial)),
                "prefix {n} should be partial"
            );
        }
        let mut buf = BROWSER.to_vec();
        buf.extend_from_slice(&[0x82, 0x80, 1, 2, 3, 4]);
        assert_eq!(complete(&buf).1, BROWSER.len());
    }

    #[test]
    fn plain_get_without_query() {
        let (req, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            (req.path, req.query, req.host, req.origin),
            ("/", "", None, None)
        );
        assert_eq!(req.upgrade, Upgrade::None);
        let (req, _) = complete(b"GET /?a=1?b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((req.path, req.query), ("/", "a=1?b"));
    }

    #[test]
    fn head_too_large() {
        let mut buf = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        buf.resize(MAX_HEAD_BYTES - 1, b'a');
        assert!(matches!(parse_request(&buf), Ok(Parse::Partial)));
        buf.push(b'a');
        assert_eq!(
            parse_request(&buf).map(|_| ()),
            Err(RequestError::HeadTooLarge)
        );
        // A head that completes but is over the limit is refused too.
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_request(&buf).map(|_| ()),
            Err(RequestError::HeadTooLarge)
        );
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = buf.clone();
        ok.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&ok), Ok(Parse::Complete { .. })));
        buf.extend_from_slice(b"X-last: v\r\n\r\n");
        assert_eq!(
            parse_request(&buf).map(|_| ()),
            Err(RequestError::TooManyHeaders)
        );
    }

    #[test]
    fn malformed_and_version_errors() {
        let cases: &[(&[u8], RequestError)] = &[
            (
                b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                RequestError::Malformed,
            ),
            (b"G(T / HTTP/1.1\r\n\r\n", RequestError::Malformed),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                RequestError::Malformed,
            ),
            (
                b"GET / HTTP/1.1\r\nOrigin: a\r\norigin: b\r\n\r\n",
                RequestError::Malformed,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
                RequestError::Malformed,
            ),
            (b"GET / HTTP/2.0\r\n\r\n", RequestError::UnsupportedVersion),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                RequestError::UnsupportedVersion,
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(
                parse_request(buf).map(|_| ()),
                Err(*want),
                "{:?}",
                buf.escape_ascii()
            );
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(RequestError::Malformed.status(), Status(400));
        assert_eq!(RequestError::HeadTooLarge.status(), Status(431));
        assert_eq!(RequestError::TooManyHeaders.status(), Status(431));
        assert_eq!(RequestError::UnsupportedVersion.status(), Status(505));
        assert_eq!(
            RequestError::HeadTooLarge.to_string(),
            "request head too large"
        );
    }

    #[test]
    fn invalid_upgrade_is_reported_not_an_error() {
        let (req, _) = complete(
            b"POST /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        );
        assert_eq!(req.upgrade, Upgrade::Invalid(UpgradeError::NotGet));
    }
}

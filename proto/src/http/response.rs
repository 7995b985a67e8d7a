//! Status codes and the two responses the relay writes: `101` and a short complete reply.

use std::fmt;

use super::upgrade::accept_key;

/// An HTTP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// 200: the web client, health and metrics pages.
    pub const OK: Status = Status(200);
    /// 400: a malformed request or WebSocket handshake.
    pub const BAD_REQUEST: Status = Status(400);
    /// 401: no apikey, or one that breaks the apikey rules.
    pub const UNAUTHORIZED: Status = Status(401);
    /// 403: a well-formed apikey that is not configured, or an Origin outside the allowlist.
    pub const FORBIDDEN: Status = Status(403);
    /// 404: unknown path.
    pub const NOT_FOUND: Status = Status(404);
    /// 405: a method the path does not serve (send `Allow`).
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    /// 426: `Sec-WebSocket-Version` is not 13 (send `Sec-WebSocket-Version: 13`).
    pub const UPGRADE_REQUIRED: Status = Status(426);
    /// 429: this address failed too often (send `Retry-After`).
    pub const TOO_MANY_REQUESTS: Status = Status(429);
    /// 431: the request head is over the size or header-count limit.
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    /// 500: a bug on our side.
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    /// 503: the line is full or the relay is shutting down.
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    /// 505: the request line names neither HTTP/1.0 nor HTTP/1.1.
    pub const HTTP_VERSION_NOT_SUPPORTED: Status = Status(505);

    /// The reason phrase for the status line (RFC 9110 §15); `"Unknown"` for other codes.
    pub fn reason(&self) -> &'static str {
        match self.0 {
            101 => "Switching Protocols",
            200 => "OK",
            204 => "No Content",
            301 => "Moved Permanently",
            304 => "Not Modified",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            426 => "Upgrade Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "Unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// Appends the `101 Switching Protocols` answer to a valid upgrade whose
/// `Sec-WebSocket-Key` was `key`.
pub fn write_switching_protocols(key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a complete response: status line, `Content-Type`, `Content-Length`,
/// `Connection: close`, `Cache-Control: no-store`, `X-Content-Type-Options: nosniff`, the
/// `extra` headers in order, and `body`.
///
/// Error bodies should be short `text/plain` lines such as `"unknown apikey\n"`, and must
/// never echo an apikey. A header name or value containing CR or LF is a bug in the caller;
/// it is skipped (and asserts in debug builds) so that it can never split the response.
pub fn write_response(
    status: Status,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.0.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.reason().as_bytes());
    out.extend_from_slice(b"\r\n");
    write_header(out, "Content-Type", content_type);
    write_header(out, "Content-Length", &body.len().to_string());
    write_header(out, "Connection", "close");
    write_header(out, "Cache-Control", "no-store");
    write_header(out, "X-Content-Type-Options", "nosniff");
    for (name, value) in extra {
        write_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let splits_line = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
    if splits_line(name) || splits_line(value) {
        debug_assert!(false, "header {name:?} contains CR or LF");
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_protocols_rfc_example() {
        let mut out = b"prefix".to_vec();
        write_switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", &mut out);
        assert_eq!(
            out,
            b"prefixHTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn error_response_exact_bytes() {
        let mut out = Vec::new();
        write_response(
            Status::UPGRADE_REQUIRED,
            "text/plain; charset=utf-8",
            &[("Sec-WebSocket-Version", "13")],
            b"websocket version 13 required\n",
            &mut out,
        );
        let want: &[u8] = b"HTTP/1.1 426 Upgrade Required\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Length: 30\r\n\
            Connection: close\r\n\
            Cache-Control: no-store\r\n\
            X-Content-Type-Options: nosniff\r\n\
            Sec-WebSocket-Version: 13\r\n\
            \r\n\
            websocket version 13 required\n";
        assert_eq!(
            out.escape_ascii().to_string(),
            want.escape_ascii().to_string()
        );
    }

    #[test]
    fn response_parses_back_with_httparse() {
        let mut out = Vec::new();
        write_response(
            Status::FORBIDDEN,
            "text/plain",
            &[],
            b"unknown apikey\n",
            &mut out,
        );
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(&out) else {
            panic!(
                "response does not parse: {:?}",
                out.escape_ascii().to_string()
            );
        };
        assert_eq!((resp.code, resp.reason), (Some(403), Some("Forbidden")));
        assert_eq!(&out[n..], b"unknown apikey\n");
    }

    #[test]
    fn reasons_for_every_constant() {
        for s in [
            Status::OK,
            Status::BAD_REQUEST,
            Status::UNAUTHORIZED,
            Status::FORBIDDEN,
            Status::NOT_FOUND,
            Status::METHOD_NOT_ALLOWED,
            Status::UPGRADE_REQUIRED,
            Status::TOO_MANY_REQUESTS,
            Status::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Status::INTERNAL_SERVER_ERROR,
            Status::SERVICE_UNAVAILABLE,
            Status::HTTP_VERSION_NOT_SUPPORTED,
        ] {
            assert_ne!(s.reason(), "Unknown", "{}", s.0);
        }
        assert_eq!(Status(299).reason(), "Unknown");
        assert_eq!(
            Status::TOO_MANY_REQUESTS.to_string(),
            "429 Too Many Requests"
        );
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "CR or LF"))]
    fn header_injection_is_dropped() {
        let mut out = Vec::new();
        write_response(
            Status::OK,
            "text/plain",
            &[("X", "a\r\nSet-Cookie: x")],
            b"",
            &mut out,
        );
        assert!(!out.windows(10).any(|w| w == b"Set-Cookie"));
    }
}

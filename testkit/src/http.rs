//! Plain HTTP/1.1 requests to a relay's web or admin port: one GET and its answer, and a poll
//! of `/readyz` for a status.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// A plain `GET path` over HTTP/1.1; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = http_get_headers(addr, path);
    (response.status, response.body)
}

/// A response as [`http_get_headers`] reads it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header fields in the order sent, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// Every value of the header `name` (compared without regard to case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A plain `GET path` over HTTP/1.1, with the response's header fields.
pub fn http_get_headers(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect();
    Response {
        status: status.parse().unwrap(),
        headers,
        body: body.to_owned(),
    }
}

/// Polls `/readyz` until it answers `status`, for up to `within`; true if it did.
pub fn wait_ready_status(admin: SocketAddr, status: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if http_get(admin, "/readyz").0 == status {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

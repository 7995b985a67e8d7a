//! A small blocking WebSocket client for integration tests, over a real TCP socket.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use moose_proto::ws::{self, CloseCode, Opcode};

/// A frame received from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn close_code(&self) -> Option<CloseCode> {
        assert_eq!(self.opcode, Opcode::Close);
        ws::parse_close(&self.payload)
            .unwrap()
            .map(|(code, _)| code)
    }
}

/// The relay's answer to an upgrade request it refused.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub head: String,
    pub body: String,
}

#[derive(Debug)]
pub struct WsClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    mask_seed: u32,
}

const TEST_KEY_HEADER: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A whole upgrade request head for `/ws?<query>` to `host`, with `extra` headers.
pub fn upgrade_request(host: SocketAddr, query: &str, extra: &[(&str, &str)]) -> String {
    let mut request = format!(
        "GET /ws?{query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {TEST_KEY_HEADER}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Sends an upgrade request for `/ws?<query>` with `extra` headers on `stream` and reads the
/// response head, byte by byte so no frame bytes after it are swallowed.
fn request_upgrade(
    stream: &mut TcpStream,
    addr: SocketAddr,
    query: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let request = upgrade_request(addr, query, extra);
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!("reading the response head: {e}"),
        }
    }
    head
}

/// Sends an upgrade request for `/ws?<query>` with `extra` headers; returns the client on 101.
pub fn try_connect(
    addr: SocketAddr,
    query: &str,
    extra: &[(&str, &str)],
) -> Result<WsClient, Refused> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let head = request_upgrade(&mut stream, addr, query, extra);
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status in {head:?}"))
        .parse()
        .unwrap();
    if status == 101 {
        assert!(
            head.contains(&format!(
                "Sec-WebSocket-Accept: {}",
                moose_proto::http::accept_key(TEST_KEY_HEADER)
            )),
            "{head}"
        );
        return Ok(WsClient {
            stream,
            buf: Vec::new(),
            mask_seed: 0x9e37_79b9,
        });
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    Err(Refused { status, head, body })
}

/// Joins the line of `key` over a socket whose receive buffer is `recv_buffer` bytes, set
/// before connecting so the window it advertises is small from the start, and returns it right
/// after the 101: a receiver that never reads.
pub fn connect_stalled(addr: SocketAddr, key: &str, recv_buffer: usize) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    let head = request_upgrade(&mut stream, addr, &format!("apikey={key}"), &[]);
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    stream
}

impl WsClient {
    /// Joins the line of `key`, panicking on refusal.
    pub fn connect(addr: SocketAddr, key: &str) -> WsClient {
        try_connect(addr, &format!("apikey={key}"), &[])
            .unwrap_or_else(|r| panic!("refused with {}: {}", r.status, r.body))
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // Any mask will do; vary it so tests would catch a relay that ignores it.
        self.mask_seed = self
            .mask_seed
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        self.mask_seed.to_be_bytes()
    }

    pub fn frame_bytes(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        let mask = self.next_mask();
        ws::encode_client_frame(fin, opcode, mask, payload, &mut out);
        out
    }

    pub fn send_frame(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) {
        let bytes = self.frame_bytes(fin, opcode, payload);
        self.stream.write_all(&bytes).unwrap();
    }

    pub fn send_binary(&mut self, payload: &[u8]) {
        self.send_frame(true, Opcode::Binary, payload);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next frame, or `None` if nothing arrives within `timeout` or the relay closed TCP.
    pub fn recv_within(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(h) = ws::decode_server_header(&self.buf, usize::MAX).unwrap()
                && self.buf.len() >= h.frame_len()
            {
                let payload = self.buf[h.header_len..h.frame_len()].to_vec();
                self.buf.drain(..h.frame_len());
                return Some(Frame {
                    fin: h.fin,
                    opcode: h.opcode,
                    payload,
                });
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next frame that is not a relay ping (answered automatically).
    pub fn recv(&mut self) -> Frame {
        loop {
            let frame = self
                .recv_within(Duration::from_secs(10))
                .expect("a frame within 10 s");
            if frame.opcode == Opcode::Ping {
                let payload = frame.payload.clone();
                self.send_frame(true, Opcode::Pong, &payload);
                continue;
            }
            return frame;
        }
    }

    /// Asserts the relay sends a close frame with `code`, then closes the connection.
    pub fn expect_close(&mut self, code: CloseCode) {
        let frame = self.recv();
        assert_eq!(frame.opcode, Opcode::Close, "expected close, got {frame:?}");
        assert_eq!(frame.close_code(), Some(code));
        assert!(
            self.recv_within(Duration::from_secs(5)).is_none(),
            "nothing after close"
        );
    }

    /// Asserts the relay closes the TCP connection (EOF, or a reset) within `within`, with no
    /// byte after the last frame received. Unlike `recv_within`, a timeout here is a failure,
    /// so this tells "closed" apart from "quiet".
    pub fn expect_eof(&mut self, within: Duration) {
        assert!(
            self.buf.is_empty(),
            "bytes after the last frame: {:?}",
            self.buf
        );
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("a byte after the last frame: {:#04x}", byte[0]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection still open after {within:?}: {e}"),
        }
    }

    /// True if no data frame arrives within `window`.
    pub fn is_quiet_for(&mut self, window: Duration) -> bool {
        match self.recv_within(window) {
            None => true,
            Some(f) => f.opcode == Opcode::Ping,
        }
    }
}

//! A third peer that is no browser: a plain TCP stream with a WebSocket client on it
//! (tungstenite, an implementation independent of ours). It sees what the relay forwards,
//! which is what anyone with the apikey sees, and it can inject messages.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

/// A raw WebSocket peer on a Moose line.
#[derive(Debug)]
pub struct RawPeer {
    ws: WebSocket<TcpStream>,
}

impl RawPeer {
    /// Connects to `ws://addr/ws?apikey=...`; panics with the cause when the relay refuses.
    pub fn connect(addr: SocketAddr, apikey: &str) -> RawPeer {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("raw peer: connect {addr}: {e}"));
        let url = format!("ws://{addr}/ws?apikey={apikey}");
        let (ws, response) = tungstenite::client::client(url, stream)
            .unwrap_or_else(|e| panic!("raw peer: WebSocket upgrade refused: {e}"));
        assert_eq!(response.status().as_u16(), 101, "raw peer: upgrade status");
        // Short reads let `collect` keep its own deadline; tungstenite resumes after a timeout.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        RawPeer { ws }
    }

    /// Returns the binary messages received during `window` (text and control frames are
    /// skipped). Panics if the relay closes the connection.
    pub fn collect(&mut self, window: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + window;
        let mut messages = Vec::new();
        while Instant::now() < end {
            match self.ws.read() {
                Ok(Message::Binary(payload)) => messages.push(payload.to_vec()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!(
                    "raw peer: read failed after {} messages: {e}",
                    messages.len()
                ),
            }
        }
        messages
    }

    /// Sends one binary message to the line.
    pub fn send(&mut self, payload: &[u8]) {
        self.ws
            .send(Message::Binary(payload.to_vec().into()))
            .unwrap_or_else(|e| panic!("raw peer: send failed: {e}"));
    }
}

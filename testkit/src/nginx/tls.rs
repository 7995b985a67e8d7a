//! TLS clients for the tests behind nginx: rustls trusting only the test's self-signed
//! certificate, plain HTTPS GETs, and WebSockets (tungstenite) over the same streams.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, StreamOwned};
use tungstenite::WebSocket;

/// A TLS stream to nginx.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A client configuration whose only root is the certificate at `cert_pem`.
pub fn client_config(cert_pem: &Path) -> Arc<ClientConfig> {
    let cert = CertificateDer::from_pem_file(cert_pem).expect("read the test certificate");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("add the test certificate as a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects to 127.0.0.1:`port` as `localhost` and completes the TLS handshake; returns the
/// stream and the protocol version nginx agreed to.
pub fn connect(port: u16, config: &Arc<ClientConfig>) -> (TlsStream, ProtocolVersion) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to nginx");
    tcp.set_nodelay(true).expect("nodelay");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = ClientConnection::new(Arc::clone(config), name).expect("TLS client");
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake with nginx");
    }
    let version = stream
        .conn
        .protocol_version()
        .expect("a protocol version after the handshake");
    (stream, version)
}

/// `GET path` over HTTPS through nginx; returns (status, body).
pub fn https_get(port: u16, config: &Arc<ClientConfig>, path: &str) -> (u16, String) {
    let (mut stream, _) = connect(port, config);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    stream.flush().expect("flush request");
    let mut response = Vec::new();
    // nginx closes without close_notify after `Connection: close` on some paths; what was
    // read before that is the whole response.
    if let Err(e) = stream.read_to_end(&mut response) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof,
            "reading the response: {e}"
        );
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Joins the line of `apikey` through nginx: `wss://localhost:port/ws?apikey=...`.
pub fn ws_connect(port: u16, config: &Arc<ClientConfig>, apikey: &str) -> WebSocket<TlsStream> {
    let (stream, _) = connect(port, config);
    let url = format!("wss://localhost:{port}/ws?apikey={apikey}");
    let (ws, response) = tungstenite::client(url.as_str(), stream)
        .unwrap_or_else(|e| panic!("WebSocket upgrade through nginx: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

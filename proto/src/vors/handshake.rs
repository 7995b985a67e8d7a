//! The Noise handshake and transport: `Noise_NKhfs_25519+Kyber1024_ChaChaPoly_BLAKE2b`,
//! empty prologue, through `snow`.
//!
//! ```text
//! <- s                                  (the client knows the server's X25519 key)
//! -> e, es, e1     payload [USERNAME, ROOM, PWHASH or "", SENT_AT]
//! <- e, ee, ekem1  payload ["COOKIE", 16 bytes] or ["ERR", text padded to 19 bytes]
//! ```
//!
//! Messages here are raw Noise messages; the sessions put each in a netstring on TCP. After
//! message 2 both sides hold a [`Transport`] for the control messages.
//!
//! Message 1 opens with the client's ephemeral key `e` in clear ([`client_ephemeral`]), so a
//! server can refuse a copy of a message 1 it has seen before any DH. Message 2 has one
//! length whatever it says ([`REPLY_PAYLOAD_LEN`]), so its length tells an eavesdropper
//! nothing about the room.
//! Both sides then derive the member's media keys from the handshake hash
//! ([`SessionKeys::from_handshake_hash`]). `snow` draws its own ephemeral keys (X25519 and
//! Kyber) from the operating system; nothing else here is random.

use std::fmt;

use snow::params::{DHChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::{Builder, HandshakeState};

use super::control::{Control, ControlError};
use super::freshness::UnixTime;
use super::hello::{Hello, HelloOwned};
use super::keys::SessionKeys;
use super::packet::COOKIE_LEN;
pub use super::transport::{MAX_TRANSPORT_LEN, Transport, TransportError};

/// The Noise protocol both sides run: pattern NK (the client knows the server's static key
/// beforehand) with the `hfs` modifier, which adds a Kyber1024 KEM to the X25519 exchange
/// for post-quantum forward secrecy; ChaCha20-Poly1305 and BLAKE2b.
pub const NOISE_PARAMS: &str = "Noise_NKhfs_25519+Kyber1024_ChaChaPoly_BLAKE2b";
/// Bytes of an X25519 private or public key.
pub const KEY_LEN: usize = 32;
/// Largest handshake message we send or accept. Each holds a 32-byte ephemeral key, a
/// 1568-byte Kyber1024 public key or ciphertext with its 16-byte tag, and a payload of at most
/// ~200 bytes with its tag: about 1.85 KiB.
pub const MAX_HANDSHAKE_LEN: usize = 4096;
/// Bytes of message 2's payload, whatever the server answers: `["COOKIE", 16 bytes]` is
/// `29:6:COOKIE,16:<cookie>,,`, and `["ERR", text]` is made as long by padding the text.
pub const REPLY_PAYLOAD_LEN: usize = 33;
/// Bytes of the ERR text in message 2: the reason, then spaces up to this length, so that
/// `29:3:ERR,19:<text>,,` is [`REPLY_PAYLOAD_LEN`] bytes. Every reason a server sends at the
/// handshake must fit; clients drop the trailing spaces.
pub const REPLY_REASON_LEN: usize = 19;

/// The client's ephemeral X25519 public key: the first [`KEY_LEN`] bytes of message 1, in
/// clear (Noise `e`). `None` when message 1 is shorter (it cannot then be valid). Fresh for
/// every handshake an honest client makes, so a key seen twice is a replay.
pub fn client_ephemeral(msg1: &[u8]) -> Option<[u8; KEY_LEN]> {
    msg1.get(..KEY_LEN)?.try_into().ok()
}

/// `reason` padded with spaces to [`REPLY_REASON_LEN`] bytes. A longer reason (none of ours
/// is: tests hold them) is cut at a character boundary rather than lengthen message 2.
fn padded_reason(reason: &str) -> String {
    let mut end = reason.len().min(REPLY_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut padded = String::with_capacity(REPLY_REASON_LEN);
    padded.push_str(&reason[..end]);
    // Bytes, not characters: `format!`'s width would count a multi-byte character once.
    padded.extend(std::iter::repeat_n(' ', REPLY_REASON_LEN - end));
    padded
}

/// Why a handshake step failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// `snow` could not set up (protocol name, crypto resolver or the OS random source).
    Setup,
    /// The message did not decrypt or authenticate: forged, corrupted, meant for another
    /// server key, or a failed Kyber decapsulation.
    Crypto,
    /// The message is longer than [`MAX_HANDSHAKE_LEN`].
    TooLong,
    /// The decrypted payload is not an acceptable hello, cookie or error.
    Payload(ControlError),
    /// Message 2's payload decoded, but as neither COOKIE nor ERR.
    UnexpectedReply,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Setup => f.write_str("Noise setup failed"),
            HandshakeError::Crypto => f.write_str("Noise handshake message failed to decrypt"),
            HandshakeError::TooLong => f.write_str("Noise handshake message too long"),
            HandshakeError::Payload(e) => write!(f, "handshake payload: {e}"),
            HandshakeError::UnexpectedReply => f.write_str("message 2 is neither COOKIE nor ERR"),
        }
    }
}

impl std::error::Error for HandshakeError {}

fn builder() -> Result<Builder<'static>, HandshakeError> {
    let params: NoiseParams = NOISE_PARAMS.parse().map_err(|_| HandshakeError::Setup)?;
    Builder::new(params)
        .prologue(&[])
        .map_err(|_| HandshakeError::Setup)
}

/// Makes a new X25519 static key pair `(private, public)` from the OS random source, for
/// `moose-relay keygen`.
pub fn generate_keypair() -> Result<([u8; KEY_LEN], [u8; KEY_LEN]), HandshakeError> {
    let pair = builder()?
        .generate_keypair()
        .map_err(|_| HandshakeError::Setup)?;
    let private = pair
        .private
        .as_slice()
        .try_into()
        .map_err(|_| HandshakeError::Setup)?;
    let public = pair
        .public
        .as_slice()
        .try_into()
        .map_err(|_| HandshakeError::Setup)?;
    Ok((private, public))
}

/// The X25519 public key of `private`, for `moose-relay pubkey`.
pub fn public_from_private(private: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], HandshakeError> {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .ok_or(HandshakeError::Setup)?;
    dh.set(private);
    dh.pubkey().try_into().map_err(|_| HandshakeError::Setup)
}

/// What the server answered in message 2.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerReply {
    /// Accepted: send this cookie over UDP every second until SID arrives.
    Cookie([u8; COOKIE_LEN]),
    /// Refused, with the server's reason ("room is full", "name is taken", ...).
    Err(String),
}

impl fmt::Debug for ServerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerReply::Cookie(_) => f.write_str("Cookie(..)"),
            ServerReply::Err(reason) => f.debug_tuple("Err").field(reason).finish(),
        }
    }
}

/// The client's side, between message 1 and message 2.
pub struct ClientHandshake {
    /// Boxed: snow's state is ~5 KB, and sessions are moved between cores and states.
    state: Box<HandshakeState>,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake").finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Starts a handshake with the server whose static key is `server_public`; returns the
    /// state and message 1 (to be sent in a netstring after the `VoRS v4` magic). `sent_at`
    /// is the client's wall-clock time now; `None` makes the untimed message 1 of clients
    /// from before SENT_AT, which servers refuse unless told otherwise (tests, comparisons).
    pub fn start(
        server_public: &[u8; KEY_LEN],
        hello: &Hello<'_>,
        sent_at: Option<UnixTime>,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut payload = Vec::new();
        hello
            .encode(sent_at, &mut payload)
            .map_err(HandshakeError::Payload)?;
        Self::start_with_payload(server_public, &payload)
    }

    /// Message 1 carrying any payload, so that a fuzz target can reach the server's hello
    /// decoder through a real decryption.
    #[cfg(fuzzing)]
    pub fn start_raw(
        server_public: &[u8; KEY_LEN],
        payload: &[u8],
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::start_with_payload(server_public, payload)
    }

    fn start_with_payload(
        server_public: &[u8; KEY_LEN],
        payload: &[u8],
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut state = builder()?
            .remote_public_key(server_public)
            .map_err(|_| HandshakeError::Setup)?
            .build_initiator()
            .map_err(|_| HandshakeError::Setup)?;
        let mut msg = vec![0u8; MAX_HANDSHAKE_LEN];
        let len = state
            .write_message(payload, &mut msg)
            .map_err(|_| HandshakeError::Setup)?;
        msg.truncate(len);
        Ok((
            ClientHandshake {
                state: Box::new(state),
            },
            msg,
        ))
    }

    /// Reads message 2: the server's reply, the transport for control messages, and this
    /// member's media keys. A refusal still completes the handshake (the ERR is encrypted).
    pub fn finish(
        mut self,
        msg2: &[u8],
    ) -> Result<(ServerReply, Transport, SessionKeys), HandshakeError> {
        if msg2.len() > MAX_HANDSHAKE_LEN {
            return Err(HandshakeError::TooLong);
        }
        let mut payload = vec![0u8; MAX_HANDSHAKE_LEN];
        let len = self
            .state
            .read_message(msg2, &mut payload)
            .map_err(|_| HandshakeError::Crypto)?;
        let reply = match Control::decode(&payload[..len]).map_err(HandshakeError::Payload)? {
            Control::Cookie(cookie) => ServerReply::Cookie(*cookie),
            // The padding (REPLY_REASON_LEN) is not part of the reason.
            Control::Err(reason) => ServerReply::Err(reason.trim_end_matches(' ').to_owned()),
            _ => return Err(HandshakeError::UnexpectedReply),
        };
        let (transport, keys) = complete(*self.state)?;
        Ok((reply, transport, keys))
    }
}

fn complete(state: HandshakeState) -> Result<(Transport, SessionKeys), HandshakeError> {
    let keys = SessionKeys::from_handshake_hash(state.get_handshake_hash());
    let state = state
        .into_transport_mode()
        .map_err(|_| HandshakeError::Setup)?;
    Ok((Transport::new(state), keys))
}

/// The server's side, between reading message 1 and writing message 2. `Send`: the relay
/// reads message 1 on the core that accepted the connection and answers from the room's.
pub struct ServerHandshake {
    /// Boxed: snow's state is ~5 KB, and sessions are moved between cores and states.
    state: Box<HandshakeState>,
}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake").finish_non_exhaustive()
    }
}

impl ServerHandshake {
    /// Reads message 1 with the server's static key; returns the state, the hello and its
    /// SENT_AT (`None` for an untimed hello), which the caller judges
    /// ([`super::freshness::Freshness`]).
    pub fn respond_to(
        static_private: &[u8; KEY_LEN],
        msg1: &[u8],
    ) -> Result<(Self, HelloOwned, Option<UnixTime>), HandshakeError> {
        if msg1.len() > MAX_HANDSHAKE_LEN {
            return Err(HandshakeError::TooLong);
        }
        let mut state = builder()?
            .local_private_key(static_private)
            .map_err(|_| HandshakeError::Setup)?
            .build_responder()
            .map_err(|_| HandshakeError::Setup)?;
        let mut payload = vec![0u8; MAX_HANDSHAKE_LEN];
        let len = state
            .read_message(msg1, &mut payload)
            .map_err(|_| HandshakeError::Crypto)?;
        let (hello, sent_at) = Hello::decode(&payload[..len]).map_err(HandshakeError::Payload)?;
        Ok((
            ServerHandshake {
                state: Box::new(state),
            },
            hello.to_owned(),
            sent_at,
        ))
    }

    /// Accepts: message 2 with `["COOKIE", cookie]`, the transport and the member's keys.
    pub fn accept(
        self,
        cookie: &[u8; COOKIE_LEN],
    ) -> Result<(Vec<u8>, Transport, SessionKeys), HandshakeError> {
        let (msg, state) = self.reply(&Control::Cookie(cookie))?;
        let (transport, keys) = complete(state)?;
        Ok((msg, transport, keys))
    }

    /// Refuses: message 2 with `["ERR", reason]`, the reason padded to [`REPLY_REASON_LEN`]
    /// bytes so that message 2 is exactly as long as an acceptance. The session ends after it
    /// is sent.
    pub fn reject(self, reason: &str) -> Result<Vec<u8>, HandshakeError> {
        Ok(self.reply(&Control::Err(&padded_reason(reason)))?.0)
    }

    /// Message 2 carrying any payload, so that a fuzz target can reach the client's reply
    /// decoder through a real decryption.
    #[cfg(fuzzing)]
    pub fn reply_raw(self, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        Ok(self.reply_with_payload(payload)?.0)
    }

    fn reply(self, reply: &Control<'_>) -> Result<(Vec<u8>, HandshakeState), HandshakeError> {
        let mut payload = Vec::new();
        reply
            .encode(&mut payload)
            .map_err(HandshakeError::Payload)?;
        self.reply_with_payload(&payload)
    }

    fn reply_with_payload(
        mut self,
        payload: &[u8],
    ) -> Result<(Vec<u8>, HandshakeState), HandshakeError> {
        let mut msg = vec![0u8; MAX_HANDSHAKE_LEN];
        let len = self
            .state
            .write_message(payload, &mut msg)
            .map_err(|_| HandshakeError::Setup)?;
        msg.truncate(len);
        Ok((msg, *self.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vors::control::ControlOwned;
    use crate::vors::netstring;
    use crate::vors::sid::Sid;

    fn unhex32(s: &str) -> [u8; 32] {
        core::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
    }

    const HELLO: Hello<'static> = Hello {
        username: "alice",
        room: "lobby",
        password_hash: None,
    };
    const SENT: Option<UnixTime> = Some(UnixTime(1_800_000_000));

    #[test]
    fn the_protocol_name_parses_with_kyber() {
        let params: NoiseParams = NOISE_PARAMS
            .parse()
            .expect("snow supports NKhfs + Kyber1024");
        assert_eq!(params.name, NOISE_PARAMS);
    }

    #[test]
    fn accepted_handshake_agrees_on_keys_and_carries_control_both_ways() {
        let (server_private, server_public) = generate_keypair().expect("keypair");
        let (client, msg1) = ClientHandshake::start(&server_public, &HELLO, SENT).expect("start");
        assert!(
            msg1.len() < MAX_HANDSHAKE_LEN,
            "message 1 is {} bytes",
            msg1.len()
        );
        let (server, hello, sent_at) =
            ServerHandshake::respond_to(&server_private, &msg1).expect("msg1");
        assert_eq!(hello.as_hello(), HELLO);
        assert_eq!(sent_at, SENT);
        let (msg2, mut server_tx, server_keys) = server.accept(&[7; COOKIE_LEN]).expect("accept");
        assert!(
            msg2.len() < MAX_HANDSHAKE_LEN,
            "message 2 is {} bytes",
            msg2.len()
        );
        let (reply, mut client_tx, client_keys) = client.finish(&msg2).expect("msg2");
        assert_eq!(reply, ServerReply::Cookie([7; COOKIE_LEN]));
        assert_eq!(client_keys, server_keys);

        let mut frame = Vec::new();
        server_tx
            .encrypt_control(&Control::Sid(Sid(4)), &mut frame)
            .expect("encrypt");
        let (ciphertext, used) = netstring::decode(&frame, MAX_TRANSPORT_LEN)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, frame.len());
        assert_eq!(
            client_tx.decrypt_control(ciphertext),
            Ok(ControlOwned::Sid(Sid(4)))
        );

        frame.clear();
        client_tx
            .encrypt_control(&Control::Ping, &mut frame)
            .expect("encrypt");
        let (ciphertext, _) = netstring::decode(&frame, MAX_TRANSPORT_LEN)
            .expect("valid")
            .expect("complete");
        assert_eq!(
            server_tx.decrypt_control(ciphertext),
            Ok(ControlOwned::Ping)
        );
    }

    #[test]
    fn every_handshake_gives_fresh_keys() {
        let (server_private, server_public) = generate_keypair().expect("keypair");
        let mut keys = Vec::new();
        for _ in 0..2 {
            let (_, msg1) = ClientHandshake::start(&server_public, &HELLO, SENT).expect("start");
            let (server, _, _) = ServerHandshake::respond_to(&server_private, &msg1).expect("msg1");
            keys.push(server.accept(&[0; COOKIE_LEN]).expect("accept").2);
        }
        assert_ne!(keys[0], keys[1]);
    }

    #[test]
    fn rejection_reaches_the_client() {
        let (server_private, server_public) = generate_keypair().expect("keypair");
        let (client, msg1) = ClientHandshake::start(&server_public, &HELLO, SENT).expect("start");
        let (server, _, _) = ServerHandshake::respond_to(&server_private, &msg1).expect("msg1");
        let msg2 = server.reject("room is full").expect("reject");
        let (reply, _, _) = client.finish(&msg2).expect("msg2");
        assert_eq!(reply, ServerReply::Err("room is full".to_owned()));
    }

    #[test]
    fn wrong_server_key_and_tampering_fail_as_crypto_errors() {
        let (server_private, server_public) = generate_keypair().expect("keypair");
        let (_, other_public) = generate_keypair().expect("keypair");
        let (_, msg1) = ClientHandshake::start(&other_public, &HELLO, SENT).expect("start");
        let err = ServerHandshake::respond_to(&server_private, &msg1).map(|_| ());
        assert_eq!(err, Err(HandshakeError::Crypto));

        let (client, msg1) = ClientHandshake::start(&server_public, &HELLO, SENT).expect("start");
        let (server, _, _) = ServerHandshake::respond_to(&server_private, &msg1).expect("msg1");
        let (mut msg2, _, _) = server.accept(&[1; COOKIE_LEN]).expect("accept");
        let last = msg2.len() - 1;
        msg2[last] ^= 1;
        assert_eq!(
            client.finish(&msg2).map(|_| ()),
            Err(HandshakeError::Crypto)
        );

        let garbage = vec![0u8; MAX_HANDSHAKE_LEN + 1];
        let err = ServerHandshake::respond_to(&server_private, &garbage).map(|_| ());
        assert_eq!(err, Err(HandshakeError::TooLong));
        assert_eq!(
            ServerHandshake::respond_to(&server_private, &[0; 10]).map(|_| ()),
            Err(HandshakeError::Crypto)
        );
    }

    #[test]
    fn message_2_has_one_length_whatever_it_says() {
        let (server_private, server_public) = generate_keypair().expect("keypair");
        let answer = |reason: Option<&str>| {
            let (client, msg1) =
                ClientHandshake::start(&server_public, &HELLO, SENT).expect("start");
            let (server, _, _) = ServerHandshake::respond_to(&server_private, &msg1).expect("msg1");
            let msg2 = match reason {
                None => server.accept(&[9; COOKIE_LEN]).expect("accept").0,
                Some(reason) => server.reject(reason).expect("reject"),
            };
            let (reply, _, _) = client.finish(&msg2).expect("msg2");
            (msg2.len(), reply)
        };
        let (cookie_len, reply) = answer(None);
        assert_eq!(reply, ServerReply::Cookie([9; COOKIE_LEN]));
        let reasons = [
            "room is full",
            "name is taken",
            "wrong password",
            "server full",
            "x",
        ];
        for reason in reasons {
            let (len, reply) = answer(Some(reason));
            assert_eq!(len, cookie_len, "{reason:?}");
            // The client reads the reason without its padding.
            assert_eq!(reply, ServerReply::Err(reason.to_owned()));
        }
        // A reason over the padded length is cut, never lets message 2 grow.
        let (len, reply) = answer(Some("a reason much longer than nineteen bytes"));
        assert_eq!(len, cookie_len);
        assert_eq!(reply, ServerReply::Err("a reason much longe".to_owned()));
        let (len, reply) = answer(Some("ééééééééééé"));
        assert_eq!(len, cookie_len);
        assert_eq!(reply, ServerReply::Err("ééééééééé".to_owned()));
    }

    #[test]
    fn the_payloads_of_message_2_are_the_documented_length() {
        let mut cookie = Vec::new();
        Control::Cookie(&[0; COOKIE_LEN])
            .encode(&mut cookie)
            .expect("cookie");
        assert_eq!(cookie.len(), REPLY_PAYLOAD_LEN);
        let mut err = Vec::new();
        Control::Err(&padded_reason("room is full"))
            .encode(&mut err)
            .expect("err");
        assert_eq!(err, b"29:3:ERR,19:room is full       ,,");
        assert_eq!(err.len(), REPLY_PAYLOAD_LEN);
    }

    #[test]
    fn the_client_ephemeral_opens_message_1_and_is_new_each_time() {
        let (server_private, server_public) = generate_keypair().expect("keypair");
        let (_, first) = ClientHandshake::start(&server_public, &HELLO, SENT).expect("start");
        let (_, second) = ClientHandshake::start(&server_public, &HELLO, SENT).expect("start");
        let e1 = client_ephemeral(&first).expect("e");
        assert_eq!(&e1[..], &first[..KEY_LEN]);
        assert_ne!(Some(e1), client_ephemeral(&second));
        assert_eq!(client_ephemeral(&first[..KEY_LEN - 1]), None);
        // It is the key the Noise handshake uses: change it and message 1 no longer opens.
        let mut forged = first.clone();
        forged[0] ^= 1;
        let err = ServerHandshake::respond_to(&server_private, &forged).map(|_| ());
        assert_eq!(err, Err(HandshakeError::Crypto));
    }

    #[test]
    fn an_untimed_message_1_reads_as_untimed() {
        let (server_private, server_public) = generate_keypair().expect("keypair");
        let (_, msg1) = ClientHandshake::start(&server_public, &HELLO, None).expect("start");
        let (_, hello, sent_at) =
            ServerHandshake::respond_to(&server_private, &msg1).expect("msg1");
        assert_eq!((hello.as_hello(), sent_at), (HELLO, None));
    }

    #[test]
    fn public_key_matches_rfc7748() {
        // RFC 7748 §6.1, Alice.
        let private = unhex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = unhex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(public_from_private(&private), Ok(public));
        let (private, public) = generate_keypair().expect("keypair");
        assert_eq!(public_from_private(&private), Ok(public));
    }

    #[test]
    fn handshake_states_can_move_between_cores() {
        fn assert_send<T: Send>() {}
        assert_send::<ServerHandshake>();
        assert_send::<ClientHandshake>();
        assert_send::<Transport>();
    }
}

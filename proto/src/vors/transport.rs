//! Noise transport messages: the control channel after the handshake.

use std::fmt;

use snow::TransportState;

use super::control::{Control, ControlError, ControlOwned};
use super::netstring;

/// Largest transport message (a control message and the 16-byte AEAD tag), which is also the
/// netstring limit for control frames after the handshake.
pub const MAX_TRANSPORT_LEN: usize = 2048;
/// The AEAD tag Noise adds to every encrypted payload.
const AEAD_TAG_LEN: usize = 16;

/// Why a transport (post-handshake) message failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The message to send is not encodable (a field over its limit).
    Encode(ControlError),
    /// The ciphertext did not authenticate (or is out of order: Noise nonces are implicit).
    Decrypt,
    /// The ciphertext is longer than [`MAX_TRANSPORT_LEN`].
    TooLong,
    /// The plaintext is not a control message.
    Malformed(ControlError),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Encode(e) => write!(f, "cannot encode control message: {e}"),
            TransportError::Decrypt => f.write_str("control message failed to decrypt"),
            TransportError::TooLong => f.write_str("control message too long"),
            TransportError::Malformed(e) => write!(f, "control message: {e}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Noise transport for control messages after the handshake. Each message is one Noise
/// transport message inside one netstring; nonces are implicit, so messages must be
/// decrypted in the order they were sent (TCP guarantees it).
pub struct Transport {
    state: TransportState,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    /// No buffer of its own: a relay holds one transport per member for as long as the
    /// member stays, and control messages are rare. Encryption writes into the outgoing
    /// frame, decryption into the stack.
    pub(super) fn new(state: TransportState) -> Self {
        Transport { state }
    }

    /// Encrypts `msg` and appends the whole TCP frame, `NS(ciphertext)`, to `out`.
    pub fn encrypt_control(
        &mut self,
        msg: &Control<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        let mut plaintext = Vec::new();
        msg.encode(&mut plaintext).map_err(TransportError::Encode)?;
        self.encrypt_frame(&plaintext, out)
    }

    /// Encrypts any plaintext as one TCP frame, so that a fuzz target can reach the peer's
    /// control decoder through a real transport.
    #[cfg(fuzzing)]
    pub fn encrypt_raw(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        self.encrypt_frame(plaintext, out)
    }

    fn encrypt_frame(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TransportError> {
        if plaintext.len() + AEAD_TAG_LEN > MAX_TRANSPORT_LEN {
            return Err(TransportError::TooLong);
        }
        let len = plaintext.len() + AEAD_TAG_LEN;
        let start = out.len();
        let written = netstring::encode_in_place(len, out, |frame| {
            self.state.write_message(plaintext, frame)
        });
        match written {
            Ok(n) if n == len => Ok(()),
            _ => {
                out.truncate(start);
                Err(TransportError::TooLong)
            }
        }
    }

    /// Decrypts one frame's payload (the ciphertext inside the netstring) into a message.
    pub fn decrypt_control(&mut self, ciphertext: &[u8]) -> Result<ControlOwned, TransportError> {
        if ciphertext.len() > MAX_TRANSPORT_LEN {
            return Err(TransportError::TooLong);
        }
        // Both directions are capped at MAX_TRANSPORT_LEN, so that is all the plaintext needs.
        let mut plaintext = [0u8; MAX_TRANSPORT_LEN];
        let len = self
            .state
            .read_message(ciphertext, &mut plaintext)
            .map_err(|_| TransportError::Decrypt)?;
        let msg = Control::decode(&plaintext[..len]).map_err(TransportError::Malformed)?;
        Ok(msg.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vors::handshake::{ClientHandshake, ServerHandshake, generate_keypair};
    use crate::vors::hello::Hello;
    use crate::vors::packet::COOKIE_LEN;
    use crate::vors::sid::Sid;

    const HELLO: Hello<'static> = Hello {
        username: "alice",
        room: "lobby",
        password_hash: None,
    };

    fn pair() -> (Transport, Transport) {
        let (server_private, server_public) = generate_keypair().expect("keypair");
        let (client, msg1) = ClientHandshake::start(&server_public, &HELLO, None).expect("start");
        let (server, _, _) = ServerHandshake::respond_to(&server_private, &msg1).expect("msg1");
        let (msg2, server_tx, _) = server.accept(&[1; COOKIE_LEN]).expect("accept");
        let (_, client_tx, _) = client.finish(&msg2).expect("msg2");
        (client_tx, server_tx)
    }

    fn ciphertext(frame: &[u8]) -> &[u8] {
        let (ct, used) = netstring::decode(frame, MAX_TRANSPORT_LEN)
            .expect("valid")
            .expect("whole");
        assert_eq!(used, frame.len());
        ct
    }

    #[test]
    fn messages_flow_both_ways() {
        let (mut client_tx, mut server_tx) = pair();
        let mut frame = Vec::new();
        server_tx
            .encrypt_control(&Control::Sid(Sid(4)), &mut frame)
            .expect("encrypt");
        assert_eq!(
            client_tx.decrypt_control(ciphertext(&frame)),
            Ok(ControlOwned::Sid(Sid(4)))
        );
        frame.clear();
        let chat = Control::Chat {
            sid: None,
            msg: &"x".repeat(1024),
        };
        client_tx
            .encrypt_control(&chat, &mut frame)
            .expect("the longest chat fits");
        assert_eq!(
            server_tx.decrypt_control(ciphertext(&frame)),
            Ok(chat.to_owned())
        );
    }

    #[test]
    fn transport_refuses_replayed_and_forged_frames() {
        let (mut client_tx, mut server_tx) = pair();
        let mut frame = Vec::new();
        client_tx
            .encrypt_control(&Control::Ping, &mut frame)
            .expect("encrypt");
        let (ciphertext, _) = netstring::decode(&frame, MAX_TRANSPORT_LEN)
            .expect("valid")
            .expect("complete");
        let mut forged = ciphertext.to_vec();
        forged[0] ^= 1;
        assert_eq!(
            server_tx.decrypt_control(&forged),
            Err(TransportError::Decrypt)
        );
        assert_eq!(
            server_tx.decrypt_control(ciphertext),
            Ok(ControlOwned::Ping)
        );
        assert_eq!(
            server_tx.decrypt_control(ciphertext),
            Err(TransportError::Decrypt)
        );
    }
}

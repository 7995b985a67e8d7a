//! Message boundaries of one connection's data stream (§5.4).
//!
//! The relay forwards whole messages, so it must know where each starts and ends when a
//! client fragments. [`Fragments`] only tracks that and the running size; the payload bytes
//! stay in the relay's own buffer, so reassembly costs no copy here.

use super::error::FrameError;
use super::frame::{FrameHeader, Opcode};

/// Where a data frame sits in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagePart {
    /// An unfragmented message (FIN set, not a continuation). Control frames are reported as
    /// `Whole` too: they are complete messages and do not touch the data stream's state.
    Whole(Opcode),
    /// The first frame of a fragmented message (FIN clear): `Text` or `Binary`.
    First(Opcode),
    /// A continuation that does not end the message.
    Middle,
    /// The continuation that ends the message; carries the message's opcode.
    Last(Opcode),
}

/// Fragmentation state of one connection's incoming data frames.
#[derive(Debug, Clone)]
pub struct Fragments {
    max_message: usize,
    /// Opcode of the message being received, while one is open.
    open: Option<Opcode>,
    /// Payload bytes of the open message so far.
    len: usize,
}

impl Fragments {
    /// A connection whose messages may hold at most `max_message` payload bytes in total.
    pub fn new(max_message: usize) -> Self {
        Fragments {
            max_message,
            open: None,
            len: 0,
        }
    }

    /// Classifies the next frame header of the connection, in arrival order.
    ///
    /// Errors: `UnexpectedContinuation` outside a message, `ExpectedContinuation` for a new
    /// text/binary frame inside one, `TooLarge` as soon as the message's total goes over
    /// `max_message` (on the header, before its payload is read). After an error the
    /// connection is to be closed; the state is then unspecified.
    pub fn on_data_frame(&mut self, h: &FrameHeader) -> Result<MessagePart, FrameError> {
        if h.opcode.is_control() {
            return Ok(MessagePart::Whole(h.opcode));
        }
        match (h.opcode, self.open) {
            (Opcode::Continuation, None) => Err(FrameError::UnexpectedContinuation),
            (Opcode::Continuation, Some(op)) => {
                self.len = self
                    .len
                    .checked_add(h.payload_len)
                    .filter(|&n| n <= self.max_message)
                    .ok_or(FrameError::TooLarge)?;
                if h.fin {
                    self.open = None;
                    self.len = 0;
                    Ok(MessagePart::Last(op))
                } else {
                    Ok(MessagePart::Middle)
                }
            }
            (_, Some(_)) => Err(FrameError::ExpectedContinuation),
            (op, None) => {
                if h.payload_len > self.max_message {
                    return Err(FrameError::TooLarge);
                }
                if h.fin {
                    Ok(MessagePart::Whole(op))
                } else {
                    self.open = Some(op);
                    self.len = h.payload_len;
                    Ok(MessagePart::First(op))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: Opcode, payload_len: usize) -> FrameHeader {
        FrameHeader {
            fin,
            opcode,
            mask: Some([0; 4]),
            payload_len,
            header_len: 6,
        }
    }

    #[test]
    fn whole_and_fragmented_with_interleaved_control() {
        let mut f = Fragments::new(100);
        assert_eq!(
            f.on_data_frame(&frame(true, Opcode::Binary, 100)),
            Ok(MessagePart::Whole(Opcode::Binary))
        );
        assert_eq!((f.open, f.len), (None, 0));
        assert_eq!(
            f.on_data_frame(&frame(false, Opcode::Text, 10)),
            Ok(MessagePart::First(Opcode::Text))
        );
        assert_eq!(
            f.on_data_frame(&frame(true, Opcode::Ping, 5)),
            Ok(MessagePart::Whole(Opcode::Ping))
        );
        assert_eq!(
            f.on_data_frame(&frame(false, Opcode::Continuation, 0)),
            Ok(MessagePart::Middle)
        );
        assert_eq!(
            f.on_data_frame(&frame(false, Opcode::Continuation, 20)),
            Ok(MessagePart::Middle)
        );
        assert_eq!((f.open, f.len), (Some(Opcode::Text), 30));
        assert_eq!(
            f.on_data_frame(&frame(true, Opcode::Continuation, 70)),
            Ok(MessagePart::Last(Opcode::Text))
        );
        assert_eq!((f.open, f.len), (None, 0));
        // The limit applies per message, so a new one may use all of it again.
        assert_eq!(
            f.on_data_frame(&frame(false, Opcode::Binary, 60)),
            Ok(MessagePart::First(Opcode::Binary))
        );
        assert_eq!(
            f.on_data_frame(&frame(true, Opcode::Continuation, 40)),
            Ok(MessagePart::Last(Opcode::Binary))
        );
    }

    /// Data frames as (fin, opcode, payload length).
    type Frames = &'static [(bool, Opcode, usize)];

    /// The outcome of the last of `frames` (fin, opcode, payload length) fed to a fresh
    /// tracker with message limit `limit`; every frame before it must be accepted.
    fn last_of(limit: usize, frames: &[(bool, Opcode, usize)]) -> Result<MessagePart, FrameError> {
        let mut f = Fragments::new(limit);
        let ((fin, opcode, len), before) = frames.split_last().expect("at least one frame");
        for &(fin, opcode, len) in before {
            assert!(
                f.on_data_frame(&frame(fin, opcode, len)).is_ok(),
                "{frames:?}"
            );
        }
        f.on_data_frame(&frame(*fin, *opcode, *len))
    }

    #[test]
    fn sequence_errors() {
        use Opcode::{Binary, Continuation, Text};
        let cases: [(Frames, FrameError); 4] = [
            (
                &[(true, Continuation, 1)],
                FrameError::UnexpectedContinuation,
            ),
            (
                &[(false, Continuation, 1)],
                FrameError::UnexpectedContinuation,
            ),
            (
                &[(false, Binary, 1), (true, Binary, 1)],
                FrameError::ExpectedContinuation,
            ),
            (
                &[(false, Text, 1), (false, Text, 1)],
                FrameError::ExpectedContinuation,
            ),
        ];
        for (frames, error) in cases {
            assert_eq!(last_of(100, frames), Err(error), "{frames:?}");
        }
    }

    #[test]
    fn too_large_on_the_frame_that_crosses_the_limit() {
        use Opcode::{Binary, Continuation};
        let cases: [(usize, Frames); 4] = [
            (100, &[(true, Binary, 101)]),
            (100, &[(false, Binary, 101)]),
            (
                100,
                &[
                    (false, Binary, 60),
                    (false, Continuation, 40),
                    (true, Continuation, 1),
                ],
            ),
            // The running length would overflow.
            (
                usize::MAX,
                &[(false, Binary, usize::MAX), (true, Continuation, 1)],
            ),
        ];
        for (limit, frames) in cases {
            assert_eq!(
                last_of(limit, frames),
                Err(FrameError::TooLarge),
                "{frames:?}"
            );
        }
    }
}

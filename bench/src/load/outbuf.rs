//! Bytes waiting for a non-blocking TCP socket to take them.

use std::io::{self, Write};

/// What could not be written yet, in order. Empty on the fast path, where a send goes
/// straight from the stream's prebuilt frame to the socket.
#[derive(Debug, Default)]
pub(crate) struct OutBuf {
    bytes: Vec<u8>,
    at: usize,
}

impl OutBuf {
    /// Bytes still waiting.
    pub(crate) fn pending(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Keeps `data` for later, writing nothing now (the socket is still connecting).
    pub(crate) fn queue(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    /// Writes `data` after what is waiting: straight to the socket when nothing is, keeping
    /// whatever the socket does not take.
    pub(crate) fn write(&mut self, sock: &mut impl Write, data: &[u8]) -> io::Result<()> {
        if self.pending() > 0 {
            self.bytes.extend_from_slice(data);
            return self.flush(sock);
        }
        let mut done = 0;
        while done < data.len() {
            match sock.write(&data[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.bytes.clear();
        self.at = 0;
        self.bytes.extend_from_slice(&data[done..]);
        Ok(())
    }

    /// Writes what is waiting until done or the socket is full.
    pub(crate) fn flush(&mut self, sock: &mut impl Write) -> io::Result<()> {
        while self.at < self.bytes.len() {
            match sock.write(&self.bytes[self.at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.at == self.bytes.len() {
            self.bytes.clear();
            self.at = 0;
        } else if self.at >= 64 * 1024 {
            self.bytes.drain(..self.at);
            self.at = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `room` bytes, then says it would block.
    struct Tight {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Tight {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_what_the_socket_refuses_and_writes_it_in_order() {
        let mut sock = Tight {
            taken: Vec::new(),
            room: 3,
        };
        let mut out = OutBuf::default();
        out.write(&mut sock, b"hello").expect("write");
        assert_eq!(out.pending(), 2);
        out.write(&mut sock, b" world").expect("write");
        assert_eq!(out.pending(), 8);
        sock.room = 100;
        out.flush(&mut sock).expect("flush");
        assert_eq!(out.pending(), 0);
        assert_eq!(sock.taken, b"hello world");
    }
}

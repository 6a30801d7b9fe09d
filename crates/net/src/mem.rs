//! The in-memory transport, for tests: two endpoints joined by std channels.

use crate::{NetError, NetStats, Transport};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// One endpoint of an in-memory link made by [`mem_pair`]. Messages are moved, not copied;
/// counters are kept exactly as for [`crate::TcpTransport`] (payload bytes; no frame headers
/// are actually written, but [`NetStats::wire_bytes_sent`] reports what TCP would carry).
#[derive(Debug)]
pub struct MemTransport {
    party: u8,
    timeout: Duration,
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    stats: NetStats,
    broken: Option<String>,
}

/// A connected pair of in-memory endpoints: `.0` is party 0, `.1` is party 1. Every `recv`
/// waits at most `timeout`. Dropping one endpoint makes the other's `recv` return
/// [`NetError::PeerClosed`] (after it has received what was already sent).
///
/// ```
/// use suf_net::{mem_pair, Transport};
/// let (mut p0, mut p1) = mem_pair(std::time::Duration::from_secs(5));
/// let h = std::thread::spawn(move || p1.exchange(vec![2]).unwrap());
/// assert_eq!(p0.exchange(vec![1]).unwrap(), vec![2]);
/// assert_eq!(h.join().unwrap(), vec![1]);
/// assert_eq!(p0.stats().rounds, 1);
/// ```
pub fn mem_pair(timeout: Duration) -> (MemTransport, MemTransport) {
    let (tx0, rx1) = channel();
    let (tx1, rx0) = channel();
    let mk = |party, tx, rx| MemTransport {
        party,
        timeout,
        tx,
        rx,
        stats: NetStats::default(),
        broken: None,
    };
    (mk(0, tx0, rx0), mk(1, tx1, rx1))
}

impl MemTransport {
    fn fail(&mut self, e: NetError) -> NetError {
        self.broken = Some(e.to_string());
        e
    }

    fn check(&self) -> Result<(), NetError> {
        match &self.broken {
            Some(cause) => Err(NetError::Broken {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Transport for MemTransport {
    fn send(&mut self, msg: Vec<u8>) -> Result<(), NetError> {
        self.check()?;
        let len = msg.len() as u64;
        if self.tx.send(msg).is_err() {
            return Err(self.fail(NetError::PeerClosed {
                detail: "the in-memory peer endpoint was dropped (while sending)".into(),
            }));
        }
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += len;
        Ok(())
    }

    fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        self.check()?;
        match self.rx.recv_timeout(self.timeout) {
            Ok(m) => {
                self.stats.messages_received += 1;
                self.stats.bytes_received += m.len() as u64;
                Ok(m)
            }
            Err(RecvTimeoutError::Timeout) => {
                let e = NetError::Timeout {
                    what: format!("a message from party {}", 1 - self.party),
                    after: self.timeout,
                };
                Err(self.fail(e))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.fail(NetError::PeerClosed {
                detail: "the in-memory peer endpoint was dropped (while receiving)".into(),
            })),
        }
    }

    fn recv_max(&mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        let m = self.recv()?;
        if m.len() > limit {
            let len = m.len() as u64;
            return Err(self.fail(NetError::FrameTooLarge { len, max: limit }));
        }
        Ok(m)
    }

    fn note_round(&mut self) {
        self.stats.rounds += 1;
    }

    fn stats(&self) -> &NetStats {
        &self.stats
    }

    fn reset_stats(&mut self) {
        self.stats = NetStats::default();
    }

    fn party(&self) -> u8 {
        self.party
    }
}

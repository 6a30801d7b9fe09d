//! A transport wrapper that keeps a copy of every message, for tests and audits of exactly
//! what a party sends and sees (the leakage tests read the opened values from it).

use crate::{NetError, NetStats, Transport};
use std::sync::{Arc, Mutex};

/// Every message one endpoint sent and received, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageLog {
    /// Messages handed to the link.
    pub sent: Vec<Vec<u8>>,
    /// Messages received from the link.
    pub received: Vec<Vec<u8>>,
}

/// A [`Transport`] that forwards to `inner` and records every message in a shared
/// [`MessageLog`].
#[derive(Debug)]
pub struct Recording<T> {
    inner: T,
    log: Arc<Mutex<MessageLog>>,
}

impl<T: Transport> Recording<T> {
    /// Wrap `inner`; the returned log fills as the link is used.
    pub fn new(inner: T) -> (Self, Arc<Mutex<MessageLog>>) {
        let log = Arc::new(Mutex::new(MessageLog::default()));
        (
            Recording {
                inner,
                log: log.clone(),
            },
            log,
        )
    }

    fn note(&self, sent: bool, m: &[u8]) {
        let mut l = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if sent {
            l.sent.push(m.to_vec());
        } else {
            l.received.push(m.to_vec());
        }
    }
}

impl<T: Transport> Transport for Recording<T> {
    fn send(&mut self, msg: Vec<u8>) -> Result<(), NetError> {
        self.note(true, &msg);
        self.inner.send(msg)
    }
    fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        let m = self.inner.recv()?;
        self.note(false, &m);
        Ok(m)
    }
    fn recv_max(&mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        let m = self.inner.recv_max(limit)?;
        self.note(false, &m);
        Ok(m)
    }
    fn note_round(&mut self) {
        self.inner.note_round()
    }
    fn stats(&self) -> &NetStats {
        self.inner.stats()
    }
    fn reset_stats(&mut self) {
        self.inner.reset_stats()
    }
    fn party(&self) -> u8 {
        self.inner.party()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_pair;
    use std::time::Duration;

    #[test]
    fn records_both_directions() {
        let (a, mut b) = mem_pair(Duration::from_secs(1));
        let (mut a, log) = Recording::new(a);
        b.send(vec![9, 9]).unwrap();
        a.send(vec![1]).unwrap();
        assert_eq!(a.recv_max(2).unwrap(), vec![9, 9]);
        assert_eq!(b.recv().unwrap(), vec![1]);
        let l = log.lock().unwrap().clone();
        assert_eq!(l.sent, vec![vec![1]]);
        assert_eq!(l.received, vec![vec![9, 9]]);
        assert_eq!(a.stats().messages_sent, 1);
    }
}

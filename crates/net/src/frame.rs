//! Framing on a byte stream: every message is an 8-byte little-endian length followed by that
//! many payload bytes. A receiver refuses a length above its `max_frame` before allocating
//! anything for it.
//!
//! The reading side tolerates socket read timeouts: an expired timeout only makes it check
//! whether its link is being shut down, and resumes where it was, mid-frame included.

use crate::NetError;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Length of the frame header.
pub const HEADER_LEN: usize = 8;

/// Write one frame (header and payload) to `w`. Does not flush.
///
/// # Errors
/// The writer's I/O errors.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&(payload.len() as u64).to_le_bytes())?;
    w.write_all(payload)
}

/// Reads frames from a byte stream whose reads may time out.
#[derive(Debug)]
pub struct FrameReader<R> {
    src: R,
    max_frame: usize,
    timeout: Duration,
}

/// Why [`FrameReader::read_frame`] stopped without a frame.
#[derive(Debug)]
pub enum ReadStop {
    /// The local side asked the reader to stop.
    Stopped,
    /// The link failed.
    Failed(NetError),
}

impl<R: Read> FrameReader<R> {
    /// A reader of frames of at most `max_frame` payload bytes. `timeout` is only used to
    /// report errors.
    pub fn new(src: R, max_frame: usize, timeout: Duration) -> Self {
        FrameReader {
            src,
            max_frame,
            timeout,
        }
    }

    /// Read the next frame's payload. Between reads that time out, checks `stop` and returns
    /// [`ReadStop::Stopped`] once it is set.
    ///
    /// # Errors
    /// [`ReadStop::Failed`] with [`NetError::PeerClosed`] on end of stream (mid-frame or not),
    /// [`NetError::FrameTooLarge`], or the mapped I/O error.
    pub fn read_frame(&mut self, stop: &AtomicBool) -> Result<Vec<u8>, ReadStop> {
        let len = self.read_header(stop)?;
        self.read_payload(len, stop)
    }

    /// Read the next frame's header and return the announced payload length, refusing one
    /// above `max_frame` (nothing is allocated for it). The payload must then be read with
    /// [`FrameReader::read_payload`].
    ///
    /// # Errors
    /// As [`FrameReader::read_frame`].
    pub fn read_header(&mut self, stop: &AtomicBool) -> Result<usize, ReadStop> {
        let mut hdr = [0u8; HEADER_LEN];
        self.fill(&mut hdr, stop, true)?;
        let len = u64::from_le_bytes(hdr);
        match usize::try_from(len) {
            Ok(n) if n <= self.max_frame => Ok(n),
            _ => Err(ReadStop::Failed(NetError::FrameTooLarge {
                len,
                max: self.max_frame,
            })),
        }
    }

    /// Read a payload of `len` bytes (announced by [`FrameReader::read_header`]).
    ///
    /// # Errors
    /// As [`FrameReader::read_frame`].
    pub fn read_payload(&mut self, len: usize, stop: &AtomicBool) -> Result<Vec<u8>, ReadStop> {
        // Read into spare capacity (no zero-filling pass over large payloads).
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let want = (len - buf.len()) as u64;
            let before = buf.len();
            match (&mut self.src).take(want).read_to_end(&mut buf) {
                Ok(_) if buf.len() == before => {
                    let detail =
                        format!("end of stream mid-frame, {before} of {len} payload bytes read");
                    return Err(ReadStop::Failed(NetError::PeerClosed { detail }));
                }
                Ok(_) => {}
                Err(e) => self.on_error(e, stop, before, len, false)?,
            }
        }
        Ok(buf)
    }

    /// Decide what a read error means: retry (an expired poll timeout or an interruption),
    /// stop (the local side is shutting down), or fail.
    fn on_error(
        &self,
        e: std::io::Error,
        stop: &AtomicBool,
        off: usize,
        len: usize,
        header: bool,
    ) -> Result<(), ReadStop> {
        if e.kind() == ErrorKind::Interrupted {
            return Ok(());
        }
        if stop.load(Ordering::Acquire) {
            return Err(ReadStop::Stopped);
        }
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            return Ok(());
        }
        let what = format!("reading a frame ({})", place(header, off, len));
        Err(ReadStop::Failed(NetError::from_io(e, &what, self.timeout)))
    }

    fn fill(&mut self, buf: &mut [u8], stop: &AtomicBool, header: bool) -> Result<(), ReadStop> {
        let mut off = 0;
        while off < buf.len() {
            match self.src.read(&mut buf[off..]) {
                Ok(0) => {
                    let detail = format!("end of stream {}", place(header, off, buf.len()));
                    return Err(ReadStop::Failed(NetError::PeerClosed { detail }));
                }
                Ok(n) => off += n,
                Err(e) => self.on_error(e, stop, off, buf.len(), header)?,
            }
        }
        Ok(())
    }
}

/// Where in the stream a reader stopped, for error messages.
fn place(header: bool, off: usize, len: usize) -> String {
    if header && off == 0 {
        "between messages".to_string()
    } else {
        format!(
            "mid-frame, {} of {} {} bytes read",
            off,
            len,
            if header { "header" } else { "payload" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_and_limits() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").unwrap();
        write_frame(&mut wire, b"").unwrap();
        write_frame(&mut wire, &[7u8; 100]).unwrap();
        let stop = AtomicBool::new(false);
        let mut r = FrameReader::new(&wire[..], 100, Duration::from_secs(1));
        assert_eq!(r.read_frame(&stop).unwrap(), b"hello");
        assert_eq!(r.read_frame(&stop).unwrap(), b"");
        assert_eq!(r.read_frame(&stop).unwrap(), vec![7u8; 100]);
        assert!(matches!(
            r.read_frame(&stop),
            Err(ReadStop::Failed(NetError::PeerClosed { .. }))
        ));
        let mut r = FrameReader::new(&wire[..], 99, Duration::from_secs(1));
        r.read_frame(&stop).unwrap();
        r.read_frame(&stop).unwrap();
        assert!(matches!(
            r.read_frame(&stop),
            Err(ReadStop::Failed(NetError::FrameTooLarge {
                len: 100,
                max: 99
            }))
        ));
        // A huge announced length is refused without allocating it.
        let huge = u64::MAX.to_le_bytes();
        let mut r = FrameReader::new(&huge[..], 1 << 20, Duration::from_secs(1));
        assert!(matches!(
            r.read_frame(&stop),
            Err(ReadStop::Failed(NetError::FrameTooLarge { .. }))
        ));
        // Truncated payload.
        let mut r = FrameReader::new(&wire[..10], 100, Duration::from_secs(1));
        assert!(matches!(
            r.read_frame(&stop),
            Err(ReadStop::Failed(NetError::PeerClosed { .. }))
        ));
    }
}

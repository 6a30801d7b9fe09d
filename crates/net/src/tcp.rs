//! The TCP transport: `TCP_NODELAY`, one reader and one writer thread per link, length-framed
//! messages, a checked handshake, optional (and off-loopback mandatory) mutually authenticated
//! TLS, and a timeout on every wait.
//!
//! Threads: the writer thread owns the writing half of the socket and drains a channel of
//! outgoing messages, coalescing what is queued into as few writes as possible (a message of
//! at most 64 KiB with nothing queued before it is written by the caller's thread instead,
//! under the same lock, which saves a thread hand-off per round); the reader
//! thread reads frames into a channel that [`Transport::recv`] waits on with the link's
//! timeout. Since both directions move at once, two parties that send large messages to each
//! other at the same time never deadlock. The socket also carries read and write timeouts,
//! so neither thread can block forever on a silent peer, and dropping the transport shuts the
//! socket down and joins both threads.

use crate::frame::{write_frame, FrameReader, ReadStop};
use crate::handshake::{Hello, HELLO_LEN, PREFIX_LEN, PROTOCOL_VERSION};
use crate::tls::{self, SharedConn, TlsConfig, TlsReader, TlsWriter};
use crate::{NetError, NetStats, Transport};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Whether a link with `addr` must be encrypted: true unless the address is on loopback
/// (127.0.0.0/8, `::1`, or an IPv4-mapped loopback address).
pub fn tls_required(addr: &SocketAddr) -> bool {
    !addr.ip().to_canonical().is_loopback()
}

/// Everything one endpoint needs to set up a link.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Our party id, 0 or 1. The peer must be the other one.
    pub party: u8,
    /// Session id; both parties must use the same one.
    pub session_id: [u8; 16],
    /// Fingerprint of the model (both parties must hold the same model).
    pub model_fp: [u8; 32],
    /// Fingerprint of the key stream: the session keys fingerprint the dealer wrote into both
    /// parties' key files, so that both derive from the same dealer run.
    pub keys_fp: [u8; 32],
    /// Bound on every wait once connected: the handshake, each `recv`, each socket read and
    /// write. Must be non-zero.
    pub timeout: Duration,
    /// Bound on waiting for the connection itself: `connect` retries a refused connection
    /// until then (the peer may not be listening yet), `accept` waits that long for a peer.
    pub connect_timeout: Duration,
    /// Largest frame payload accepted from the peer, in bytes; a larger announced frame is
    /// refused before anything is allocated for it.
    pub max_frame: usize,
    /// TLS settings; `None` for plaintext.
    pub tls: Option<TlsConfig>,
    /// Allow plaintext with a peer that is not on loopback. Off by default: without TLS,
    /// only loopback links are made.
    pub allow_plaintext: bool,
}

impl LinkConfig {
    /// Default largest frame: 1 GiB. Protocol steps that know their message's size bound it
    /// further with [`Transport::recv_max`].
    pub const DEFAULT_MAX_FRAME: usize = 1 << 30;

    /// Largest `timeout` and `connect_timeout` accepted: one week (so that every deadline
    /// computed from them is representable).
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

    /// A configuration for `party` with zero ids and fingerprints, a 30 s timeout (for waits
    /// and for connecting), [`LinkConfig::DEFAULT_MAX_FRAME`], no TLS and plaintext allowed on
    /// loopback only.
    pub fn new(party: u8) -> Self {
        LinkConfig {
            party,
            session_id: [0; 16],
            model_fp: [0; 32],
            keys_fp: [0; 32],
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            max_frame: Self::DEFAULT_MAX_FRAME,
            tls: None,
            allow_plaintext: false,
        }
    }

    /// The hello this configuration sends.
    pub fn hello(&self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            party: self.party,
            session_id: self.session_id,
            model_fp: self.model_fp,
            keys_fp: self.keys_fp,
        }
    }

    fn validate(&self) -> Result<(), NetError> {
        if self.party > 1 {
            return Err(NetError::Config(format!(
                "party id {} (must be 0 or 1)",
                self.party
            )));
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(NetError::Config("timeouts must be non-zero".into()));
        }
        if self.timeout > Self::MAX_TIMEOUT || self.connect_timeout > Self::MAX_TIMEOUT {
            return Err(NetError::Config(format!(
                "timeouts must be at most {:?} (got {:?} and {:?})",
                Self::MAX_TIMEOUT,
                self.timeout,
                self.connect_timeout
            )));
        }
        Ok(())
    }

    fn check_policy(&self, addr: SocketAddr) -> Result<(), NetError> {
        if self.tls.is_none() && !self.allow_plaintext && tls_required(&addr) {
            return Err(NetError::PlaintextRefused { addr });
        }
        Ok(())
    }
}

/// `now + t`, or a configuration error if that instant is not representable.
fn deadline_after(t: Duration) -> Result<Instant, NetError> {
    Instant::now()
        .checked_add(t)
        .ok_or_else(|| NetError::Config(format!("timeout {t:?} is too long")))
}

/// What the writer thread is asked to do.
enum Cmd {
    /// Send one message.
    Msg(Vec<u8>),
    /// Write whatever TLS records rustls has queued (asked by the reader thread).
    Flush,
    /// Finish: flush, close (close_notify on TLS), half-close the socket and exit.
    Close,
}

/// What the reader thread hands to the receiving side.
enum Item {
    /// A whole frame of at most [`EAGER_MAX`] bytes, read ahead.
    Frame(Vec<u8>),
    /// The header of a larger frame: the reader waits for a [`TcpTransport::recv_max`] that
    /// accepts this length before it allocates anything for the payload.
    Announce(usize),
}

type Incoming = Result<Item, NetError>;

/// Frames up to this many bytes are read ahead as they arrive; a larger one is only read once
/// the receiving side has accepted its announced length ([`Transport::recv_max`]).
const EAGER_MAX: usize = 64 * 1024;

/// At most this many frames read ahead wait in the queue (so a peer that floods small frames
/// holds at most `QUEUE_MAX × EAGER_MAX` bytes of this side's memory); then the reader stops
/// reading and TCP flow control holds the peer back.
const QUEUE_MAX: usize = 64;

/// A TCP (optionally TLS) link endpoint. See the module documentation.
pub struct TcpTransport {
    party: u8,
    timeout: Duration,
    peer: SocketAddr,
    tls: bool,
    to_writer: Sender<Cmd>,
    shared: Arc<WriterShared>,
    from_reader: Receiver<Incoming>,
    /// Frames read ahead and not yet taken by `recv` (shared with the reader thread).
    queued: Arc<AtomicUsize>,
    /// Grants (true) or refusals (false) of announced large frames, to the reader thread.
    grant: Sender<bool>,
    stats: NetStats,
    broken: Option<String>,
    sock: TcpStream,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("party", &self.party)
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("stats", &self.stats)
            .field("broken", &self.broken)
            .finish()
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

impl TcpTransport {
    /// Connect to the peer at `addr` (retrying a refused connection until
    /// `cfg.connect_timeout`), run the TLS handshake as client if `cfg.tls` is set, then the
    /// link handshake.
    ///
    /// # Errors
    /// [`NetError::PlaintextRefused`] if `addr` is not on loopback and neither TLS nor
    /// `allow_plaintext` is configured; [`NetError::Handshake`] on a mismatch (the error names
    /// the field); [`NetError::Tls`] if the peer's certificate is not the pinned one or the
    /// peer refused ours; [`NetError::Timeout`], [`NetError::PeerClosed`], [`NetError::Io`].
    pub fn connect(addr: SocketAddr, cfg: &LinkConfig) -> Result<Self, NetError> {
        cfg.validate()?;
        cfg.check_policy(addr)?;
        let deadline = deadline_after(cfg.connect_timeout)?;
        let sock = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::Timeout {
                    what: format!("a connection to {addr}"),
                    after: cfg.connect_timeout,
                });
            }
            match TcpStream::connect_timeout(&addr, left.min(cfg.timeout)) {
                Ok(s) => break s,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionRefused
                            | ErrorKind::TimedOut
                            | ErrorKind::WouldBlock
                            | ErrorKind::ConnectionReset
                            | ErrorKind::Interrupted
                    ) =>
                {
                    thread::sleep(left.min(Duration::from_millis(20)));
                }
                Err(e) => return Err(io_err(format!("connecting to {addr}"))(e)),
            }
        };
        Self::establish(sock, cfg, false)
    }

    /// Wait (at most `cfg.connect_timeout`) for one peer to connect to `listener`, then run
    /// the TLS handshake as server if `cfg.tls` is set, then the link handshake. The listener
    /// is polled in non-blocking mode and put back in blocking mode before returning.
    ///
    /// # Errors
    /// As [`TcpTransport::connect`]; a plaintext connection from a non-loopback peer is
    /// closed and refused.
    pub fn accept(listener: &TcpListener, cfg: &LinkConfig) -> Result<Self, NetError> {
        cfg.validate()?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("preparing the listener"))?;
        let deadline = deadline_after(cfg.connect_timeout)?;
        let res = loop {
            match listener.accept() {
                Ok(x) => break Ok(x),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Err(NetError::Timeout {
                            what: match listener.local_addr() {
                                Ok(a) => format!("a peer to connect to {a}"),
                                Err(_) => "a peer to connect".to_string(),
                            },
                            after: cfg.connect_timeout,
                        });
                    }
                    thread::sleep(left.min(Duration::from_millis(2)));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(io_err("accepting a connection")(e)),
            }
        };
        let _ = listener.set_nonblocking(false);
        let (sock, addr) = res?;
        if let Err(e) = cfg.check_policy(addr) {
            let _ = sock.shutdown(Shutdown::Both);
            return Err(e);
        }
        sock.set_nonblocking(false)
            .map_err(io_err("configuring the socket"))?;
        Self::establish(sock, cfg, true)
    }

    /// Set up the link on a connection already accepted by the caller (a server that accepts
    /// in one thread and handshakes each connection in its own): as [`TcpTransport::accept`]
    /// after its `accept` call, so a slow or hostile peer holds up only its own connection.
    ///
    /// # Errors
    /// As [`TcpTransport::accept`].
    pub fn from_accepted(sock: TcpStream, cfg: &LinkConfig) -> Result<Self, NetError> {
        cfg.validate()?;
        let addr = sock
            .peer_addr()
            .map_err(io_err("reading the peer address"))?;
        if let Err(e) = cfg.check_policy(addr) {
            let _ = sock.shutdown(Shutdown::Both);
            return Err(e);
        }
        sock.set_nonblocking(false)
            .map_err(io_err("configuring the socket"))?;
        Self::establish(sock, cfg, true)
    }

    fn establish(sock: TcpStream, cfg: &LinkConfig, server: bool) -> Result<Self, NetError> {
        let t = cfg.timeout;
        let peer = sock
            .peer_addr()
            .map_err(io_err("reading the peer address"))?;
        sock.set_nodelay(true)
            .map_err(io_err("setting TCP_NODELAY"))?;
        sock.set_read_timeout(Some(t))
            .map_err(io_err("setting the read timeout"))?;
        sock.set_write_timeout(Some(t))
            .map_err(io_err("setting the write timeout"))?;
        let clone = |what: &str| sock.try_clone().map_err(io_err(what.to_string()));
        let hello = cfg.hello();
        let (to_writer, writer_rx) = channel::<Cmd>();
        let (reader_tx, from_reader) = channel::<Incoming>();
        let stop = Arc::new(AtomicBool::new(false));

        let (sink, reader_src): (Sink, Box<dyn Read + Send>) = match &cfg.tls {
            None => {
                let mut s = &sock;
                let mut r = &sock;
                if let Err(e) = exchange_hello(&mut r, &mut s, &hello, t) {
                    linger_close(&sock);
                    return Err(e);
                }
                (
                    Sink::Plain(BufWriter::with_capacity(
                        64 * 1024,
                        clone("cloning the socket")?,
                    )),
                    Box::new(BufReader::with_capacity(
                        64 * 1024,
                        clone("cloning the socket")?,
                    )),
                )
            }
            Some(tcfg) => {
                let mut conn = if server {
                    tls::server_connection(tcfg)?
                } else {
                    tls::client_connection(tcfg)?
                };
                let mut s = &sock;
                while conn.is_handshaking() {
                    if let Err(e) = conn.complete_io(&mut s) {
                        // complete_io has already tried to send rustls's alert.
                        linger_close(&sock);
                        return Err(match NetError::from_io(e, "doing the TLS handshake", t) {
                            NetError::PeerClosed { detail } => NetError::Tls(format!(
                                "the peer closed the connection during the TLS handshake \
                                 (it may have refused our certificate): {detail}"
                            )),
                            other => other,
                        });
                    }
                }
                conn.set_buffer_limit(None);
                let conn: SharedConn = Arc::new(Mutex::new(conn));
                let notify_tx = to_writer.clone();
                let notify = move || {
                    let _ = notify_tx.send(Cmd::Flush);
                };
                let mut w = TlsWriter::new(clone("cloning the socket")?, conn.clone());
                let mut r = TlsReader::new(clone("cloning the socket")?, conn, notify);
                if let Err(e) = exchange_hello(&mut r, &mut TlsHelloWriter(&mut w), &hello, t) {
                    // Deliver any alert rustls queued, then give up.
                    let _ = w.flush_pending();
                    linger_close(&sock);
                    return Err(e);
                }
                (Sink::Tls(w), Box::new(r))
            }
        };

        let errs = reader_tx.clone();
        let shared = Arc::new(WriterShared {
            sink: Mutex::new(sink),
            failed: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
        });
        let wshared = shared.clone();
        let writer = thread::Builder::new()
            .name(format!("suf-net-w{}", cfg.party))
            .spawn(move || writer_loop(&wshared, writer_rx, errs, t))
            .map_err(io_err("starting the writer thread"))?;
        let reader_stop = stop.clone();
        let fr = FrameReader::new(reader_src, cfg.max_frame, t);
        let queued = Arc::new(AtomicUsize::new(0));
        let (grant, grant_rx) = channel::<bool>();
        let rq = queued.clone();
        let reader = match thread::Builder::new()
            .name(format!("suf-net-r{}", cfg.party))
            .spawn(move || reader_loop(fr, reader_tx, reader_stop, rq, grant_rx))
        {
            Ok(h) => h,
            Err(e) => {
                let _ = to_writer.send(Cmd::Close);
                let _ = writer.join();
                return Err(io_err("starting the reader thread")(e));
            }
        };
        Ok(TcpTransport {
            party: cfg.party,
            timeout: t,
            peer,
            tls: cfg.tls.is_some(),
            to_writer,
            shared,
            from_reader,
            queued,
            grant,
            stats: NetStats::default(),
            broken: None,
            sock,
            stop,
            writer: Some(writer),
            reader: Some(reader),
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the link is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    fn fail(&mut self, e: NetError) -> NetError {
        if self.broken.is_none() {
            self.broken = Some(e.to_string());
        }
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

    /// The next item from the reader thread, waiting at most the link's timeout.
    fn next_item(&mut self) -> Result<Item, NetError> {
        match self.from_reader.recv_timeout(self.timeout) {
            Ok(Ok(item)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                Ok(item)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(RecvTimeoutError::Timeout) => {
                let e = NetError::Timeout {
                    what: format!("a message from party {} at {}", 1 - self.party, self.peer),
                    after: self.timeout,
                };
                Err(self.fail(e))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.fail(NetError::PeerClosed {
                detail: "the reader thread has stopped".into(),
            })),
        }
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, msg: Vec<u8>) -> Result<(), NetError> {
        self.check()?;
        let len = msg.len() as u64;
        // Fast path: a small message, with nothing queued before it, is written right here
        // instead of waking the writer thread (one thread hand-off less per round). The
        // peer's reader thread always drains its socket, so this write cannot wait unless the
        // peer has stopped, and then at most the socket's write timeout.
        if msg.len() <= DIRECT_WRITE_MAX && self.shared.pending.load(Ordering::Acquire) == 0 {
            let direct = match self.shared.sink.try_lock() {
                Ok(mut sink)
                    if self.shared.pending.load(Ordering::Acquire) == 0
                        && !self.shared.failed.load(Ordering::Acquire) =>
                {
                    Some(sink.write_msg(&msg).and_then(|()| sink.flush()))
                }
                _ => None,
            };
            match direct {
                Some(Ok(())) => {
                    self.stats.messages_sent += 1;
                    self.stats.bytes_sent += len;
                    return Ok(());
                }
                Some(Err(e)) => {
                    self.shared.failed.store(true, Ordering::Release);
                    let e = NetError::from_io(e, "writing to the peer", self.timeout);
                    return Err(self.fail(e));
                }
                None => {}
            }
        }
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        if self.to_writer.send(Cmd::Msg(msg)).is_err() {
            return Err(self.fail(NetError::PeerClosed {
                detail: "the writer thread has stopped".into(),
            }));
        }
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += len;
        Ok(())
    }

    fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        self.recv_max(usize::MAX)
    }

    fn recv_max(&mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        self.check()?;
        let m = match self.next_item()? {
            Item::Frame(m) if m.len() > limit => {
                let len = m.len() as u64;
                return Err(self.fail(NetError::FrameTooLarge { len, max: limit }));
            }
            Item::Frame(m) => m,
            Item::Announce(len) if len > limit => {
                // Nothing was allocated for it; the reader thread gives up the link.
                let _ = self.grant.send(false);
                let len = len as u64;
                return Err(self.fail(NetError::FrameTooLarge { len, max: limit }));
            }
            Item::Announce(len) => {
                if self.grant.send(true).is_err() {
                    return Err(self.fail(NetError::PeerClosed {
                        detail: "the reader thread has stopped".into(),
                    }));
                }
                match self.next_item()? {
                    Item::Frame(m) if m.len() == len => m,
                    _ => {
                        return Err(self.fail(NetError::Config(
                            "internal: the reader thread did not deliver the granted frame".into(),
                        )))
                    }
                }
            }
        };
        self.stats.messages_received += 1;
        self.stats.bytes_received += m.len() as u64;
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

impl Drop for TcpTransport {
    fn drop(&mut self) {
        if self.broken.is_some() {
            // Nothing worth delivering: unblock both threads at once.
            self.stop.store(true, Ordering::Release);
            let _ = self.sock.shutdown(Shutdown::Both);
        }
        // The writer delivers what is queued (each write bounded by the socket timeout),
        // then half-closes the socket.
        let _ = self.to_writer.send(Cmd::Close);
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        self.stop.store(true, Ordering::Release);
        let _ = self.sock.shutdown(Shutdown::Both);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// Close a connection that failed its handshake so that the peer reads our last words (a TLS
/// alert) instead of a reset: half-close, then discard what the peer still sends until it
/// closes too, for at most half a second.
fn linger_close(sock: &TcpStream) {
    let _ = sock.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_millis(500);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 4096];
    let mut r = sock;
    while Instant::now() < deadline {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = sock.shutdown(Shutdown::Both);
}

/// Send our hello, read and check the peer's.
pub(crate) fn exchange_hello<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    hello: &Hello,
    t: Duration,
) -> Result<(), NetError> {
    w.write_all(&hello.encode())
        .and_then(|()| w.flush())
        .map_err(|e| NetError::from_io(e, "sending our handshake", t))?;
    let mut buf = [0u8; HELLO_LEN];
    let rd = |r: &mut R, b: &mut [u8]| {
        r.read_exact(b)
            .map_err(|e| NetError::from_io(e, "reading the peer's handshake", t))
    };
    let mut prefix = [0u8; PREFIX_LEN];
    rd(r, &mut prefix)?;
    hello.check_prefix(&prefix)?;
    buf[..PREFIX_LEN].copy_from_slice(&prefix);
    rd(r, &mut buf[PREFIX_LEN..])?;
    hello.check_peer(&buf)?;
    Ok(())
}

/// Adapts [`TlsWriter`] to `Write` for the hello.
struct TlsHelloWriter<'a>(&'a mut TlsWriter);

impl Write for TlsHelloWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_raw(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush_pending()
    }
}

/// The writing half, plaintext or TLS.
enum Sink {
    Plain(BufWriter<TcpStream>),
    Tls(TlsWriter),
}

impl Sink {
    fn write_msg(&mut self, m: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => write_frame(w, m),
            Sink::Tls(w) => w.write_frame(m),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Tls(w) => w.flush_pending(),
        }
    }

    fn close(&mut self) {
        match self {
            Sink::Plain(w) => {
                let _ = w.flush();
                let _ = w.get_ref().shutdown(Shutdown::Write);
            }
            Sink::Tls(w) => {
                let _ = w.close();
                let _ = w.sock.shutdown(Shutdown::Write);
            }
        }
    }
}

/// The writing half and its state, shared by the writer thread and the fast path of
/// [`TcpTransport::send`].
struct WriterShared {
    sink: Mutex<Sink>,
    /// A write failed; nothing more is written.
    failed: AtomicBool,
    /// Messages queued to the writer thread and not yet handed to the sink.
    pending: AtomicUsize,
}

/// Largest message [`TcpTransport::send`] writes on the caller's thread.
const DIRECT_WRITE_MAX: usize = 64 * 1024;

fn writer_loop(shared: &WriterShared, rx: Receiver<Cmd>, errs: Sender<Incoming>, t: Duration) {
    let fail = |e: std::io::Error| {
        shared.failed.store(true, Ordering::Release);
        // Not counted in `queued`: an error is delivered once and ends the link.
        let _ = errs.send(Err(NetError::from_io(e, "writing to the peer", t)));
    };
    let failed = || shared.failed.load(Ordering::Acquire);
    // Blocks only on the local side handing over work; `Close` (or the transport being
    // dropped) ends it.
    while let Ok(first) = rx.recv() {
        let mut sink = shared.sink.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Close => {
                    if !failed() {
                        sink.close();
                    }
                    return;
                }
                Cmd::Msg(m) => {
                    // After a failure, queued messages are dropped: the error is reported.
                    if !failed() {
                        if let Err(e) = sink.write_msg(&m) {
                            fail(e);
                        }
                    }
                    shared.pending.fetch_sub(1, Ordering::AcqRel);
                }
                Cmd::Flush => {
                    if !failed() {
                        if let Err(e) = sink.flush() {
                            fail(e);
                        }
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        if !failed() {
            if let Err(e) = sink.flush() {
                fail(e);
            }
        }
    }
    if !failed() {
        shared
            .sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close();
    }
}

/// How often a waiting reader thread checks whether its link is being shut down.
const READER_POLL: Duration = Duration::from_millis(20);

fn reader_loop<R: Read>(
    mut fr: FrameReader<R>,
    tx: Sender<Incoming>,
    stop: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    grant: Receiver<bool>,
) {
    let deliver = |item: Incoming| {
        queued.fetch_add(1, Ordering::AcqRel);
        tx.send(item).is_ok()
    };
    loop {
        // Back-pressure: read no further while the receiving side has a full queue.
        while queued.load(Ordering::Acquire) >= QUEUE_MAX {
            if stop.load(Ordering::Acquire) {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let len = match fr.read_header(&stop) {
            Ok(len) => len,
            Err(ReadStop::Stopped) => return,
            Err(ReadStop::Failed(e)) => {
                deliver(Err(e));
                return;
            }
        };
        if len > EAGER_MAX {
            // Allocate only once the receiving side has accepted the length.
            if !deliver(Ok(Item::Announce(len))) {
                return;
            }
            loop {
                match grant.recv_timeout(READER_POLL) {
                    Ok(true) => break,
                    Ok(false) | Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Acquire) => return,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        }
        match fr.read_payload(len, &stop) {
            Ok(m) => {
                if !deliver(Ok(Item::Frame(m))) {
                    return;
                }
            }
            Err(ReadStop::Stopped) => return,
            Err(ReadStop::Failed(e)) => {
                deliver(Err(e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(!tls_required(&a("127.0.0.1:9000")));
        assert!(!tls_required(&a("127.3.2.1:9000")));
        assert!(!tls_required(&a("[::1]:9000")));
        assert!(!tls_required(&a("[::ffff:127.0.0.1]:9000")));
        assert!(tls_required(&a("10.0.0.2:9000")));
        assert!(tls_required(&a("192.168.1.1:9000")));
        assert!(tls_required(&a("[2001:db8::1]:9000")));
        assert!(tls_required(&a("0.0.0.0:9000")));
        let cfg = LinkConfig::new(0);
        assert!(matches!(
            cfg.check_policy(a("10.0.0.2:9000")),
            Err(NetError::PlaintextRefused { .. })
        ));
        assert!(cfg.check_policy(a("127.0.0.1:9000")).is_ok());
        let mut open = cfg.clone();
        open.allow_plaintext = true;
        assert!(open.check_policy(a("10.0.0.2:9000")).is_ok());
        let mut bad = cfg.clone();
        bad.party = 2;
        assert!(matches!(
            TcpTransport::connect(a("127.0.0.1:9"), &bad),
            Err(NetError::Config(_))
        ));
        // A timeout whose deadline would overflow `Instant` is a configuration error, not a
        // panic ("overflow when adding duration to instant").
        for huge in [Duration::from_secs(u64::MAX), LinkConfig::MAX_TIMEOUT * 2] {
            let mut bad = cfg.clone();
            bad.connect_timeout = huge;
            assert!(matches!(
                TcpTransport::connect(a("127.0.0.1:9"), &bad),
                Err(NetError::Config(_))
            ));
            let mut bad = cfg.clone();
            bad.timeout = huge;
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            assert!(matches!(
                TcpTransport::accept(&l, &bad),
                Err(NetError::Config(_))
            ));
        }
        assert!(deadline_after(Duration::from_secs(u64::MAX)).is_err());
    }
}

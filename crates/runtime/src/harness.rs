//! Run a whole two-party inference in one process: dealer, both parties on two threads
//! (over the in-memory transport or real TCP on loopback) and the client's sharing and
//! reconstruction. Used by tests, benchmarks and the single-process demo.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use suf_backend::Backend;
use suf_core::prg::Csprng;
use suf_net::{mem_pair, LinkConfig, TcpTransport, Transport};

use crate::dealer::{run_dealer, DealReport, DealerWeights};
use crate::error::{Result, RtError};
use crate::ir::Program;
use crate::keystream::{DealerStreams, PartyStream};
use crate::party::{Party, PartyWeights};
use crate::plain::{run_plain, PlainWeights};
use crate::report::{RunReport, Tracer};
use crate::{mask_weights, reconstruct_output, share_program_inputs};

/// Which link the two parties use.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// In-memory channels.
    Mem,
    /// TCP on 127.0.0.1 (plaintext: loopback only).
    Tcp,
}

/// The result of a local two-party run.
#[derive(Debug)]
pub struct LocalRun {
    /// Outputs reconstructed by the client.
    pub outputs: Vec<Vec<u64>>,
    /// Outputs of the Plain interpreter on the same inputs.
    pub plain: Vec<Vec<u64>>,
    /// Each party's report.
    pub reports: [RunReport; 2],
    /// The dealer's report.
    pub deal: DealReport,
}

impl LocalRun {
    /// Whether the secure outputs equal the plain ones bit for bit.
    pub fn matches_plain(&self) -> bool {
        self.outputs == self.plain
    }
}

/// Dealer + two parties + client for one inference, `rng` for every random choice
/// (use [`Csprng::from_os`] outside tests). One backend serves the dealer, the Plain
/// reference and both parties; with a device backend prefer [`run_two_party_on`] and one
/// instance per party, so the parties do not share a stream.
pub fn run_two_party(
    prog: &Program,
    be: &dyn Backend,
    inputs: &BTreeMap<String, Vec<u64>>,
    weights: &PlainWeights,
    link: Link,
    rng: &mut Csprng,
) -> Result<LocalRun> {
    run_two_party_on(prog, be, [be, be], inputs, weights, link, rng)
}

/// As [`run_two_party`], with the dealer and the Plain reference on `be` and party j on
/// `parties[j]` (each party its own backend instance: its own stream on a GPU).
pub fn run_two_party_on(
    prog: &Program,
    be: &dyn Backend,
    parties: [&dyn Backend; 2],
    inputs: &BTreeMap<String, Vec<u64>>,
    weights: &PlainWeights,
    link: Link,
    rng: &mut Csprng,
) -> Result<LocalRun> {
    run_two_party_observed(prog, be, parties, inputs, weights, link, rng, None)
}

/// [`run_two_party_on`], with party 0's trace (JSON lines, one per round and per FSS batch,
/// as `suf serve --trace` writes them) going to `observer` while the run goes on: a caller
/// can show progress from it.
pub fn run_two_party_observed(
    prog: &Program,
    be: &dyn Backend,
    parties: [&dyn Backend; 2],
    inputs: &BTreeMap<String, Vec<u64>>,
    weights: &PlainWeights,
    link: Link,
    rng: &mut Csprng,
    observer: Option<&mut (dyn std::io::Write + Send)>,
) -> Result<LocalRun> {
    let w = prog.width();
    let plain = run_plain(prog, be, inputs, weights)?;
    let (what, rw): (PartyWeights, DealerWeights) = mask_weights(w, weights, rng);
    let mut session = [0u8; 16];
    session.copy_from_slice(&rng.seed());
    let dealer_rng = Csprng::from_seed(rng.seed());
    let (deal, [k0, k1]) = deal_for(prog, be, parties, dealer_rng, session, &rw)?;
    let shares = share_program_inputs(prog, inputs, rng);
    let timeout = Duration::from_secs(60);
    let (o0, o1) = match link {
        Link::Mem => {
            let (t0, t1) = mem_pair(timeout);
            run_pair(
                prog,
                parties,
                &what,
                [k0, k1],
                [Box::new(t0), Box::new(t1)],
                &shares,
                observer,
            )?
        }
        Link::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| RtError::Io {
                path: "127.0.0.1:0".into(),
                source: e,
            })?;
            let addr = listener.local_addr().map_err(|e| RtError::Io {
                path: "127.0.0.1".into(),
                source: e,
            })?;
            let mk = |party: u8, ks: &PartyStream| {
                let mut c = LinkConfig::new(party);
                c.session_id = ks.id().session;
                c.model_fp = ks.id().program_fp;
                c.keys_fp = ks.id().keys_fp;
                c.timeout = timeout;
                c
            };
            let (c0, c1) = (mk(0, &k0), mk(1, &k1));
            let (t0, t1) = std::thread::scope(|s| {
                let h = s.spawn(|| TcpTransport::connect(addr, &c1));
                let t0 = TcpTransport::accept(&listener, &c0);
                let t1 = h
                    .join()
                    .map_err(|_| RtError::Peer("connect thread panicked".into()));
                (t0, t1)
            });
            let (t0, t1) = (t0?, t1??);
            run_pair(
                prog,
                parties,
                &what,
                [k0, k1],
                [Box::new(t0), Box::new(t1)],
                &shares,
                observer,
            )?
        }
    };
    Ok(LocalRun {
        outputs: o0
            .outputs
            .iter()
            .zip(&o1.outputs)
            .enumerate()
            .map(|(i, (a, b))| reconstruct_output(prog, i, a, b))
            .collect(),
        plain,
        reports: [o0.report, o1.report],
        deal,
    })
}

/// How long a key-stream socket of a single-process run may block on one read or write:
/// long enough for the slowest dealing window of bert-large, short enough that a stalled
/// run fails with an error instead of hanging.
const KEY_SOCKET_TIMEOUT: Duration = Duration::from_secs(600);
/// Kernel buffer asked for on each key-stream socket (the host may grant less).
const KEY_SOCKET_BUFFER: usize = 4 << 20;

/// Deal both parties' streams and open them for `parties`. When each party has its own
/// backend instance that takes streams into device memory (`receive_keys_begin` answers,
/// reserving that memory before the dealer starts), the dealer writes both streams through
/// local sockets while each party receives its own on a thread, so the host never holds a
/// whole stream: it keeps all but the key bodies (bert-large: 60 GB per party, which host
/// memory could not hold twice). With host backends, or one instance for both parties
/// (which receives one stream at a time), the streams are dealt into memory and opened in
/// place.
fn deal_for(
    prog: &Program,
    be: &dyn Backend,
    parties: [&dyn Backend; 2],
    dealer_rng: Csprng,
    session: [u8; 16],
    rw: &DealerWeights,
) -> Result<(DealReport, [PartyStream; 2])> {
    let w = prog.width();
    let fp = prog.fingerprint();
    let shared = std::ptr::addr_eq(parties[0], parties[1]);
    let lens = crate::plan::Plan::of(prog)
        .ok()
        .map(|pl| pl.key_bytes)
        .filter(|_| !shared);
    let mut begun = [None, None];
    if let Some(lens) = lens {
        for j in 0..2 {
            match parties[j].receive_keys_begin(lens[j] as usize) {
                Ok(b) => begun[j] = b,
                Err(e) => {
                    if j == 1 && begun[0].is_some() {
                        parties[0].receive_keys_abort();
                    }
                    return Err(e.into());
                }
            }
        }
    }
    let (Some(lens), [Some(c0), Some(c1)]) = (lens, begun) else {
        for (j, b) in begun.iter().enumerate() {
            if b.is_some() {
                parties[j].receive_keys_abort();
            }
        }
        let (ds, sinks) = DealerStreams::to_memory(w, dealer_rng, session, fp)?;
        let deal = run_dealer(prog, be, ds, rw)?;
        let k0 = PartyStream::receive_bytes(sinks[0].take(), parties[0])?;
        let k1 = PartyStream::receive_bytes(sinks[1].take(), parties[1])?;
        return Ok((deal, [k0, k1]));
    };
    let abort_both = || {
        parties[0].receive_keys_abort();
        parties[1].receive_keys_abort();
    };
    let pair = || -> Result<(UnixStream, UnixStream)> {
        let io = |e: std::io::Error| RtError::Io {
            path: "<key stream socket>".into(),
            source: e,
        };
        let (tx, rx) = UnixStream::pair().map_err(io)?;
        tx.set_write_timeout(Some(KEY_SOCKET_TIMEOUT)).map_err(io)?;
        rx.set_read_timeout(Some(KEY_SOCKET_TIMEOUT)).map_err(io)?;
        let _ = socket2::SockRef::from(&tx).set_send_buffer_size(KEY_SOCKET_BUFFER);
        let _ = socket2::SockRef::from(&rx).set_recv_buffer_size(KEY_SOCKET_BUFFER);
        Ok((tx, rx))
    };
    let (p0, p1) = match (pair(), pair()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            abort_both();
            return Err(e);
        }
    };
    let ((w0, r0), (w1, r1)) = (p0, p1);
    let sinks: [Box<dyn std::io::Write + Send>; 2] = [
        Box::new(std::io::BufWriter::with_capacity(KEY_SOCKET_BUFFER, w0)),
        Box::new(std::io::BufWriter::with_capacity(KEY_SOCKET_BUFFER, w1)),
    ];
    let ds = match DealerStreams::to_writers(
        w,
        dealer_rng,
        session,
        fp,
        sinks,
        ["<party 0's key socket>", "<party 1's key socket>"],
    ) {
        Ok(ds) => ds,
        Err(e) => {
            abort_both();
            return Err(e);
        }
    };
    let chunks = [c0, c1];
    std::thread::scope(|s| {
        let rx = [(r0, 0usize), (r1, 1)].map(|(mut r, j)| {
            let (len, chunk, pb) = (lens[j] as usize, chunks[j], parties[j]);
            s.spawn(move || {
                let out = PartyStream::receive_after_begin(&mut r, len, pb, Some(chunk));
                // On an error the socket closes here, so the dealer's next write fails
                // instead of blocking.
                drop(r);
                out.map(|(k, _)| k)
            })
        });
        // The dealer's writers close when it returns (or fails): the receivers see the end.
        let deal = run_dealer(prog, be, ds, rw);
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<PartyStream>>| {
            h.join()
                .map_err(|_| RtError::Peer("a key receiver thread panicked".into()))?
        };
        let [h0, h1] = rx;
        let (k0, k1) = (join(h0), join(h1));
        match (deal, k0, k1) {
            (Ok(deal), k0, k1) => Ok((deal, [k0?, k1?])),
            // A receiver that failed closed its socket, so the dealer's write failed after
            // it: the receiver's error is the cause.
            (Err(RtError::Io { .. }), Err(e), _) | (Err(RtError::Io { .. }), _, Err(e)) => Err(e),
            // Otherwise the dealer's own error: a receiver's is its consequence.
            (Err(e), _, _) => Err(e),
        }
    })
}

type Out = crate::party::PartyOutput;

fn run_pair(
    prog: &Program,
    bes: [&dyn Backend; 2],
    what: &PartyWeights,
    keys: [PartyStream; 2],
    nets: [Box<dyn Transport>; 2],
    shares: &[BTreeMap<String, Vec<u64>>; 2],
    observer: Option<&mut (dyn std::io::Write + Send)>,
) -> Result<(Out, Out)> {
    let [mut k0, mut k1] = keys;
    let [mut n0, mut n1] = nets;
    let sh1 = &shares[1];
    std::thread::scope(|s| {
        let h1 = s.spawn(move || {
            let p = Party {
                prog,
                party: 1,
                be: bes[1],
                weights: what,
            };
            let r = p.run(&mut k1, n1.as_mut(), sh1, &mut Tracer::new(None));
            drop(n1);
            r
        });
        let p = Party {
            prog,
            party: 0,
            be: bes[0],
            weights: what,
        };
        let r0 = p.run(&mut k0, n0.as_mut(), &shares[0], &mut Tracer::new(observer));
        drop(n0);
        let r1 = h1
            .join()
            .map_err(|_| RtError::Peer("party 1 thread panicked".into()))?;
        Ok((r0?, r1?))
    })
}

//! Run a whole two-party inference in one process: dealer, both parties on two threads
//! (over the in-memory transport or real TCP on loopback) and the client's sharing and
//! reconstruction. Used by tests, benchmarks and the single-process demo.

use std::collections::BTreeMap;
use std::net::TcpListener;
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

/// Deal both parties' streams into memory and open them for `parties`, one after the other:
/// a party whose backend takes streams into device memory receives its own there (the host
/// keeping all but the key bodies), a host backend opens it in place. (Dealing while both
/// parties receive, through pipes, hung on the GPU in one process — see BENCHMARKS.md,
/// eighth session — so the streams are dealt first.)
fn deal_for(
    prog: &Program,
    be: &dyn Backend,
    parties: [&dyn Backend; 2],
    dealer_rng: Csprng,
    session: [u8; 16],
    rw: &DealerWeights,
) -> Result<(DealReport, [PartyStream; 2])> {
    let (ds, sinks) =
        DealerStreams::to_memory(prog.width(), dealer_rng, session, prog.fingerprint())?;
    let deal = run_dealer(prog, be, ds, rw)?;
    let k0 = PartyStream::receive_bytes(sinks[0].take(), parties[0])?;
    let k1 = PartyStream::receive_bytes(sinks[1].take(), parties[1])?;
    Ok((deal, [k0, k1]))
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

//! Programs run one after another by the same two servers, some of whose outputs **stay with
//! the servers** in secret shares and become inputs of the later programs: the key-value
//! cache of a decoder generating text one token at a time.
//!
//! A program's outputs split in two: those listed as [`Kept`] are never sent to anyone —
//! each server appends its share of them (rows, row-major) to its share of a named input of
//! the following programs — and the rest go to the client, who reconstructs them (for text
//! generation: the chosen token id only). A kept share is the output share of the party
//! interpreter as it is, so using it again costs nothing: an input is read locally, and the
//! next program masks it afresh where it is opened.
//!
//! Every program has its own one-time key stream ([`deal`]); the parties check each stream
//! against the program's fingerprint before the run, as for a single inference.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use suf_backend::Backend;
use suf_core::prg::Csprng;
use suf_net::{mem_pair, LinkConfig, TcpTransport, Transport};

use crate::dealer::{run_dealer, DealReport, DealerWeights};
use crate::error::{Result, RtError};
use crate::harness::Link;
use crate::ir::Program;
use crate::keystream::{DealerStreams, PartyStream};
use crate::party::{Party, PartyOutput, PartyWeights};
use crate::report::{RunReport, Tracer};

/// An output that stays with the servers: each appends its share of output `output` to its
/// share of input `input` of the following programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Index of the output in the program's outputs.
    pub output: usize,
    /// Name of the input it extends.
    pub input: String,
}

/// The dealer's side for one program: both parties' one-time key streams (in memory) and
/// what it took. `session` is written into both streams.
pub fn deal(
    prog: &Program,
    be: &dyn Backend,
    rw: &DealerWeights,
    session: [u8; 16],
    rng: &mut Csprng,
) -> Result<([PartyStream; 2], DealReport)> {
    let (ds, sinks) = DealerStreams::to_memory(
        prog.width(),
        Csprng::from_seed(rng.seed()),
        session,
        prog.fingerprint(),
    )?;
    let rep = run_dealer(prog, be, ds, rw)?;
    let k0 = PartyStream::from_bytes(sinks[0].take())?;
    let k1 = PartyStream::from_bytes(sinks[1].take())?;
    Ok(([k0, k1], rep))
}

/// What one program's run gave: the shares meant for the client and both reports.
#[derive(Debug)]
pub struct StepOutput {
    /// Per party, its shares of the outputs that are not kept, in program order.
    pub to_client: [Vec<Vec<u64>>; 2],
    /// Indices of those outputs in the program's outputs.
    pub client_outputs: Vec<usize>,
    /// Each party's report.
    pub reports: [RunReport; 2],
}

/// The two servers of a generation, in one process (two threads per program): their masked
/// weights, their link (kept open across programs) and each one's kept shares.
pub struct Servers<'a> {
    bes: [&'a dyn Backend; 2],
    what: &'a PartyWeights,
    nets: [Box<dyn Transport>; 2],
    kept: [BTreeMap<String, Vec<u64>>; 2],
}

impl std::fmt::Debug for Servers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers")
            .field("kept", &self.kept[0].keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<'a> Servers<'a> {
    /// Two servers on backends `bes` with masked weights `what`, linked over `link`
    /// (TCP: plaintext on loopback, session id `session`).
    pub fn new(
        bes: [&'a dyn Backend; 2],
        what: &'a PartyWeights,
        link: Link,
        session: [u8; 16],
    ) -> Result<Self> {
        let timeout = Duration::from_secs(300);
        let nets: [Box<dyn Transport>; 2] = match link {
            Link::Mem => {
                let (t0, t1) = mem_pair(timeout);
                [Box::new(t0), Box::new(t1)]
            }
            Link::Tcp => {
                let io = |e| RtError::Io {
                    path: "127.0.0.1:0".into(),
                    source: e,
                };
                let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
                let addr = listener.local_addr().map_err(io)?;
                let mk = |party: u8| {
                    let mut c = LinkConfig::new(party);
                    c.session_id = session;
                    c.timeout = timeout;
                    c
                };
                let (c0, c1) = (mk(0), mk(1));
                let (t0, t1) = std::thread::scope(|s| {
                    let h = s.spawn(|| TcpTransport::connect(addr, &c1));
                    let t0 = TcpTransport::accept(&listener, &c0);
                    let t1 = h
                        .join()
                        .map_err(|_| RtError::Peer("connect thread panicked".into()));
                    (t0, t1)
                });
                [Box::new(t0?), Box::new(t1??)]
            }
        };
        Ok(Servers {
            bes,
            what,
            nets,
            kept: [BTreeMap::new(), BTreeMap::new()],
        })
    }

    /// Elements party `party` keeps under input `name` (0 when none yet).
    pub fn kept_len(&self, party: usize, name: &str) -> usize {
        self.kept
            .get(party)
            .and_then(|k| k.get(name))
            .map_or(0, Vec::len)
    }

    /// Run `prog` with its one-time `keys` on the client's input shares `shares` and the
    /// servers' kept shares; outputs listed in `kept` are appended to the kept shares and
    /// never returned.
    ///
    /// # Errors
    /// A kept output index outside the program; an input name given both by the client and
    /// the servers; the parties' errors.
    pub fn run(
        &mut self,
        prog: &Program,
        keys: [PartyStream; 2],
        shares: [BTreeMap<String, Vec<u64>>; 2],
        kept: &[Kept],
    ) -> Result<StepOutput> {
        if let Some(k) = kept.iter().find(|k| k.output >= prog.outputs.len()) {
            return Err(RtError::Input {
                name: k.input.clone(),
                detail: format!(
                    "kept output {} of a program with {} outputs",
                    k.output,
                    prog.outputs.len()
                ),
            });
        }
        let mut inputs = shares;
        for (j, inp) in inputs.iter_mut().enumerate() {
            for (name, v) in &self.kept[j] {
                if !prog.inputs.contains_key(name) {
                    continue;
                }
                if inp.contains_key(name) {
                    return Err(RtError::Input {
                        name: name.clone(),
                        detail: "supplied by the client but held by the servers".into(),
                    });
                }
                inp.insert(name.clone(), v.clone());
            }
        }
        let [mut k0, mut k1] = keys;
        let [n0, n1] = &mut self.nets;
        let (bes, what) = (self.bes, self.what);
        let (i0, i1) = (&inputs[0], &inputs[1]);
        let (o0, o1) = std::thread::scope(|s| {
            let h1 = s.spawn(move || {
                let p = Party {
                    prog,
                    party: 1,
                    be: bes[1],
                    weights: what,
                };
                p.run(&mut k1, n1.as_mut(), i1, &mut Tracer::new(None))
            });
            let p = Party {
                prog,
                party: 0,
                be: bes[0],
                weights: what,
            };
            let r0 = p.run(&mut k0, n0.as_mut(), i0, &mut Tracer::new(None));
            let r1 = h1
                .join()
                .map_err(|_| RtError::Peer("party 1 thread panicked".into()))?;
            Ok::<_, RtError>((r0?, r1?))
        })?;
        let outs: [PartyOutput; 2] = [o0, o1];
        let mut to_client = [Vec::new(), Vec::new()];
        let client_outputs: Vec<usize> = (0..prog.outputs.len())
            .filter(|i| !kept.iter().any(|k| k.output == *i))
            .collect();
        let [a, b] = outs;
        let reports = [a.report, b.report];
        for (j, mut outputs) in [a.outputs, b.outputs].into_iter().enumerate() {
            for k in kept {
                let v = std::mem::take(&mut outputs[k.output]);
                self.kept[j].entry(k.input.clone()).or_default().extend(v);
            }
            to_client[j] = client_outputs
                .iter()
                .map(|&i| std::mem::take(&mut outputs[i]))
                .collect();
        }
        Ok(StepOutput {
            to_client,
            client_outputs,
            reports,
        })
    }
}

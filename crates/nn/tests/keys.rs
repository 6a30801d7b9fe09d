//! Key format v2 on a whole model: every DCF batch the Party interpreter evaluates is a
//! zero-copy view into the party's loaded key stream, with its body 16-aligned in the stream
//! buffer (what a device backend that uploads the stream once needs), and each party attaches
//! its stream to the backend exactly once.

use std::sync::Mutex;

use suf_backend::{BLayout, Backend, BitWidth, CpuBackend, DcfKeys, DpfKeys, Result};
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_models::{config::zoo, Weights};
use suf_nn::layers::Mode;
use suf_nn::model::{build, client_input};
use suf_runtime::harness::{run_two_party, run_two_party_on, Link};

/// A DCF batch as the backend saw it: (origin (stream, offset), body length).
type Seen = (Option<(u64, u64)>, usize);

/// The `Backend` methods both test backends take from their CPU backend `self.cpu` unchanged
/// (GEMM, elementwise ring work, DPF evaluation, packing).
macro_rules! forward_to_cpu {
    () => {
        forward_to_cpu!(gemm);
        forward_to_cpu!(rest);
    };
    (gemm) => {
        fn gemm_batch(
            &self,
            w: BitWidth,
            a: &[u64],
            b: &[u64],
            batch: usize,
            m: usize,
            k: usize,
            n: usize,
            layout: BLayout,
        ) -> Result<Vec<u64>> {
            self.cpu.gemm_batch(w, a, b, batch, m, k, n, layout)
        }
    };
    (rest) => {
        suf_backend::forward_ring_ops!(cpu);
        fn dpf_lt_eval(&self, keys: &DpfKeys, xs: &[u64], t: usize) -> Result<Vec<u8>> {
            self.cpu.dpf_lt_eval(keys, xs, t)
        }
        fn dpf_eq_eval(&self, keys: &DpfKeys, xs: &[u64]) -> Result<Vec<u8>> {
            self.cpu.dpf_eq_eval(keys, xs)
        }
        fn pack(&self, vals: &[u64], bits: u32) -> Result<Vec<u8>> {
            self.cpu.pack(vals, bits)
        }
        fn unpack(&self, bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u64>> {
            self.cpu.unpack(bytes, bits, count)
        }
    };
}

/// The CPU backend, recording what the key-format interface hands it.
#[derive(Default)]
struct Recorder {
    cpu: CpuBackend,
    /// (stream token, stream bytes) per `attach_keys` call.
    attached: Mutex<Vec<(u64, usize)>>,
    /// (origin, body length) of every DCF batch evaluated.
    dcf: Mutex<Vec<Seen>>,
}

impl Backend for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    forward_to_cpu!();
    fn transpose(&self, a: &[u64], rows: usize, cols: usize) -> Result<Vec<u64>> {
        self.cpu.transpose(a, rows, cols)
    }
    fn attach_keys(&self, stream: u64, bytes: &[u8]) -> Result<()> {
        self.attached
            .lock()
            .expect("lock")
            .push((stream, bytes.len()));
        self.cpu.attach_keys(stream, bytes)
    }
    fn dcf_eval(&self, keys: &DcfKeys<'_>, xs: &[u64], t: usize) -> Result<Vec<u64>> {
        let o = keys.origin().map(|o| (o.stream, o.offset));
        self.dcf.lock().expect("lock").push((o, keys.body().len()));
        self.cpu.dcf_eval(keys, xs, t)
    }
}

/// The bert-tiny shape of the family tests (one block, hidden 16), ring 37.
#[test]
fn bert_tiny_dcf_views_are_16_aligned_in_the_stream() {
    let mut cfg = zoo("bert-tiny").unwrap();
    cfg.layers = 1;
    cfg.hidden = 16;
    cfg.heads = 2;
    cfg.kv_heads = 2;
    cfg.head_dim = 8;
    cfg.ffn = 32;
    cfg.vocab = 40;
    cfg.max_pos = 64;
    let w = Weights::synthetic(3);
    let fp = FixedPoint::new(37, 12).unwrap();
    let ids: Vec<u32> = vec![3, 17, 5, 29, 11];
    for mode in [Mode::Public, Mode::Private] {
        let built = build(&cfg, &w, fp, mode, ids.len(), None).unwrap();
        let mut inputs = std::collections::BTreeMap::new();
        inputs.insert("x".to_string(), client_input(&cfg, &w, fp, &ids).unwrap());
        let be = Recorder::default();
        let mut rng = Csprng::for_tests(9);
        let r = run_two_party(
            &built.prog,
            &be,
            &inputs,
            &built.private,
            Link::Mem,
            &mut rng,
        )
        .unwrap();
        assert!(
            r.matches_plain(),
            "{mode:?}: secure output differs from plain"
        );
        let attached = be.attached.lock().unwrap().clone();
        assert_eq!(attached.len(), 2, "one attach per party: {attached:?}");
        assert_ne!(attached[0].0, attached[1].0, "distinct stream tokens");
        for (i, &(_, len)) in attached.iter().enumerate() {
            let made = r.deal.key_bytes;
            assert!(
                made.contains(&(len as u64)),
                "stream {i}: {len} bytes, dealt {made:?}"
            );
        }
        let dcf = be.dcf.lock().unwrap().clone();
        assert!(
            dcf.len() > 10,
            "{mode:?}: only {} DCF evaluations",
            dcf.len()
        );
        for (o, body) in dcf {
            let (stream, offset) = o.expect("every DCF batch is a view into the key stream");
            let &(_, len) = attached
                .iter()
                .find(|a| a.0 == stream)
                .expect("the origin names an attached stream");
            assert_eq!(offset % 16, 0, "DCF body at offset {offset}");
            assert!(offset as usize + body <= len);
        }
    }
}

// ---- key streams received into a device (`PartyStream::receive`) -------------------------

/// The CPU backend posing as a device that receives key streams into its own memory: it keeps
/// every received byte (its "device copy") and evaluates a batch whose body is not on the host
/// from that copy, as the CUDA backend does from its device buffer. A body it cannot find is an
/// error, so a host path reading the zeros the host holds would fail the run, never pass it.
#[derive(Default)]
struct Held {
    cpu: CpuBackend,
    /// The stream being received: (announced length, bytes so far, next chunk).
    rx: Mutex<Option<(usize, Vec<u8>, usize)>>,
    /// Finished streams by token.
    held: Mutex<Vec<(u64, std::sync::Arc<Vec<u8>>)>>,
    /// Batches evaluated from the device copy (DCF, DPF).
    from_copy: Mutex<(usize, usize)>,
    aborts: Mutex<usize>,
    /// Refuse the chunk of this index (a device failing mid-receive).
    fail_at: Option<usize>,
    /// Chunk size (0: [`HELD_CHUNK`]).
    chunk: usize,
    /// Copy each chunk into one reused buffer and keep nothing (a device's staging copy
    /// without its memory: the throughput probe).
    discard: Option<Mutex<Vec<u8>>>,
    /// Copy each chunk with rayon (as the CUDA backend's staging copy does) from the
    /// calling thread's pool.
    par_copy: bool,
    /// Counted up at every finished receive (and its waiters woken).
    finished: Option<std::sync::Arc<Finished>>,
    /// Receives begun on every instance sharing this counter, and its value at each of this
    /// instance's finished receives (whether the two parties received at the same time).
    begins: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    begins_at_finish: Mutex<Vec<usize>>,
}

/// Receives finished so far, for a test that waits on them.
#[derive(Default)]
struct Finished {
    count: Mutex<usize>,
    cv: std::sync::Condvar,
}

impl Finished {
    /// Wait until `n` receives have finished or `limit` passed; whether they did.
    fn wait_for(&self, n: usize, limit: std::time::Duration) -> bool {
        let g = self.count.lock().unwrap();
        let (g, _) = self.cv.wait_timeout_while(g, limit, |c| *c < n).unwrap();
        *g >= n
    }
}

const HELD_CHUNK: usize = 4096 + 16;

impl Held {
    fn chunk(&self) -> usize {
        if self.chunk == 0 {
            HELD_CHUNK
        } else {
            self.chunk
        }
    }

    /// The copy's bytes of the key file whose body `origin` names (header included).
    fn file(&self, o: suf_fss::KeyOrigin, body_len: usize) -> Option<Vec<u8>> {
        let held = self.held.lock().unwrap();
        let (_, copy) = held.iter().find(|(t, _)| *t == o.stream)?;
        let start = (o.offset as usize).checked_sub(suf_fss::keyfmt::HEADER_LEN)?;
        copy.get(start..o.offset as usize + body_len)
            .map(<[u8]>::to_vec)
    }
}

fn missing() -> suf_backend::BackendError {
    suf_backend::BackendError::Gate("no device copy of this body".into())
}

impl Backend for Held {
    fn name(&self) -> &'static str {
        "held"
    }
    forward_to_cpu!();
    fn receive_keys_begin(&self, len: usize) -> Result<Option<usize>> {
        if let Some(b) = &self.begins {
            b.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        *self.rx.lock().unwrap() = Some((len, Vec::with_capacity(len), 0));
        Ok(Some(self.chunk()))
    }
    fn receive_keys_chunk(&self, index: usize, bytes: &[u8]) -> Result<()> {
        let mut g = self.rx.lock().unwrap();
        let (len, got, next) = g.as_mut().expect("a receive was begun");
        assert_eq!(index, *next, "chunks in order");
        if self.fail_at == Some(index) {
            return Err(suf_backend::BackendError::Device {
                operation: "receive_keys_chunk",
                message: "planted failure".into(),
            });
        }
        let last = got.len() + bytes.len() == *len;
        assert!(
            bytes.len() == self.chunk() || last,
            "whole chunks but the last"
        );
        match &self.discard {
            Some(scratch) => {
                let mut sc = scratch.lock().unwrap();
                let need = bytes.len().max(sc.len());
                sc.resize(need, 0);
                sc[..bytes.len()].copy_from_slice(bytes);
                *len -= bytes.len();
            }
            None if self.par_copy => {
                use rayon::prelude::*;
                let at = got.len();
                got.resize(at + bytes.len(), 0);
                got[at..]
                    .par_chunks_mut(1024)
                    .zip(bytes.par_chunks(1024))
                    .for_each(|(d, s)| d.copy_from_slice(s));
            }
            None => got.extend_from_slice(bytes),
        }
        *next += 1;
        Ok(())
    }
    fn receive_keys_finish(&self, stream: u64) -> Result<f64> {
        let (len, got, _) = self.rx.lock().unwrap().take().expect("a receive was begun");
        assert_eq!(got.len(), len);
        if let Some(b) = &self.begins {
            self.begins_at_finish
                .lock()
                .unwrap()
                .push(b.load(std::sync::atomic::Ordering::SeqCst));
        }
        self.held
            .lock()
            .unwrap()
            .push((stream, std::sync::Arc::new(got)));
        if let Some(f) = &self.finished {
            *f.count.lock().unwrap() += 1;
            f.cv.notify_all();
        }
        Ok(0.0)
    }
    fn receive_keys_abort(&self) {
        *self.rx.lock().unwrap() = None;
        *self.aborts.lock().unwrap() += 1;
    }
    fn detach_keys(&self, stream: u64) {
        self.held.lock().unwrap().retain(|(t, _)| *t != stream);
    }
    fn dcf_eval(&self, keys: &DcfKeys<'_>, xs: &[u64], t: usize) -> Result<Vec<u64>> {
        match keys.origin() {
            Some(o) if !o.on_host => {
                let file = self.file(o, keys.body().len()).ok_or_else(missing)?;
                let v = DcfKeys::view(suf_fss::KeyRef::detached(&file))?;
                self.from_copy.lock().unwrap().0 += 1;
                self.cpu.dcf_eval(&v, xs, t)
            }
            _ => self.cpu.dcf_eval(keys, xs, t),
        }
    }
    fn bit_eval(
        &self,
        d: &suf_backend::BitDesc<'_>,
        party: u8,
        keys: &suf_backend::DpfView<'_>,
        xhat: &[u64],
    ) -> Result<Vec<u64>> {
        match keys.origin() {
            Some(o) if !o.on_host && keys.count() > 0 => {
                let file = self.file(o, keys.body().len()).ok_or_else(missing)?;
                let v = suf_backend::DpfView::view(suf_fss::KeyRef::detached(&file))?;
                self.from_copy.lock().unwrap().1 += 1;
                suf_backend::gate::bit_host(self, d, party, &v, xhat)
            }
            _ => suf_backend::gate::bit_host(self, d, party, keys, xhat),
        }
    }
}

/// A one-block model of the family tests' size: bert-tiny's shape (GeLU, LayerNorm, softmax)
/// or gpt2's (causal softmax).
fn tiny(family: &str) -> suf_models::config::ModelConfig {
    let mut cfg = zoo(family).unwrap();
    cfg.layers = 1;
    cfg.hidden = 16;
    cfg.heads = 2;
    cfg.kv_heads = 2;
    cfg.head_dim = 8;
    cfg.ffn = 32;
    cfg.vocab = 40;
    cfg.max_pos = 64;
    cfg
}

/// Both parties receive their streams into the "device" (the harness does so whenever the
/// party's backend takes streams), evaluate every DCF and DPF body from the device copy, and
/// the secure output still equals Plain bit for bit.
#[test]
fn streams_received_into_a_device_run_bit_exact() {
    let w = Weights::synthetic(3);
    let fp = FixedPoint::new(37, 12).unwrap();
    let ids: Vec<u32> = vec![3, 17, 5, 29, 11];
    for (family, mode) in [
        ("bert-tiny", Mode::Private),
        ("bert-tiny", Mode::Public),
        ("gpt2", Mode::Private),
    ] {
        let cfg = tiny(family);
        let built = build(&cfg, &w, fp, mode, ids.len(), None).unwrap();
        let mut inputs = std::collections::BTreeMap::new();
        inputs.insert("x".to_string(), client_input(&cfg, &w, fp, &ids).unwrap());
        let be = Held::default();
        let mut rng = Csprng::for_tests(21);
        let r = run_two_party(
            &built.prog,
            &be,
            &inputs,
            &built.private,
            Link::Mem,
            &mut rng,
        )
        .unwrap();
        assert!(
            r.matches_plain(),
            "{family} {mode:?}: secure output differs from plain"
        );
        let (dcf, dpf) = *be.from_copy.lock().unwrap();
        assert!(
            dcf > 10,
            "{family} {mode:?}: {dcf} DCF batches from the device copy"
        );
        assert!(
            dpf > 0,
            "{family} {mode:?}: no DPF batch from the device copy"
        );
        assert!(
            be.held.lock().unwrap().is_empty(),
            "detached after each run"
        );
        assert_eq!(*be.aborts.lock().unwrap(), 0);
    }
}

/// One dealt stream pair of the bert-tiny shape (party 0's, party 1's bytes) and its program.
fn dealt() -> (suf_runtime::ir::Program, [Vec<u8>; 2]) {
    let cfg = tiny("bert-tiny");
    let fp = FixedPoint::new(37, 12).unwrap();
    deal_model(&cfg, &Weights::synthetic(3), fp, 5)
}

/// A model's program (private weights, `seq` tokens) and both parties' key streams, dealt
/// into memory with fixed seeds.
fn deal_model(
    cfg: &suf_models::config::ModelConfig,
    w: &Weights,
    fp: FixedPoint,
    seq: usize,
) -> (suf_runtime::ir::Program, [Vec<u8>; 2]) {
    let built = build(cfg, w, fp, Mode::Private, seq, None).unwrap();
    let prog = built.prog;
    let mut rng = Csprng::for_tests(5);
    let (_, rw) = suf_runtime::mask_weights(prog.width(), &built.private, &mut rng);
    let (ds, sinks) = suf_runtime::keystream::DealerStreams::to_memory(
        prog.width(),
        Csprng::for_tests(6),
        [7; 16],
        prog.fingerprint(),
    )
    .unwrap();
    suf_runtime::dealer::run_dealer(&prog, &CpuBackend::default(), ds, &rw).unwrap();
    let [a, b] = sinks;
    (prog, [a.take(), b.take()])
}

/// The receiver hands the device every byte in order and keeps on the host exactly the
/// stream minus the key bodies (zeros there), and the host keeps far less than the stream.
#[test]
fn the_device_gets_every_byte_and_the_host_all_but_the_bodies() {
    use suf_runtime::keystream::PartyStream;
    let (_, streams) = dealt();
    for bytes in streams {
        let be = Held::default();
        let len = bytes.len();
        let (ks, st) = PartyStream::receive(&mut bytes.as_slice(), len, &be).unwrap();
        assert!(st.into_device && !ks.bodies_on_host());
        assert_eq!(st.bytes, len as u64);
        let held = be.held.lock().unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0, ks.token());
        assert_eq!(
            held[0].1.as_slice(),
            bytes.as_slice(),
            "device copy = the stream"
        );
        let host = ks.bytes();
        assert_eq!(host.len(), len);
        let kept = host.iter().zip(&bytes).filter(|(h, b)| h == b).count();
        let differ: Vec<usize> = (0..len).filter(|&i| host[i] != bytes[i]).collect();
        assert!(
            differ.iter().all(|&i| host[i] == 0),
            "the host holds zeros or the byte"
        );
        assert!(kept >= st.host_bytes as usize);
        assert!(
            st.host_bytes * 2 < len as u64,
            "the host kept {} of {len} bytes",
            st.host_bytes
        );
        // The same bytes through a host backend: opened whole, bodies on the host.
        let (ks2, st2) =
            PartyStream::receive(&mut bytes.as_slice(), len, &CpuBackend::default()).unwrap();
        assert!(!st2.into_device && ks2.bodies_on_host());
        assert_eq!(ks2.bytes(), bytes.as_slice());
    }
}

/// Every truncation, a byte flipped anywhere, a byte too many and a wrong announced length
/// are refused with an error (never a panic), and the device's partial copy is dropped.
#[test]
fn received_streams_refuse_truncation_corruption_and_wrong_lengths() {
    use suf_runtime::keystream::PartyStream;
    let (_, [bytes, _]) = dealt();
    let len = bytes.len();
    let mut rng = Csprng::for_tests(77);
    let mut cuts: Vec<usize> = (0..200).map(|_| (rng.next_u64() as usize) % len).collect();
    cuts.extend([0, 1, 127, 128, 129, 160, len - 49, len - 48, len - 1]);
    for cut in cuts {
        let be = Held::default();
        let e = PartyStream::receive(&mut &bytes[..cut], len, &be);
        assert!(e.is_err(), "truncated at {cut} of {len}: accepted");
        assert_eq!(
            *be.aborts.lock().unwrap(),
            1,
            "cut {cut}: partial copy dropped"
        );
        assert!(be.held.lock().unwrap().is_empty());
    }
    for _ in 0..200 {
        let i = (rng.next_u64() as usize) % len;
        let mut b = bytes.clone();
        b[i] ^= 1 << (rng.next_u64() % 8);
        let be = Held::default();
        let r = PartyStream::receive(&mut b.as_slice(), len, &be);
        let Err(e) = r else {
            panic!("byte {i} of {len} flipped: accepted");
        };
        // The cause is reported (a checksum or a structural error), never the reader's
        // internal "the checker stopped".
        assert!(!e.to_string().contains("checking thread"), "byte {i}: {e}");
        assert!(be.held.lock().unwrap().is_empty());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(PartyStream::receive(&mut longer.as_slice(), len, &Held::default()).is_err());
    for wrong in [len - 16, len + 16, len / 2, 10] {
        let padded = [bytes.clone(), vec![0u8; 16]].concat();
        let r = PartyStream::receive(&mut padded.as_slice(), wrong, &Held::default());
        assert!(r.is_err(), "announced {wrong} for {len}: accepted");
    }
}

/// A body that only a device holds is refused by the host evaluators, never read as zeros.
#[test]
fn host_evaluation_of_a_device_held_body_is_an_error() {
    use suf_runtime::keystream::PartyStream;
    let (_, [bytes, _]) = dealt();
    let be = Held::default();
    let len = bytes.len();
    let (ks, _) = PartyStream::receive(&mut bytes.as_slice(), len, &be).unwrap();
    let host = ks.bytes();
    // Every DCF key file in the stream (by its header), viewed as the stream's blobs hand
    // them out: origin in the stream, bodies not on the host.
    let mut dcfs = 0;
    for off in (0..len.saturating_sub(64)).step_by(16) {
        if host[off..off + 4] != suf_fss::keyfmt::MAGIC
            || u16::from_le_bytes([host[off + 6], host[off + 7]]) != 2
        {
            continue;
        }
        let blen = u64::from_le_bytes(host[off + 48..off + 56].try_into().unwrap()) as usize;
        let Some(file) = host.get(off..off + 64 + blen) else {
            continue;
        };
        let k = suf_fss::KeyRef {
            bytes: file,
            origin: Some(suf_fss::KeyOrigin {
                stream: ks.token(),
                offset: off as u64,
                on_host: false,
            }),
        };
        let Ok(v) = DcfKeys::view(k) else { continue };
        if v.count() == 0 {
            continue;
        }
        assert!(
            v.body().iter().all(|&b| b == 0),
            "the host holds no body bytes"
        );
        let xs = vec![0u64; v.count()];
        let e = CpuBackend::default().dcf_eval(&v, &xs, 1).unwrap_err();
        assert!(
            matches!(
                e,
                suf_backend::BackendError::Fss(suf_fss::FssError::BodyOnDevice { .. })
            ),
            "{e:?}"
        );
        // The same view on the host's terms (the body on the host) evaluates.
        let k = suf_fss::KeyRef::detached(&bytes[off..off + 64 + blen]);
        CpuBackend::default()
            .dcf_eval(&DcfKeys::view(k).unwrap(), &xs, 1)
            .unwrap();
        dcfs += 1;
    }
    assert!(dcfs > 5, "only {dcfs} DCF batches found in the stream");
}

/// Each party on its own "device" instance (as the CLI runs them): both receive their streams
/// into their own device copies at the same time, while the dealer deals them (no whole stream
/// in host memory), the run is bit-exact, and a device failing mid-receive fails the run with
/// its own error, for either party.
#[test]
fn each_party_on_its_own_device_instance() {
    let w = Weights::synthetic(3);
    let fp = FixedPoint::new(37, 12).unwrap();
    let ids: Vec<u32> = vec![3, 17, 5, 29, 11];
    let cfg = tiny("bert-tiny");
    let built = build(&cfg, &w, fp, Mode::Private, ids.len(), None).unwrap();
    let mut inputs = std::collections::BTreeMap::new();
    inputs.insert("x".to_string(), client_input(&cfg, &w, fp, &ids).unwrap());
    let cpu = CpuBackend::default();
    let begins = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held = || Held {
        begins: Some(begins.clone()),
        ..Default::default()
    };
    let (h0, h1) = (held(), held());
    let mut rng = Csprng::for_tests(31);
    let r = run_two_party_on(
        &built.prog,
        &cpu,
        [&h0, &h1],
        &inputs,
        &built.private,
        Link::Mem,
        &mut rng,
    )
    .unwrap();
    assert!(r.matches_plain());
    for h in [&h0, &h1] {
        assert!(
            h.from_copy.lock().unwrap().0 > 10,
            "DCFs from each device's copy"
        );
        // Both receives were under way together (the dealer streaming to both), never one
        // whole stream after the other.
        assert_eq!(*h.begins_at_finish.lock().unwrap(), [2]);
    }
    for party in 0..2 {
        let held = |j: usize| Held {
            fail_at: (j == party).then_some(2),
            ..Default::default()
        };
        let (h0, h1) = (held(0), held(1));
        let mut rng = Csprng::for_tests(32);
        let e = run_two_party_on(
            &built.prog,
            &cpu,
            [&h0, &h1],
            &inputs,
            &built.private,
            Link::Mem,
            &mut rng,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("planted failure"),
            "party {party}: {e}"
        );
        assert_eq!(*[&h0, &h1][party].aborts.lock().unwrap(), 1);
    }
}

/// A dealer backend whose GEMM fails from its `fail_at`-th call on (a device lost mid-deal).
struct FailingDealer {
    cpu: CpuBackend,
    calls: std::sync::atomic::AtomicUsize,
    fail_at: std::sync::atomic::AtomicUsize,
}

impl Backend for FailingDealer {
    fn name(&self) -> &'static str {
        "failing-dealer"
    }
    fn gemm_batch(
        &self,
        w: BitWidth,
        a: &[u64],
        b: &[u64],
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> Result<Vec<u64>> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.calls.fetch_add(1, SeqCst) >= self.fail_at.load(SeqCst) {
            return Err(suf_backend::BackendError::Device {
                operation: "gemm_batch",
                message: "planted dealer failure".into(),
            });
        }
        self.cpu.gemm_batch(w, a, b, batch, m, k, n, layout)
    }
    forward_to_cpu!(rest);
    fn dcf_eval(&self, keys: &DcfKeys<'_>, xs: &[u64], t: usize) -> Result<Vec<u64>> {
        self.cpu.dcf_eval(keys, xs, t)
    }
}

/// The dealer failing in the middle of a single-process run while both parties receive: the
/// run ends with the dealer's own error (not a receiver's "truncated"), both receivers stop
/// and give back their device reservations, and nothing hangs.
#[test]
fn a_dealer_failing_mid_stream_fails_the_run_with_its_error() {
    use std::sync::atomic::Ordering::SeqCst;
    let w = Weights::synthetic(3);
    let fp = FixedPoint::new(37, 12).unwrap();
    let ids: Vec<u32> = vec![3, 17, 5, 29, 11];
    let cfg = tiny("bert-tiny");
    let built = build(&cfg, &w, fp, Mode::Private, ids.len(), None).unwrap();
    let mut inputs = std::collections::BTreeMap::new();
    inputs.insert("x".to_string(), client_input(&cfg, &w, fp, &ids).unwrap());
    let dealer = FailingDealer {
        cpu: CpuBackend::default(),
        calls: 0.into(),
        fail_at: usize::MAX.into(),
    };
    // The Plain reference runs first on the same backend: count its GEMMs, then fail the
    // dealer's third.
    suf_runtime::plain::run_plain(&built.prog, &dealer, &inputs, &built.private).unwrap();
    let plain_calls = dealer.calls.swap(0, SeqCst);
    dealer.fail_at.store(plain_calls + 2, SeqCst);
    let (h0, h1) = (Held::default(), Held::default());
    let mut rng = Csprng::for_tests(34);
    let e = run_two_party_on(
        &built.prog,
        &dealer,
        [&h0, &h1],
        &inputs,
        &built.private,
        Link::Mem,
        &mut rng,
    )
    .unwrap_err();
    assert!(e.to_string().contains("planted dealer failure"), "{e}");
    assert!(
        dealer.calls.load(SeqCst) > plain_calls + 2,
        "the failure hit the dealer"
    );
    for h in [&h0, &h1] {
        assert_eq!(
            *h.aborts.lock().unwrap(),
            1,
            "each receive stopped and gave back"
        );
        assert!(h.held.lock().unwrap().is_empty());
    }
}

/// In one process the dealer writes both streams while each party receives its own on a
/// thread. A receiver's parallel work (checksums, a device's staging copy) must never queue
/// behind the process's global rayon pool: the dealer's tasks can fill that pool while they
/// wait for the very sockets the receivers drain (the single-process run that hung on the
/// GPU). Here every thread of the global pool is held until both receives have finished;
/// the run must finish anyway (it deadlocked before the receivers had a pool of their own).
#[test]
fn receivers_do_not_wait_on_a_blocked_global_pool() {
    let w = Weights::synthetic(3);
    let fp = FixedPoint::new(37, 12).unwrap();
    let ids: Vec<u32> = vec![3, 17, 5, 29, 11];
    let cfg = tiny("bert-tiny");
    let built = build(&cfg, &w, fp, Mode::Private, ids.len(), None).unwrap();
    let mut inputs = std::collections::BTreeMap::new();
    inputs.insert("x".to_string(), client_input(&cfg, &w, fp, &ids).unwrap());
    let fin = std::sync::Arc::new(Finished::default());
    let held = || Held {
        chunk: 1 << 16,
        par_copy: true,
        finished: Some(fin.clone()),
        ..Default::default()
    };
    let (h0, h1) = (held(), held());
    // Every global-pool thread blocks until both receives finish (or a minute passes).
    let n = rayon::current_num_threads();
    let started = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let released_by_finish = std::sync::Arc::new(Mutex::new(Vec::new()));
    for _ in 0..n {
        let (fin, started, rel) = (fin.clone(), started.clone(), released_by_finish.clone());
        rayon::spawn(move || {
            started.wait();
            let ok = fin.wait_for(2, std::time::Duration::from_secs(60));
            rel.lock().unwrap().push(ok);
        });
    }
    started.wait();
    // The dealer and the plain reference work in a pool of their own (as a dealer whose own
    // tasks are not what blocks).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let cpu = CpuBackend::default();
    let mut rng = Csprng::for_tests(33);
    let r = pool
        .install(|| {
            run_two_party_on(
                &built.prog,
                &cpu,
                [&h0, &h1],
                &inputs,
                &built.private,
                Link::Mem,
                &mut rng,
            )
        })
        .unwrap();
    assert!(r.matches_plain());
    // Wait for the blockers to record how they were released.
    while released_by_finish.lock().unwrap().len() < n {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        released_by_finish.lock().unwrap().iter().all(|&ok| ok),
        "the receives finished only after the blocked pool gave up (a deadlock while it held)"
    );
    for h in [&h0, &h1] {
        assert!(
            h.from_copy.lock().unwrap().0 > 10,
            "DCFs from each device's copy"
        );
    }
}

/// Receive throughput through a Unix socket into the emulated device, whole bert-tiny streams
/// (seq 128, private; ≈ 0.5 GB per party): a probe for the receiver's own cost, not a
/// pass/fail check (`cargo test --release -p suf-nn --test keys -- --ignored --nocapture`).
#[test]
#[ignore = "a throughput probe; prints figures"]
fn receive_throughput_probe() {
    use std::io::Write;
    use suf_runtime::keystream::PartyStream;
    let m = suf_models::load("bert-tiny", std::path::Path::new("/nonexistent"), 1).unwrap();
    let fp = FixedPoint::new(m.cfg.ring_bits, m.cfg.frac_bits).unwrap();
    let (_, [a, _]) = deal_model(&m.cfg, &m.weights, fp, 128);
    let bytes = std::sync::Arc::new(a);
    let len = bytes.len();
    for _ in 0..3 {
        let be = Held {
            chunk: 16 << 20,
            discard: Some(Mutex::new(Vec::new())),
            ..Default::default()
        };
        let (mut tx, mut rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let b2 = std::sync::Arc::clone(&bytes);
        let w = std::thread::spawn(move || {
            for c in b2.chunks(4 << 20) {
                tx.write_all(c).unwrap();
            }
        });
        let t = std::time::Instant::now();
        let (_, st) = PartyStream::receive(&mut rx, len, &be).unwrap();
        let s = t.elapsed().as_secs_f64();
        w.join().unwrap();
        println!(
            "received {:.1} MB in {:.3} s: {:.2} GB/s; {:?}",
            len as f64 / 1e6,
            s,
            len as f64 / s / 1e9,
            st.split
        );
    }
}

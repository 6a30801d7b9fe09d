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
use suf_runtime::harness::{run_two_party, Link};

/// A DCF batch as the backend saw it: (origin (stream, offset), body length).
type Seen = (Option<(u64, u64)>, usize);

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
    fn add(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.cpu.add(w, a, b)
    }
    fn sub(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.cpu.sub(w, a, b)
    }
    fn mul(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.cpu.mul(w, a, b)
    }
    fn neg(&self, w: BitWidth, a: &[u64]) -> Result<Vec<u64>> {
        self.cpu.neg(w, a)
    }
    fn scale(&self, w: BitWidth, a: &[u64], c: u64) -> Result<Vec<u64>> {
        self.cpu.scale(w, a, c)
    }
    fn add_const(&self, w: BitWidth, a: &[u64], c: u64) -> Result<Vec<u64>> {
        self.cpu.add_const(w, a, c)
    }
    fn reduce(&self, w: BitWidth, a: &[u64]) -> Result<Vec<u64>> {
        self.cpu.reduce(w, a)
    }
    fn add_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()> {
        self.cpu.add_assign(w, a, b)
    }
    fn sub_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()> {
        self.cpu.sub_assign(w, a, b)
    }
    fn mul_assign(&self, w: BitWidth, a: &mut [u64], b: &[u64]) -> Result<()> {
        self.cpu.mul_assign(w, a, b)
    }
    fn add_bcast(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.cpu.add_bcast(w, a, b)
    }
    fn mul_bcast(&self, w: BitWidth, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        self.cpu.mul_bcast(w, a, b)
    }
    fn mul_rows(&self, w: BitWidth, a: &[u64], b: &[u64], cols: usize) -> Result<Vec<u64>> {
        self.cpu.mul_rows(w, a, b, cols)
    }
    fn row_sum(&self, w: BitWidth, a: &[u64], cols: usize) -> Result<Vec<u64>> {
        self.cpu.row_sum(w, a, cols)
    }
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

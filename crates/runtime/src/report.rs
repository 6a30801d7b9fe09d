//! Exact counts of rounds and bytes per operator and per layer, and the trace writer.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use suf_backend::BackendStats;

/// Counts for one (layer, operator) pair.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpReport {
    /// Layer label.
    pub layer: String,
    /// Operator name.
    pub op: String,
    /// Rounds in which this operator opened values.
    pub rounds: u64,
    /// Payload bytes sent (bit-packed openings).
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_recv: u64,
    /// Elements processed.
    pub elements: u64,
    /// Local compute time (ms), FSS evaluation included.
    pub ms: f64,
}

/// Counts for one layer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerReport {
    /// Layer label.
    pub layer: String,
    /// Rounds in which this layer opened values.
    pub rounds: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_recv: u64,
    /// Local compute time (ms).
    pub ms: f64,
}

/// Where one round's time went (one party). A round runs from the first local step its
/// openings need to the end of its gate batches and Beaver steps.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RoundTime {
    /// Round number (1-based).
    pub round: u64,
    /// Wall milliseconds of the round.
    pub ms: f64,
    /// Host compute: the round's wall time less device time and waiting.
    pub host_ms: f64,
    /// Time inside backend calls that ran on the device (synchronous: copies, kernels and
    /// driver work; 0 on the CPU backend).
    pub device_ms: f64,
    /// Time blocked on the peer: sending the round's message and waiting for the peer's.
    pub wait_ms: f64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_recv: u64,
}

/// Counters of one backend operation during the online run (from
/// [`suf_backend::OpStats`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendOpReport {
    /// The trait operation (`gemm`, `dcf_eval`, `add`, …).
    pub op: String,
    /// Calls run on the device.
    pub device_calls: u64,
    /// Calls run on the host by the backend's size rule.
    pub host_calls: u64,
    /// Milliseconds of the device calls.
    pub device_ms: f64,
    /// Milliseconds of the host calls.
    pub host_ms: f64,
    /// Bytes host → device.
    pub bytes_h2d: u64,
    /// Bytes device → host.
    pub bytes_d2h: u64,
}

/// What the backend did during the online run (zeros on the CPU backend).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendReport {
    /// DCF batches evaluated in place from the attached key stream.
    pub dcf_resident_batches: u64,
    /// DCF batches whose body was uploaded for the call.
    pub dcf_uploaded_batches: u64,
    /// Bytes of those uploads.
    pub dcf_uploaded_bytes: u64,
    /// Milliseconds inside device calls.
    pub device_ms: f64,
    /// Per operation.
    pub ops: Vec<BackendOpReport>,
}

impl From<&BackendStats> for BackendReport {
    fn from(s: &BackendStats) -> Self {
        BackendReport {
            dcf_resident_batches: s.dcf_resident_batches,
            dcf_uploaded_batches: s.dcf_uploaded_batches,
            dcf_uploaded_bytes: s.dcf_uploaded_bytes,
            device_ms: s.device_ms,
            ops: s
                .ops
                .iter()
                .map(|o| BackendOpReport {
                    op: o.op.to_string(),
                    device_calls: o.device_calls,
                    host_calls: o.host_calls,
                    device_ms: o.device_ms,
                    host_ms: o.host_ms,
                    bytes_h2d: o.bytes_h2d,
                    bytes_d2h: o.bytes_d2h,
                })
                .collect(),
        }
    }
}

/// What one party's online run cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    /// Party.
    pub party: u8,
    /// Sequential rounds (exchanges with the peer).
    pub rounds: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_recv: u64,
    /// Bytes sent on the wire, framing included (from the transport).
    pub wire_bytes_sent: u64,
    /// Bytes received on the wire, framing included.
    pub wire_bytes_recv: u64,
    /// Online wall time (ms), first input share to output shares.
    pub online_ms: f64,
    /// Host compute over the run (ms): online time less device time and waiting.
    pub host_ms: f64,
    /// Time inside backend calls that ran on the device (ms; 0 on the CPU backend).
    pub device_ms: f64,
    /// Time blocked on the peer (ms): sending messages and waiting for the peer's.
    pub wait_ms: f64,
    /// Per round: where the time went.
    pub round_times: Vec<RoundTime>,
    /// What the backend did during the run.
    pub backend: BackendReport,
    /// Per layer.
    pub layers: Vec<LayerReport>,
    /// Per operator within each layer.
    pub ops: Vec<OpReport>,
    /// Wall time of the executor's phases summed over the rounds (ms), device calls and
    /// waiting included: `local` (local steps), `masks` (mask shares from the key stream),
    /// `mask_pack`, `send`, `recv`, `unpack_add`, `gate_gather`, `gate_eval`,
    /// `gate_scatter`, `products` (Beaver-style steps).
    pub phases_ms: BTreeMap<&'static str, f64>,
}

#[derive(Default)]
pub(crate) struct Counter {
    ops: BTreeMap<(String, String), OpReport>,
    order: Vec<(String, String)>,
    layer_rounds: BTreeMap<String, (u64, u64)>, // (rounds, last wave counted + 1)
    op_last: BTreeMap<(String, String), u64>,   // last wave counted + 1
}

impl Counter {
    #[allow(clippy::expect_used, reason = "get_mut right after an insert")]
    fn entry(&mut self, layer: &str, op: &str) -> &mut OpReport {
        let k = (layer.to_string(), op.to_string());
        if !self.ops.contains_key(&k) {
            self.order.push(k.clone());
            self.ops.insert(
                k.clone(),
                OpReport {
                    layer: k.0.clone(),
                    op: k.1.clone(),
                    ..Default::default()
                },
            );
        }
        self.ops.get_mut(&k).expect("inserted")
    }

    pub(crate) fn time(&mut self, layer: &str, op: &str, elements: usize, ms: f64) {
        let e = self.entry(layer, op);
        e.elements += elements as u64;
        e.ms += ms;
    }

    pub(crate) fn opened(&mut self, wave: u64, layer: &str, op: &str, sent: u64, recv: u64) {
        let e = self.entry(layer, op);
        e.bytes_sent += sent;
        e.bytes_recv += recv;
        let last = self
            .op_last
            .entry((layer.to_string(), op.to_string()))
            .or_insert(0);
        let count = *last != wave + 1;
        *last = wave + 1;
        let e = self.entry(layer, op);
        if count {
            e.rounds += 1;
        }
        let lr = self.layer_rounds.entry(layer.to_string()).or_insert((0, 0));
        if lr.1 != wave + 1 {
            lr.0 += 1;
            lr.1 = wave + 1;
        }
    }

    #[allow(clippy::expect_used, reason = "last_mut right after a push")]
    pub(crate) fn finish(self, rep: &mut RunReport) {
        let mut layers: Vec<LayerReport> = Vec::new();
        for k in &self.order {
            let o = &self.ops[k];
            let l = match layers.iter_mut().find(|l| l.layer == o.layer) {
                Some(l) => l,
                None => {
                    layers.push(LayerReport {
                        layer: o.layer.clone(),
                        rounds: self.layer_rounds.get(&o.layer).map_or(0, |r| r.0),
                        ..Default::default()
                    });
                    layers.last_mut().expect("pushed")
                }
            };
            l.bytes_sent += o.bytes_sent;
            l.bytes_recv += o.bytes_recv;
            l.ms += o.ms;
        }
        rep.layers = layers;
        rep.ops = self.order.iter().map(|k| self.ops[k].clone()).collect();
    }
}

/// Writes the trace (`--trace FILE`): one JSON object per line, for every round and every FSS
/// batch.
pub struct Tracer<'a> {
    out: Option<&'a mut (dyn Write + Send)>,
}

impl std::fmt::Debug for Tracer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracer(on={})", self.out.is_some())
    }
}

impl<'a> Tracer<'a> {
    /// A tracer writing to `out`, or a no-op.
    pub fn new(out: Option<&'a mut (dyn Write + Send)>) -> Self {
        Tracer { out }
    }

    pub(crate) fn on(&self) -> bool {
        self.out.is_some()
    }

    pub(crate) fn line(&mut self, v: serde_json::Value) {
        if let Some(o) = self.out.as_mut() {
            let _ = writeln!(o, "{v}");
        }
    }
}

//! Exact counts of rounds and bytes per operator and per layer, and the trace writer.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

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
    /// Per layer.
    pub layers: Vec<LayerReport>,
    /// Per operator within each layer.
    pub ops: Vec<OpReport>,
}

#[derive(Default)]
pub(crate) struct Counter {
    ops: BTreeMap<(String, String), OpReport>,
    order: Vec<(String, String)>,
    layer_rounds: BTreeMap<String, (u64, u64)>, // (rounds, last wave counted + 1)
    op_last: BTreeMap<(String, String), u64>,   // last wave counted + 1
}

impl Counter {
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

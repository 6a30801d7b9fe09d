//! What a backend did: cumulative counters ([`crate::Backend::stats`]).
//!
//! A device backend counts, per trait operation, the calls it ran on the device and on the
//! host (by its documented size rule), the time spent in each, and the bytes it moved across
//! the bus; and for DCF evaluation, how many key batches were read in place from an attached
//! key stream and how many had their body uploaded for the call. The CPU backend reports
//! nothing (all of its work is host work, which the caller times itself).
//!
//! Counters only grow; take a snapshot before and after a stretch of work and subtract
//! ([`BackendStats::since`]).

/// Counters of one backend operation (`"gemm"`, `"dcf_eval"`, `"add"`, …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpStats {
    /// The trait operation.
    pub op: &'static str,
    /// Calls that ran on the device.
    pub device_calls: u64,
    /// Calls answered on the host (size rule, degenerate shapes, payloads beyond the kernels).
    pub host_calls: u64,
    /// Wall milliseconds of the device calls (synchronous: copies, kernels and driver work).
    pub device_ms: f64,
    /// Wall milliseconds of the host calls.
    pub host_ms: f64,
    /// Bytes copied host → device by the device calls.
    pub bytes_h2d: u64,
    /// Bytes copied device → host by the device calls.
    pub bytes_d2h: u64,
}

impl OpStats {
    fn minus(&self, o: &OpStats) -> OpStats {
        OpStats {
            op: self.op,
            device_calls: self.device_calls.saturating_sub(o.device_calls),
            host_calls: self.host_calls.saturating_sub(o.host_calls),
            device_ms: (self.device_ms - o.device_ms).max(0.0),
            host_ms: (self.host_ms - o.host_ms).max(0.0),
            bytes_h2d: self.bytes_h2d.saturating_sub(o.bytes_h2d),
            bytes_d2h: self.bytes_d2h.saturating_sub(o.bytes_d2h),
        }
    }

    fn is_zero(&self) -> bool {
        self.device_calls == 0 && self.host_calls == 0
    }
}

/// Cumulative counters of a backend instance (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendStats {
    /// Key streams attached ([`crate::Backend::attach_keys`]) and held on the device.
    pub key_streams_attached: u64,
    /// Bytes of those streams uploaded.
    pub key_bytes_attached: u64,
    /// Milliseconds the uploads took (key load, not online time).
    pub key_upload_ms: f64,
    /// DCF batches evaluated in place from an attached stream (no key bytes moved).
    pub dcf_resident_batches: u64,
    /// DCF batches whose body was uploaded for the call (keys not inside an attached stream).
    pub dcf_uploaded_batches: u64,
    /// Body bytes uploaded for those batches.
    pub dcf_uploaded_bytes: u64,
    /// Wall milliseconds of every call that ran on the device (the sum of the operations'
    /// `device_ms`).
    pub device_ms: f64,
    /// Per operation, in the order first seen.
    pub ops: Vec<OpStats>,
}

impl BackendStats {
    /// The counters of the work done between `earlier` (a snapshot of the same backend) and
    /// `self`; operations with no calls in between are left out.
    pub fn since(&self, earlier: &BackendStats) -> BackendStats {
        let ops = self
            .ops
            .iter()
            .map(|o| match earlier.ops.iter().find(|e| e.op == o.op) {
                Some(e) => o.minus(e),
                None => o.clone(),
            })
            .filter(|o| !o.is_zero())
            .collect();
        BackendStats {
            key_streams_attached: self
                .key_streams_attached
                .saturating_sub(earlier.key_streams_attached),
            key_bytes_attached: self
                .key_bytes_attached
                .saturating_sub(earlier.key_bytes_attached),
            key_upload_ms: (self.key_upload_ms - earlier.key_upload_ms).max(0.0),
            dcf_resident_batches: self
                .dcf_resident_batches
                .saturating_sub(earlier.dcf_resident_batches),
            dcf_uploaded_batches: self
                .dcf_uploaded_batches
                .saturating_sub(earlier.dcf_uploaded_batches),
            dcf_uploaded_bytes: self
                .dcf_uploaded_bytes
                .saturating_sub(earlier.dcf_uploaded_bytes),
            device_ms: (self.device_ms - earlier.device_ms).max(0.0),
            ops,
        }
    }

    /// The entry of `op`, created on first use.
    pub fn op_mut(&mut self, op: &'static str) -> &mut OpStats {
        let i = match self.ops.iter().position(|o| o.op == op) {
            Some(i) => i,
            None => {
                self.ops.push(OpStats {
                    op,
                    ..Default::default()
                });
                self.ops.len() - 1
            }
        };
        &mut self.ops[i]
    }

    /// Count one device call of `op` that took `ms` and moved the given bytes.
    pub fn device_call(&mut self, op: &'static str, ms: f64, h2d: u64, d2h: u64) {
        self.device_ms += ms;
        let o = self.op_mut(op);
        o.device_calls += 1;
        o.device_ms += ms;
        o.bytes_h2d += h2d;
        o.bytes_d2h += d2h;
    }

    /// Count one host call of `op` that took `ms`.
    pub fn host_call(&mut self, op: &'static str, ms: f64) {
        let o = self.op_mut(op);
        o.host_calls += 1;
        o.host_ms += ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_and_drops_idle_ops() {
        let mut a = BackendStats::default();
        a.device_call("gemm", 2.0, 100, 50);
        a.host_call("add", 0.5);
        let before = a.clone();
        a.device_call("gemm", 3.0, 10, 5);
        a.device_call("dcf_eval", 1.0, 8, 8);
        a.dcf_resident_batches += 2;
        let d = a.since(&before);
        assert_eq!(d.device_ms, 4.0);
        assert_eq!(d.dcf_resident_batches, 2);
        assert_eq!(d.ops.len(), 2, "add had no call in between: {d:?}");
        let g = d.ops.iter().find(|o| o.op == "gemm").unwrap();
        assert_eq!(
            (g.device_calls, g.device_ms, g.bytes_h2d, g.bytes_d2h),
            (1, 3.0, 10, 5)
        );
        let f = d.ops.iter().find(|o| o.op == "dcf_eval").unwrap();
        assert_eq!((f.device_calls, f.bytes_h2d), (1, 8));
        assert_eq!(a.since(&a), BackendStats::default());
    }
}

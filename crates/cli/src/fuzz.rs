//! Entry points for the cargo-fuzz targets in the repository's `fuzz/` folder (hidden; not
//! an API). A panic is a finding. Besides this crate's own files (share files, manifests),
//! the key stream and the compiler's spec format are driven from here, through their public
//! APIs, since this crate depends on both.

use suf_backend::CpuBackend;
use suf_compiler::{run_direct, Component, GateSpec, Wrap};
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_runtime::dealer::{run_dealer, DealerWeights};
use suf_runtime::ir::Builder;
use suf_runtime::keystream::{DealerStreams, PartyStream};

/// Share and vector files: a file the parser accepts re-encodes to exactly its bytes, and
/// its exact size is what [`crate::files::encoded_len`] predicts.
pub fn vector_file(data: &[u8]) {
    if let Ok(m) = crate::files::parse(data) {
        // Canonical up to the checksum (which fuzzing builds do not verify).
        let again = crate::files::encode(&m);
        assert_eq!(again.len(), data.len());
        assert_eq!(again[..again.len() - 8], data[..data.len() - 8]);
        let len = crate::files::encoded_len(m.iter().map(|(k, v)| (k.as_str(), v.len())));
        assert_eq!(len, data.len() as u64);
    }
}

/// Session manifests: an accepted manifest passes its own checks and survives a JSON round
/// trip.
pub fn manifest(data: &[u8]) {
    if let Ok(s) = crate::session::parse(data) {
        assert!(s.validate().is_ok());
        if s.keygen_ms.is_finite() {
            let again = serde_json::to_vec(&s).unwrap_or_default();
            assert!(crate::session::parse(&again).is_ok());
        }
    }
}

/// Key streams: `PartyStream::from_bytes`, then the consumption a Party run makes, driven by
/// a script at the front of the input:
///
/// `k` (one byte; k mod 17 operations) | k × (op u8, count u16 LE) | the stream's bytes
///
/// ops (mod 4): take_arith(count), take_bool(count), take_blob, finish. Whatever the bytes,
/// every call returns a value or an error, and accepted shares are in range.
pub fn keystream(data: &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let ops = usize::from(k % 17);
    if rest.len() < 3 * ops {
        return;
    }
    let (script, stream) = rest.split_at(3 * ops);
    let Ok(mut s) = PartyStream::from_bytes(stream.to_vec()) else {
        return;
    };
    let id = *s.id();
    assert!(id.party <= 1 && (1..=64).contains(&id.bits));
    assert!(s.check(id.party, &id.program_fp, id.bits).is_ok());
    for op in script.chunks_exact(3) {
        let count = usize::from(u16::from_le_bytes([op[1], op[2]]));
        let r = match op[0] % 4 {
            0 => s.take_arith(count).map(|v| {
                assert_eq!(v.len(), count);
                assert!(id.bits == 64 || v.iter().all(|&x| x >> id.bits == 0));
            }),
            1 => s.take_bool(count).map(|v| {
                assert_eq!(v.len(), count);
                assert!(v.iter().all(|&x| x <= 1));
            }),
            2 => s.take_blob().map(|_| ()),
            _ => s.finish(),
        };
        if r.is_err() {
            break;
        }
    }
}

/// Largest total number of pieces of a spec run through the protocol in [`gate_spec`] (key
/// generation cost).
const MAX_PIECES: usize = 48;

/// The compiler's spec format: `n` = 8 + (byte 0 mod 57), then a [`GateSpec`] as JSON. A spec
/// that validates is evaluated in the clear; a small one is also run as the two-party
/// protocol (dealer, both parties, reconstruction), which must equal the clear evaluation on
/// every output bit the spec promises ([`GateSpec::valid_bits`]). Specs with a `Free`-wrap
/// floor are exact only under their input guarantee and skip the protocol check.
pub fn gate_spec(data: &[u8]) {
    let Some((&b, json)) = data.split_first() else {
        return;
    };
    let n = 8 + u32::from(b % 57);
    let Ok(spec) = serde_json::from_slice::<GateSpec>(json) else {
        return;
    };
    if spec.validate(n).is_err() {
        return;
    }
    let mask = |bits: u32| {
        if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        }
    };
    let xs: Vec<u64> = [0u64, 1, u64::MAX, u64::MAX / 2, 0x9e37_79b9_7f4a_7c15]
        .iter()
        .map(|x| x & mask(n))
        .collect();
    let plain = spec.eval_batch(n, &xs);
    assert_eq!(plain.len(), spec.outputs * xs.len());
    let pieces: usize = spec
        .parts
        .iter()
        .map(|p| match &p.comp {
            Component::Poly(q) => q.intervals(),
            _ => 2,
        })
        .sum();
    let guaranteed = spec
        .parts
        .iter()
        .any(|p| matches!(&p.comp, Component::Floor(f) if f.wrap == Wrap::Free));
    if pieces > MAX_PIECES || guaranteed {
        return;
    }
    let mut rng = Csprng::from_seed([7; 16]);
    let out = match run_direct(&spec, n, &xs, &CpuBackend::new(), &mut rng) {
        Ok((out, _, _)) => out,
        Err(e) => panic!("a valid spec failed in the protocol: {e}"),
    };
    for o in 0..spec.outputs {
        let m = mask(spec.valid_bits(n, o));
        for e in 0..xs.len() {
            let i = o * xs.len() + e;
            assert_eq!(out[i] & m, plain[i] & m, "output {o}, x = {}", xs[e]);
        }
    }
}

/// Two key streams (party 0, party 1) of a small program (x·x, then a truncation), each
/// behind the script that consumes it as a Party run does.
fn keystream_samples() -> Vec<Vec<u8>> {
    let Ok(fp) = FixedPoint::new(50, 12) else {
        return Vec::new();
    };
    let mut g = Builder::new(fp);
    // x·x, then the models' exact ARS (`suf_compiler::gates::ars`).
    let built = (|| -> anyhow::Result<()> {
        let x = g.input("x", &[4])?;
        let y = g.mul(x, x)?;
        let z = suf_compiler::gates::ars(&mut g, y, 12)?;
        g.output(z)?;
        Ok(())
    })();
    if built.is_err() {
        return Vec::new();
    }
    let prog = g.finish();
    let Ok((ds, sinks)) = DealerStreams::to_memory(
        prog.width(),
        Csprng::from_seed([3; 16]),
        [9; 16],
        prog.fingerprint(),
    ) else {
        return Vec::new();
    };
    if run_dealer(&prog, &CpuBackend::new(), ds, &DealerWeights::new()).is_err() {
        return Vec::new();
    }
    // Party 0 reads the masks of both Mul operands, the Beaver correlation, the gate's mask,
    // the gate's key, then the end; party 1 derives its shares from its seed.
    let script: &[(u8, u16)] = &[(0, 4), (0, 4), (0, 4), (0, 4), (2, 0), (3, 0)];
    sinks
        .iter()
        .map(|sink| {
            let mut v = vec![script.len() as u8];
            for (op, c) in script {
                v.push(*op);
                v.extend(c.to_le_bytes());
            }
            v.extend(sink.take());
            v
        })
        .collect()
}

/// Specs of the gate library, each behind its ring-width byte.
fn spec_samples() -> Vec<Vec<u8>> {
    use suf_compiler::gates;
    let mut specs = vec![
        (50, gates::relu_spec(50)),
        (50, gates::floor_spec(50, 0, 12, 0, Wrap::Dcf, "ars")),
        (37, gates::floor_spec(37, 5, 3, 1, Wrap::Drop, "tr")),
    ];
    if let Ok(s) = gates::smooth_specs(gates::Smooth::Gelu, 50, 12, false) {
        specs.push((50, s.gate1.clone()));
        specs.push((50, s.select.clone()));
    }
    if let Ok(r) = gates::recip_specs(50, 12, 128) {
        specs.push((50, r.gate1.clone()));
    }
    specs
        .into_iter()
        .filter_map(|(n, s)| {
            let mut b = vec![(n - 8) as u8];
            b.extend(serde_json::to_vec(&s).ok()?);
            Some(b)
        })
        .collect()
}

/// Seed inputs per target (`share_file`, `manifest`, `keystream`, `gate_spec`), for the
/// fuzz corpus.
pub fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut m = crate::files::Named::new();
    m.insert("x".into(), vec![1, 2, u64::MAX]);
    m.insert("out0".into(), vec![]);
    let manifest = br#"{"program":"bert-tiny","seq":8,"bits":50,"frac":12,"model_seed":7,"program_fp":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","key_bytes":[10,20],"keygen_ms":1.5,"rounds":85}"#;
    let mut v = vec![
        ("share_file", crate::files::encode(&m)),
        ("share_file", crate::files::encode(&crate::files::Named::new())),
        ("manifest", manifest.to_vec()),
        ("manifest", br#"{"program":"toy","bits":50,"frac":12,"model_seed":7,"program_fp":"","key_bytes":[0,0],"keygen_ms":0,"rounds":4}"#.to_vec()),
    ];
    v.extend(keystream_samples().into_iter().map(|s| ("keystream", s)));
    v.extend(spec_samples().into_iter().map(|s| ("gate_spec", s)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_accepted() {
        let all = samples();
        assert_eq!(all.iter().filter(|s| s.0 == "keystream").count(), 2);
        assert!(all.iter().filter(|s| s.0 == "gate_spec").count() >= 5);
        for (t, s) in all {
            match t {
                "share_file" => {
                    assert!(crate::files::parse(&s).is_ok());
                    vector_file(&s);
                }
                "manifest" => {
                    assert!(crate::session::parse(&s).is_ok());
                    manifest(&s);
                }
                "keystream" => {
                    // The stream is whole: a Party run's consumption ends at its end marker.
                    let ops = usize::from(s[0]);
                    let mut ps = PartyStream::from_bytes(s[1 + 3 * ops..].to_vec()).unwrap();
                    for _ in 0..4 {
                        ps.take_arith(4).unwrap();
                    }
                    ps.take_blob().unwrap();
                    ps.finish().unwrap();
                    keystream(&s);
                }
                _ => {
                    let spec: GateSpec = serde_json::from_slice(&s[1..]).unwrap();
                    spec.validate(8 + u32::from(s[0])).unwrap();
                    gate_spec(&s);
                }
            }
        }
    }
}

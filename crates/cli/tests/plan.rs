//! `suf plan` against real two-party runs on small models of every decoder/encoder family,
//! public and private: the plan (built from the first block and repeated, as the command does
//! for every model) equals, byte for byte and round for round, what the dealer and both parties
//! do — rounds, bytes sent and received per party (per layer and per operator too), the key
//! stream file sizes per party, and the AES calls counted in each party's backend (and
//! `suf_compiler::program_aes`). Then the command itself, against `suf bench model`.

#[allow(dead_code)]
#[path = "../src/plan_cmd.rs"]
mod plan_cmd;

use std::collections::BTreeMap;
use std::process::Command;

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_models::config::zoo;
use suf_models::{ModelConfig, Weights};
use suf_nn::layers::Mode;
use suf_runtime::dealer::run_dealer;
use suf_runtime::harness::{run_two_party_on, Link};
use suf_runtime::keystream::DealerStreams;
use suf_runtime::plan::{AesCounter, Plan};

/// A small model of a family: bert-tiny itself (2 blocks), or a gpt2- / llama-shaped one.
fn shaped(name: &str) -> ModelConfig {
    let mut c = zoo(name).unwrap();
    match name {
        "bert-tiny" => {}
        "gpt2" => {
            c.layers = 2;
            c.hidden = 32;
            c.heads = 2;
            c.kv_heads = 2;
            c.head_dim = 16;
            c.ffn = 64;
            c.vocab = 300;
            c.max_pos = 64;
        }
        _ => {
            // Llama with grouped-query attention.
            c.layers = 3;
            c.hidden = 32;
            c.heads = 4;
            c.kv_heads = 2;
            c.head_dim = 8;
            c.ffn = 48;
            c.vocab = 200;
        }
    }
    c.validate().unwrap();
    c
}

fn check(name: &str, mode: Mode, seq: usize, batch: usize) {
    let cfg = shaped(name);
    let w = Weights::synthetic(3);
    let fp = FixedPoint::new(cfg.ring_bits, cfg.frac_bits).unwrap();
    let mp = plan_cmd::plan_model(&cfg, &w, mode, seq, batch, cfg.layers, false).unwrap();
    assert_eq!(mp.built_blocks, 1);
    let plan = &mp.plan;
    // Building every block gives the same plan.
    let all = plan_cmd::plan_model(&cfg, &w, mode, seq, batch, cfg.layers, true).unwrap();
    assert_eq!(all.built_blocks, cfg.layers);
    assert_eq!(
        serde_json::to_value(plan).unwrap(),
        serde_json::to_value(&all.plan).unwrap(),
        "{name} {mode:?}: repeated block vs every block built"
    );
    // A real run of the whole program.
    let built =
        suf_nn::model::build_batch(&cfg, &w, fp, mode, seq, batch, Some(cfg.layers)).unwrap();
    let seqs: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            (0..seq)
                .map(|i| ((i * 7 + 3 + b) % cfg.vocab) as u32)
                .collect()
        })
        .collect();
    let mut x = BTreeMap::new();
    x.insert(
        "x".to_string(),
        suf_nn::model::client_input_batch(&cfg, &w, fp, &seqs).unwrap(),
    );
    let cpu = CpuBackend::new();
    let (c0, c1) = (AesCounter::new(&cpu), AesCounter::new(&cpu));
    let mut rng = Csprng::for_tests(11);
    let run = run_two_party_on(
        &built.prog,
        &cpu,
        [&c0, &c1],
        &x,
        &built.private,
        Link::Mem,
        &mut rng,
    )
    .unwrap();
    let what = format!("{name} {mode:?} seq {seq} batch {batch}");
    assert!(run.matches_plain(), "{what}");
    assert_eq!(plan.key_bytes, run.deal.key_bytes, "{what}: key bytes");
    assert_eq!(plan.aes, [c0.calls(), c1.calls()], "{what}: AES");
    assert_eq!(
        plan.aes[0],
        suf_compiler::program_aes(&built.prog),
        "{what}: program_aes"
    );
    for (p, rep) in run.reports.iter().enumerate() {
        assert_eq!(plan.rounds, rep.rounds, "{what}: rounds");
        assert_eq!(plan.bytes_sent[p], rep.bytes_sent, "{what}: sent");
        assert_eq!(plan.bytes_recv[p], rep.bytes_recv, "{what}: received");
        let opened: Vec<_> = rep.ops.iter().filter(|o| o.bytes_sent > 0).collect();
        assert_eq!(opened.len(), plan.ops.len(), "{what}: operators");
        for o in opened {
            let q = plan
                .ops
                .iter()
                .find(|q| q.layer == o.layer && q.op == o.op)
                .unwrap();
            assert_eq!(
                (q.rounds, q.bytes_sent, q.bytes_recv),
                (o.rounds, o.bytes_sent, o.bytes_recv),
                "{what}: {}/{}",
                o.layer,
                o.op
            );
        }
        for l in rep.layers.iter().filter(|l| l.bytes_sent > 0) {
            let q = plan.layers.iter().find(|q| q.layer == l.layer).unwrap();
            assert_eq!(
                (q.rounds, q.bytes_sent),
                (l.rounds, l.bytes_sent),
                "{what}: layer {}",
                l.layer
            );
        }
    }
    // The key files a dealer writes for this program.
    let dir = tempfile::tempdir().unwrap();
    let paths = [dir.path().join("p0.keys"), dir.path().join("p1.keys")];
    let ds = DealerStreams::to_files(
        built.prog.width(),
        Csprng::for_tests(12),
        [2; 16],
        built.prog.fingerprint(),
        [&paths[0], &paths[1]],
    )
    .unwrap();
    let (_, rw) = suf_runtime::mask_weights(built.prog.width(), &built.private, &mut rng);
    run_dealer(&built.prog, &cpu, ds, &rw).unwrap();
    for p in 0..2 {
        let len = std::fs::metadata(&paths[p]).unwrap().len();
        assert_eq!(len, plan.key_bytes[p], "{what}: key file of party {p}");
    }
    // The plan of the built program itself is the same.
    assert_eq!(
        serde_json::to_value(Plan::of(&built.prog).unwrap()).unwrap(),
        serde_json::to_value(plan).unwrap()
    );
}

#[test]
fn bert_tiny_equals_real_runs() {
    check("bert-tiny", Mode::Public, 6, 1);
    check("bert-tiny", Mode::Private, 5, 1);
}

#[test]
fn gpt2_shaped_equals_real_runs() {
    check("gpt2", Mode::Public, 7, 1);
    check("gpt2", Mode::Private, 6, 2);
}

#[test]
fn llama_shaped_equals_real_runs() {
    check("llama2-7b", Mode::Public, 6, 1);
    check("llama2-7b", Mode::Private, 5, 1);
}

fn suf(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_suf"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json_of(args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = suf(args);
    assert!(ok, "suf {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// The command's plan of a zoo model equals `suf bench model` (a real run of it), and the
/// bench's per-operator breakdown equals the plan's.
#[test]
fn suf_plan_equals_suf_bench_model() {
    let args = ["--model", "bert-tiny", "--seq", "5", "--mode", "private"];
    let plan = json_of(&[&["plan"], &args[..], &["--json"]].concat());
    let bench = json_of(
        &[
            &["bench", "model"],
            &args[..],
            &["--runs", "1", "--backend", "cpu", "--json"],
        ]
        .concat(),
    );
    assert_eq!(bench["matches_plain"], true);
    assert_eq!(plan["rounds"], bench["rounds"]);
    assert_eq!(plan["key_bytes"], bench["key_bytes_per_party"]);
    assert_eq!(plan["comm_bytes"][0], bench["comm_bytes"]);
    assert_eq!(plan["bytes_sent"][0], bench["bytes_sent"]);
    assert_eq!(plan["aes"], bench["plan"]["aes"]);
    assert_eq!(plan["operators"], bench["plan"]["operators"]);
    let ops = plan["ops"].as_array().unwrap();
    let bops = bench["ops"].as_array().unwrap();
    assert_eq!(ops.len(), bops.len());
    assert!(ops.len() > 10);
    for (a, b) in ops.iter().zip(bops) {
        for k in [
            "layer",
            "op",
            "rounds",
            "bytes_sent",
            "key_bytes",
            "aes",
            "elements",
        ] {
            assert_eq!(a[k], b[k], "{k}");
        }
        assert!(b["ms"].as_f64().unwrap() >= 0.0);
    }
    // Operator shares add up to the whole.
    let kb: u64 = plan["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key_bytes"][0].as_u64().unwrap())
        .sum();
    assert_eq!(
        kb + suf_runtime::keystream::FIXED_BYTES,
        plan["key_bytes"][0].as_u64().unwrap()
    );
    assert_eq!(
        plan["method"],
        "block 0 built, its plan repeated for 2 blocks"
    );
}

#[test]
fn suf_plan_table_and_options() {
    let (ok, out, err) = suf(&["plan", "--model", "bert-tiny", "--seq", "4"]);
    assert!(ok, "{err}");
    for s in [
        "key stream",
        "rounds",
        "per operator",
        "per layer",
        "block1.ffn",
    ] {
        assert!(out.contains(s), "missing {s:?} in\n{out}");
    }
    // --layers and --batch change the plan as they change the program.
    let one = json_of(&[
        "plan",
        "--model",
        "bert-tiny",
        "--seq",
        "4",
        "--layers",
        "1",
        "--json",
    ]);
    let two = json_of(&["plan", "--model", "bert-tiny", "--seq", "4", "--json"]);
    let b2 = json_of(&[
        "plan",
        "--model",
        "bert-tiny",
        "--seq",
        "4",
        "--batch",
        "2",
        "--json",
    ]);
    assert_eq!(one["blocks"], 1);
    assert_eq!(one["method"], "every block built");
    assert!(one["rounds"].as_u64() < two["rounds"].as_u64());
    assert_eq!(b2["rounds"], two["rounds"]);
    assert!(b2["key_bytes"][0].as_u64() > two["key_bytes"][0].as_u64());
}

#[test]
fn suf_plan_refuses_bad_arguments() {
    for (args, says) in [
        (vec!["--model", "bert-tiny", "--seq", "0"], "--seq"),
        (
            vec!["--model", "bert-tiny", "--seq", "4", "--mode", "secret"],
            "--mode",
        ),
        (
            vec!["--model", "bert-tiny", "--seq", "4", "--batch", "0"],
            "--batch",
        ),
        (
            vec!["--model", "bert-tiny", "--seq", "4", "--layers", "0"],
            "--layers",
        ),
        (vec!["--model", "bert-tiny", "--seq", "513"], "at most 512"),
        (
            vec!["--model", "no-such-model", "--seq", "4"],
            "no-such-model",
        ),
    ] {
        let (ok, _, err) = suf(&[&["plan"], &args[..]].concat());
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A real model (skipped with a note when minilm-l6 is not cached; CI fetches it): the
/// command's plan equals `suf bench model` on its first two blocks.
#[test]
fn suf_plan_of_a_real_model_equals_its_bench() {
    let dir = suf_models::fetch::default_cache_dir();
    if suf_models::fetch::cached("minilm-l6", &dir).is_none() {
        eprintln!("skipping: minilm-l6 is not cached (suf models fetch minilm-l6)");
        return;
    }
    let common = ["--model", "minilm-l6", "--layers", "2", "--mode", "private"];
    let bench = json_of(
        &[
            &["bench", "model"],
            &common[..],
            &["--seq", "16", "--runs", "1", "--backend", "cpu", "--json"],
        ]
        .concat(),
    );
    // The bench's sentence tokenizes to `seq` tokens.
    let seq = bench["seq"].as_u64().unwrap().to_string();
    let plan = json_of(&[&["plan"], &common[..], &["--seq", &seq, "--json"]].concat());
    assert_eq!(bench["matches_plain"], true);
    assert_eq!(plan["rounds"], bench["rounds"]);
    assert_eq!(plan["key_bytes"], bench["key_bytes_per_party"]);
    assert_eq!(plan["bytes_sent"][0], bench["bytes_sent"]);
    assert_eq!(plan["aes"], bench["plan"]["aes"]);
}

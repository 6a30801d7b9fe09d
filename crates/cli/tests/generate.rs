//! `suf run --max-new-tokens`: secure greedy generation streams one line per token, agrees
//! with the fixed-point reference, and refuses encoders and a zero budget.

use std::process::Command;

fn suf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suf"))
}

#[test]
fn generates_streams_and_matches_plain() {
    // One block of the synthetic GPT-2 shape: the full vocabulary goes through the argmax.
    let o = suf()
        .args([
            "run",
            "--model",
            "gpt2",
            "--text",
            "hello",
            "--seq",
            "3",
            "--layers",
            "1",
            "--max-new-tokens",
            "2",
            "--backend",
            "cpu",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The per-token lines go to stderr under --json, one per token, as produced.
    assert_eq!(
        err.lines().filter(|l| l.starts_with("token ")).count(),
        2,
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["matches_plain"], true, "{v}");
    assert_eq!(v["generated"].as_array().unwrap().len(), 2);
    assert_eq!(v["tokens"][1]["ctx_len"], 4);
    assert_eq!(v["tokens"][0]["rounds"], v["tokens"][1]["rounds"]);
    assert!(v["tokens"][1]["comm_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn refuses_encoders_and_zero_tokens() {
    for (model, n, want) in [
        ("bert-tiny", "2", "needs a decoder"),
        ("gpt2", "0", "at least 1"),
    ] {
        let o = suf()
            .args([
                "run",
                "--model",
                model,
                "--text",
                "hi",
                "--seq",
                "3",
                "--max-new-tokens",
                n,
                "--backend",
                "cpu",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{model}: {err}");
    }
}

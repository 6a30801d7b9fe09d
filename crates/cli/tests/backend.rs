//! `--backend`: every command that runs inference takes it; `cuda` without a GPU fails with a
//! clear message (and before any key file is touched); `auto` falls back to the CPU.

use std::process::Command;

fn suf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suf"))
}

/// Every inference command, with `--backend cuda`.
fn commands(dir: &str) -> Vec<Vec<&str>> {
    vec![
        vec!["run", "--model", "bert-tiny", "--text", "hi", "--seq", "4"],
        vec!["bench", "model", "--model", "bert-tiny", "--seq", "4"],
        vec!["demo"],
        vec!["eval", "sentiment", "--limit", "1"],
        vec!["run-toy"],
        vec![
            "serve",
            "--party",
            "0",
            "--dir",
            dir,
            "--listen",
            "127.0.0.1:9",
        ],
    ]
}

#[test]
fn backend_cuda_without_a_gpu_fails_clearly() {
    if suf_cuda::cuda_available() {
        println!("SKIP: a GPU is usable here; the no-GPU error path is not reachable");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for cmd in commands(d) {
        let out = suf()
            .args(&cmd)
            .args(["--backend", "cuda"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd:?} succeeded without a GPU");
        assert!(
            err.contains("--backend cuda")
                && err.contains("libcuda")
                && err.contains("--backend cpu"),
            "{cmd:?}: unclear error: {err}"
        );
        assert!(out.stdout.is_empty(), "{cmd:?} printed a result");
    }
    // The backend is checked before the session: serve touched nothing in the directory.
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
}

#[test]
fn unknown_backend_is_refused_by_every_inference_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for cmd in commands(d) {
        let out = suf()
            .args(&cmd)
            .args(["--backend", "tpu"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unknown backend `tpu` (auto, cpu or cuda)"),
            "{cmd:?}: {err}"
        );
    }
}

#[test]
fn backend_auto_reports_what_it_picked() {
    let out = suf()
        .args(["run-toy", "--json", "--backend", "auto"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = if suf_cuda::cuda_available() {
        "cuda"
    } else {
        "cpu"
    };
    assert_eq!(v["backend"], want);
    assert_eq!(v["matches_plain"], true);
    let cpu = suf()
        .args(["run-toy", "--json", "--backend", "cpu"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&cpu.stdout).unwrap();
    assert_eq!(v["backend"], "cpu");
}

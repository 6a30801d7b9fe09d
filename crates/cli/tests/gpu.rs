//! `--gpu N[,M]` (one CUDA device per party): the argument's plumbing, checked where no GPU
//! is needed. Malformed lists are usage errors; a device with the CPU backend is refused; a
//! device that does not exist (or no GPU at all) is a clear error before any key is made.

use std::process::Command;

fn suf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suf"))
}

fn bench(extra: &[&str]) -> std::process::Output {
    suf()
        .args(["bench", "model", "--model", "bert-tiny", "--seq", "4"])
        .args(["--layers", "1", "--runs", "1", "--json"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn malformed_gpu_lists_are_usage_errors() {
    for bad in ["x", "0,1,2", "-1", ""] {
        let arg = format!("--gpu={bad}");
        let out = bench(&["--backend", "cuda", &arg]);
        assert_eq!(out.status.code(), Some(2), "--gpu {bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--gpu"), "--gpu {bad:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_gpu_with_the_cpu_backend_is_refused() {
    for procs in ["1", "2"] {
        let out = bench(&["--backend", "cpu", "--gpu", "0", "--processes", procs]);
        assert!(!out.status.success(), "--processes {procs}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--gpu 0 selects a CUDA device, but --backend is cpu"),
            "--processes {procs}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    // serve refuses it before touching the session directory.
    let dir = tempfile::tempdir().unwrap();
    let out = suf()
        .args(["serve", "--party", "1", "--dir"])
        .arg(dir.path())
        .args([
            "--connect",
            "127.0.0.1:9",
            "--backend",
            "cpu",
            "--gpu",
            "0,1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--gpu 1 selects a CUDA device"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_gpu_that_does_not_exist_is_an_error() {
    // Party 1's device out of range (with a GPU), or no GPU at all: both before any key.
    for procs in ["1", "2"] {
        let out = bench(&["--backend", "cuda", "--gpu", "0,4096", "--processes", procs]);
        assert!(!out.status.success(), "--processes {procs}");
        let err = String::from_utf8_lossy(&out.stderr);
        if suf_cuda::cuda_available() {
            assert!(
                err.contains("no CUDA device with ordinal 4096"),
                "--processes {procs}: {err}"
            );
        } else {
            assert!(
                err.contains("--backend cuda") && err.contains("libcuda"),
                "--processes {procs}: {err}"
            );
        }
        assert!(out.stdout.is_empty());
    }
}

//! Dealer + two party processes + client over loopback TCP, and the refusal to reuse keys.

use std::process::{Command, Stdio};

fn suf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suf"))
}

/// Spawn `suf serve` for `party` on session `dir`: party 0 listens on `addr`, party 1
/// connects to it; `extra` arguments are appended; stdout and stderr are captured.
fn spawn_serve(party: &str, dir: &str, addr: &str, extra: &[&str]) -> std::process::Child {
    let flag = if party == "0" {
        "--listen"
    } else {
        "--connect"
    };
    suf()
        .args(["serve", "--party", party, "--dir", dir, flag, addr])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn four_roles_as_processes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = suf()
        .args(["keygen", "--program", "toy", "--out", d])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["rounds"], 4);
    assert!(s["key_bytes"][1].as_u64().unwrap() < s["key_bytes"][0].as_u64().unwrap());
    let st = suf().args(["share", "--dir", d]).status().unwrap();
    assert!(st.success());
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = |party: &str| spawn_serve(party, d, &addr, &["--json", "--timeout", "20"]);
    let p0 = serve("0");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let p1 = serve("1");
    let o0 = p0.wait_with_output().unwrap();
    let o1 = p1.wait_with_output().unwrap();
    assert!(
        o0.status.success(),
        "{}",
        String::from_utf8_lossy(&o0.stderr)
    );
    assert!(
        o1.status.success(),
        "{}",
        String::from_utf8_lossy(&o1.stderr)
    );
    let r0: serde_json::Value = serde_json::from_slice(&o0.stdout).unwrap();
    assert_eq!(r0["rounds"], 4);
    assert!(r0["bytes_sent"].as_u64().unwrap() > 0);
    let rec = suf()
        .args(["reconstruct", "--dir", d, "--json"])
        .output()
        .unwrap();
    assert!(
        rec.status.success(),
        "{}",
        String::from_utf8_lossy(&rec.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&rec.stdout).unwrap();
    assert_eq!(v["matches_plain"], true);

    // A second run over the same key file is refused, with a message saying why.
    let again = suf()
        .args([
            "serve",
            "--party",
            "0",
            "--dir",
            d,
            "--listen",
            &addr,
            "--timeout",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already used"), "{err}");
}

#[test]
fn parties_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let certs = dir.path().join("certs");
    let c = certs.to_str().unwrap();
    assert!(suf()
        .args(["certs", "--out", c])
        .status()
        .unwrap()
        .success());
    assert!(suf()
        .args(["keygen", "--out", d])
        .output()
        .unwrap()
        .status
        .success());
    assert!(suf()
        .args(["share", "--dir", d])
        .status()
        .unwrap()
        .success());
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = |party: &str| {
        let t = format!("{c}/p{party}");
        spawn_serve(party, d, &addr, &["--tls", &t, "--timeout", "20"])
    };
    let p0 = serve("0");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let p1 = serve("1");
    let (o0, o1) = (
        p0.wait_with_output().unwrap(),
        p1.wait_with_output().unwrap(),
    );
    assert!(
        o0.status.success(),
        "{}",
        String::from_utf8_lossy(&o0.stderr)
    );
    assert!(
        o1.status.success(),
        "{}",
        String::from_utf8_lossy(&o1.stderr)
    );
    let rec = suf()
        .args(["reconstruct", "--dir", d, "--json"])
        .output()
        .unwrap();
    assert!(
        rec.status.success(),
        "{}",
        String::from_utf8_lossy(&rec.stderr)
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = suf()
        .args([
            "keygen",
            "--program",
            "nope",
            "--out",
            "/nonexistent-suf-dir/x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown program"));
    let dir = tempfile::tempdir().unwrap();
    let out = suf()
        .args([
            "serve",
            "--party",
            "0",
            "--dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("suf keygen"));
}

#[test]
fn four_processes_with_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = suf()
        .args(["keygen", "--program", "bert-tiny", "--seq", "6", "--out", d])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = |party: &str| spawn_serve(party, d, &addr, &["--timeout", "60"]);
    let client = suf()
        .args([
            "infer",
            "--dir",
            d,
            "--text",
            "any text",
            "--timeout",
            "120",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let p0 = serve("0");
    // The servers wait for the client's input shares before they start.
    let p1 = serve("1");
    let c = client.wait_with_output().unwrap();
    let (o0, o1) = (
        p0.wait_with_output().unwrap(),
        p1.wait_with_output().unwrap(),
    );
    assert!(
        o0.status.success(),
        "{}",
        String::from_utf8_lossy(&o0.stderr)
    );
    assert!(
        o1.status.success(),
        "{}",
        String::from_utf8_lossy(&o1.stderr)
    );
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let v: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    assert_eq!(v["matches_plain"], true);
    // The finished run's output shares are still there: a new `infer` refuses to show them as
    // the result of another text.
    let stale = suf()
        .args([
            "infer",
            "--dir",
            d,
            "--text",
            "other text",
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!stale.status.success());
    let e = String::from_utf8_lossy(&stale.stderr);
    assert!(e.contains("from an earlier run"), "{e}");
}

fn fails_with(args: &[&str], needle: &str) {
    let out = suf().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn cli_error_paths() {
    // Unknown model; missing weights (empty cache).
    fails_with(
        &["run", "--model", "nosuch", "--text", "hi"],
        "unknown name",
    );
    let empty = tempfile::tempdir().unwrap();
    let e = empty.path().to_str().unwrap();
    fails_with(
        &["run", "--model", "minilm-l6", "--text", "hi", "--cache", e],
        "suf models fetch minilm-l6",
    );
    // An unknown --backend is a usage error (exit 2): tests/backend.rs.
    // A session: key file of the other party, port in use, peer unreachable, reuse.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(suf()
        .args(["keygen", "--program", "bert-tiny", "--seq", "4", "--out", d])
        .output()
        .unwrap()
        .status
        .success());
    assert!(suf()
        .args(["share", "--dir", d, "--text", "x"])
        .status()
        .unwrap()
        .success());
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    fails_with(
        &[
            "serve",
            "--party",
            "0",
            "--dir",
            d,
            "--listen",
            &busy_addr,
            "--timeout",
            "2",
        ],
        "port in use",
    );
    let closed = format!("127.0.0.1:{}", free_port());
    fails_with(
        &[
            "serve",
            "--party",
            "1",
            "--dir",
            d,
            "--connect",
            &closed,
            "--timeout",
            "1",
        ],
        "cannot reach party 0",
    );
    // Party 1's key file was consumed by that attempt: a second run is refused.
    fails_with(
        &[
            "serve",
            "--party",
            "1",
            "--dir",
            d,
            "--connect",
            &closed,
            "--timeout",
            "1",
        ],
        "already used",
    );
    // Party 0's key file swapped for party 1's.
    std::fs::copy(dir.path().join("p1.keys"), dir.path().join("p0.keys")).unwrap();
    let free = format!("127.0.0.1:{}", free_port());
    fails_with(
        &[
            "serve",
            "--party",
            "0",
            "--dir",
            d,
            "--listen",
            &free,
            "--timeout",
            "2",
        ],
        "belongs to party 1",
    );
    // Refused without being consumed: no marker was written for the wrong file.
    assert!(!dir.path().join("p0.keys.used").exists());
}

//! Hostile or mistaken command lines and files: each is a clear error (exit 1, or clap's 2),
//! never a panic, and costs nothing it should not (no partial session, no consumed keys, no
//! lost result).

use std::path::Path;
use std::process::{Command, Output};

fn suf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suf"))
}

fn run(args: &[&str]) -> Output {
    suf().args(args).output().unwrap()
}

/// The command fails with `code` and `needle` in its stderr, without a panic.
fn fails(args: &[&str], code: i32, needle: &str) -> Output {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    out
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn huge_timeouts_are_refused_by_the_argument_parser() {
    // Used to panic with "overflow when adding duration to instant".
    for cmd in [
        &[
            "serve",
            "--party",
            "0",
            "--dir",
            "x",
            "--listen",
            "127.0.0.1:1",
        ][..],
        &["infer", "--dir", "x"][..],
    ] {
        let mut a = cmd.to_vec();
        a.extend(["--timeout", "18446744073709551615"]);
        fails(&a, 2, "not in 1..=604800");
        let mut a = cmd.to_vec();
        a.extend(["--timeout", "0"]);
        fails(&a, 2, "not in 1..=604800");
    }
}

#[test]
fn keygen_checks_before_writing_anything() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("s");
    let o = out.to_str().unwrap();
    // Longer than the model's position table: refused before any key is made.
    fails(
        &[
            "keygen",
            "--program",
            "bert-tiny",
            "--seq",
            "600",
            "--out",
            o,
        ],
        1,
        "512 positions",
    );
    assert!(
        entries(root.path()).is_empty(),
        "{:?}",
        entries(root.path())
    );
    // f ≥ n names the fractional bits.
    fails(
        &["keygen", "--bits", "20", "--frac", "30", "--out", o],
        1,
        "30 fractional bits do not fit a 20-bit ring",
    );
    assert!(
        entries(root.path()).is_empty(),
        "{:?}",
        entries(root.path())
    );
    // A folder that already holds a session is never overwritten.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("session.json"), b"{}").unwrap();
    fails(&["keygen", "--out", o], 1, "never overwrites");
    assert_eq!(entries(&out), ["session.json"]);
    // A folder with other files is fine, and the session appears whole.
    std::fs::remove_file(out.join("session.json")).unwrap();
    std::fs::create_dir(out.join("certs")).unwrap();
    let ok = run(&["keygen", "--out", o]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        entries(&out),
        [
            "certs",
            "p0.keys",
            "p1.keys",
            "session.json",
            "weights.masked"
        ]
    );
    assert_eq!(entries(root.path()), ["s"], "no temporary folder is left");
    // A new folder is one rename.
    let ok = run(&["keygen", "--out", root.path().join("t").to_str().unwrap()]);
    assert!(ok.status.success());
    assert_eq!(entries(root.path()), ["s", "t"]);
}

/// Run `script` as root of a private mount namespace (unprivileged user namespaces), where
/// `$T` is a fresh 40 MiB tmpfs. `None` where the system does not allow that.
fn in_small_tmpfs(script: &str) -> Option<Output> {
    let probe = Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=40m tmpfs /mnt"])
        .output()
        .ok()?;
    if !probe.status.success() {
        eprintln!("skipped: no unprivileged mount namespace with tmpfs here");
        return None;
    }
    let full = format!("T=/mnt; mount -t tmpfs -o size=40m tmpfs $T && {script}");
    Some(
        Command::new("unshare")
            .args(["-rm", "sh", "-c", &full])
            .env("SUF", env!("CARGO_BIN_EXE_suf"))
            .output()
            .unwrap(),
    )
}

#[test]
fn a_full_disk_is_refused_up_front_and_a_failed_write_leaves_nothing() {
    // bert-tiny at 8 tokens takes about 69 MB: its probes (17 and 34 MB, one at a time) fit a 40 MiB disk, the session does not.
    let Some(out) = in_small_tmpfs(
        r#"$SUF keygen --program bert-tiny --seq 8 --out $T/s; echo "rc=$?"; ls -A $T | wc -l"#,
    ) else {
        return;
    };
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(se.contains("are free on the filesystem"), "{se}");
    assert!(so.contains("rc=1"), "{so} {se}");
    assert!(so.trim_end().ends_with('0'), "files left behind: {so}");
    // Without the check, the write itself fails (no space left): nothing is left either.
    let Some(out) = in_small_tmpfs(
        r#"SUF_KEYGEN_SKIP_SPACE_CHECK=1 $SUF keygen --program bert-tiny --seq 8 --out $T/s; echo "rc=$?"; ls -A $T | wc -l"#,
    ) else {
        return;
    };
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(se.to_lowercase().contains("no space left"), "{se}");
    assert!(!se.contains("panicked"), "{se}");
    assert!(so.contains("rc=1"), "{so} {se}");
    assert!(so.trim_end().ends_with('0'), "files left behind: {so}");
}

#[test]
fn the_pool_dealer_refuses_streams_the_disk_cannot_hold() {
    // A bert-tiny stream at 8 tokens takes about 23 MB per party: two of them in a pool on
    // a 40 MiB disk do not fit.
    let Some(out) = in_small_tmpfs(
        r#"$SUF dealer --program bert-tiny --seq 8 --count 2 --pool0 $T/p0 --pool1 $T/p1; echo "rc=$?"; find $T -name '*.keys' | wc -l"#,
    ) else {
        return;
    };
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(se.contains("are free there"), "{se}");
    assert!(so.contains("rc=1"), "{so} {se}");
    assert!(so.trim_end().ends_with('0'), "key files written: {so}");
}

#[test]
fn json_out_is_checked_before_the_run_and_a_failed_write_keeps_the_result() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no/such/dir/r.json");
    fails(
        &["gates", "--json-out", missing.to_str().unwrap()],
        1,
        "is not writable",
    );
    fails(
        &["gates", "--json-out", d.path().to_str().unwrap()],
        1,
        "it is a directory",
    );
    // Writable when checked, failing when written (a full device): the result is on stdout.
    if Path::new("/dev/full").exists() {
        let out = fails(
            &["gates", "--json", "--json-out", "/dev/full"],
            1,
            "the result was printed on stdout above",
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v.is_object() || v.is_array(), "{v}");
    }
    // A writable path gets the same JSON as stdout.
    let p = d.path().join("r.json");
    let out = run(&["gates", "--json", "--json-out", p.to_str().unwrap()]);
    assert!(out.status.success());
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn hostile_session_files_are_refused_before_keys_are_consumed() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path().join("s");
    let sd = s.to_str().unwrap();
    assert!(run(&["keygen", "--out", sd]).status.success());
    // An input share of the wrong size (here: 1 GiB announced, 30 bytes present).
    let mut b = b"SUFV".to_vec();
    b.extend(1u16.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    b.push(b'x');
    b.extend((1u64 << 27).to_le_bytes());
    b.extend([0u8; 8]);
    std::fs::write(s.join("input.share0"), &b).unwrap();
    fails(
        &[
            "serve",
            "--party",
            "0",
            "--dir",
            sd,
            "--listen",
            "127.0.0.1:0",
            "--timeout",
            "2",
        ],
        1,
        "input.share0",
    );
    assert!(!s.join("p0.keys.used").exists(), "keys consumed");
    // A manifest with an absurd sequence length or ring.
    let manifest = std::fs::read_to_string(s.join("session.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    v["seq"] = serde_json::json!(u64::MAX);
    std::fs::write(s.join("session.json"), v.to_string()).unwrap();
    fails(&["share", "--dir", sd], 1, "session.json");
    v["seq"] = serde_json::json!(0);
    v["bits"] = serde_json::json!(200);
    std::fs::write(s.join("session.json"), v.to_string()).unwrap();
    fails(&["share", "--dir", sd], 1, "ring bits 200");
    // A manifest of 100 MB is not read.
    std::fs::write(s.join("session.json"), vec![b' '; 100 << 20]).unwrap();
    fails(&["share", "--dir", sd], 1, "more than the");
}

#[test]
fn a_plaintext_link_off_loopback_suggests_an_option_that_exists() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path().join("s");
    let sd = s.to_str().unwrap();
    assert!(run(&["keygen", "--out", sd]).status.success());
    assert!(run(&["share", "--dir", sd]).status.success());
    // 192.0.2.1 (TEST-NET-1) is not on loopback: refused before connecting.
    let out = fails(
        &[
            "serve",
            "--party",
            "1",
            "--dir",
            sd,
            "--connect",
            "192.0.2.1:7000",
            "--timeout",
            "2",
        ],
        1,
        "--tls CERTS",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must use TLS"), "{err}");
    assert!(!err.contains("allow_plaintext"), "{err}");
}

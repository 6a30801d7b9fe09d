//! The parties' link of `suf bench model --processes 2`: TLS with fresh identities
//! (`--peer-tls`), and the checks on `--netns` / `--peer-ip`. The runs in two network
//! namespaces need root: `bench/netem.sh` (not in CI).

use std::process::{Command, Output};

fn bench(extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suf"))
        .args(["bench", "model", "--model", "bert-tiny", "--seq", "4"])
        .args(["--layers", "1", "--backend", "cpu", "--runs", "1", "--json"])
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn two_processes_over_tls_on_loopback() {
    let o = bench(&["--processes", "2", "--peer-tls", "--mode", "private"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["matches_plain"], true, "{v}");
    assert_eq!(v["peer_link"]["tls"], true);
    // By default each party process gets half the cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(v["peer_link"]["party_threads"], (cores / 2).max(1));
    for p in v["per_party"].as_array().unwrap() {
        assert_eq!(p["threads"], (cores / 2).max(1), "{p}");
    }
    assert_eq!(v["peer_link"]["peer_ip"], "127.0.0.1");
    assert!(v["peer_link"]["netns"].is_null());
    assert!(v["rounds"].as_u64().unwrap() > 0);
    // The TLS handshake is before the online clock: it is in connect_ms.
    for p in v["per_party"].as_array().unwrap() {
        assert!(p["connect_ms"].as_f64().unwrap() > 0.0, "{p}");
    }
}

#[test]
fn bad_link_flags_are_refused_before_any_run() {
    let o = bench(&["--processes", "2", "--peer-ip", "10.77.0.1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("add --peer-tls"), "{}", stderr(&o));
    let o = bench(&["--processes", "2", "--netns", "a,b", "--peer-tls"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("give --peer-ip"), "{}", stderr(&o));
    let o = bench(&[
        "--processes",
        "2",
        "--netns",
        "a;b",
        "--peer-ip",
        "10.7.0.1",
        "--peer-tls",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("two namespace names"), "{}", stderr(&o));
    let o = bench(&["--peer-tls"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--processes 2"), "{}", stderr(&o));
    let o = bench(&["--party-threads", "2"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--processes 2"), "{}", stderr(&o));
    let o = bench(&["--processes", "2", "--party-threads", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("1 to 4096"), "{}", stderr(&o));
}

/// `--party-threads N` gives each party process a pool of N workers (SIGMA's script runs each
/// party with 8), reported per party.
#[test]
fn party_threads_reach_the_party_processes() {
    let o = bench(&["--processes", "2", "--party-threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["matches_plain"], true, "{v}");
    assert_eq!(v["peer_link"]["party_threads"], 1);
    let parties = v["per_party"].as_array().unwrap();
    assert_eq!(parties.len(), 2);
    for p in parties {
        assert_eq!(p["threads"], 1, "{p}");
    }
}

#[test]
fn a_namespace_that_does_not_exist_fails_the_bench() {
    // Without root, without iproute2 or without these namespaces, party 0 cannot start: the
    // bench says so and exits non-zero instead of waiting.
    let o = bench(&[
        "--processes",
        "2",
        "--netns",
        "suf-absent-ns-0,suf-absent-ns-1",
        "--peer-ip",
        "10.77.0.1",
        "--peer-tls",
        "--timeout",
        "20",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("party 0"), "{}", stderr(&o));
}

//! `suf bench model --processes 2`: the dealer in this process, each party a process of its
//! own over loopback TCP, on the CPU backend and the tiniest model.

use std::process::Command;

fn suf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suf"))
}

fn bench(mode: &str, runs: &str) -> serde_json::Value {
    let out = suf()
        .args([
            "bench",
            "model",
            "--model",
            "bert-tiny",
            "--seq",
            "4",
            "--layers",
            "1",
        ])
        .args([
            "--processes",
            "2",
            "--backend",
            "cpu",
            "--runs",
            runs,
            "--mode",
            mode,
        ])
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_party_processes_on_the_cpu() {
    for (mode, runs) in [("public", 2usize), ("private", 1)] {
        let v = bench(mode, &runs.to_string());
        assert_eq!(v["processes"], 2);
        assert_eq!(v["backend"], "cpu");
        assert_eq!(v["matches_plain"], true, "{mode}");
        assert!(v["dealer"].as_str().unwrap().contains("Unix socket"), "{v}");
        assert_eq!(v["online_ms_runs"].as_array().unwrap().len(), runs);
        let online = v["online_ms"].as_f64().unwrap();
        let load = v["key_load_ms"].as_f64().unwrap();
        assert!(online > 0.0 && load > 0.0, "{v}");
        // Per run, the slower party's load + online is at least each part's maximum.
        let col = |k: &str| -> Vec<f64> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (o, l, s) = (
            col("online_ms_runs"),
            col("key_load_ms_runs"),
            col("online_incl_key_load_ms_runs"),
        );
        for i in 0..runs {
            assert!(s[i] >= o[i] && s[i] >= l[i] && s[i] > 0.0, "{v}");
        }
        assert!(v["rounds"].as_u64().unwrap() > 0);
        assert!(v["comm_bytes"].as_u64().unwrap() > 0);
        assert!(v["key_bytes"].as_u64().unwrap() > 0);
        let pp = v["per_party"].as_array().unwrap();
        assert_eq!(pp.len(), 2);
        for (j, p) in pp.iter().enumerate() {
            assert_eq!(p["party"], j);
            assert_eq!(p["rounds"], v["rounds"]);
            assert!(p["online_ms"].as_f64().unwrap() > 0.0);
            assert!(p["key_read_ms"].as_f64().unwrap() > 0.0);
        }
        // Both parties exchange the same number of bytes.
        assert_eq!(pp[0]["bytes_sent"], pp[1]["bytes_recv"]);
        assert!(!v["layers"].as_array().unwrap().is_empty());
        // The dealer's report: its phases, the split by work kind and the kinds of the last
        // run (bytes of both parties, never more than the streams hold).
        for k in ["deal", "masks", "write"] {
            assert!(
                v["keygen_phases_ms"][k].as_f64().unwrap() >= 0.0,
                "{k}: {v}"
            );
        }
        for k in ["dcf", "dpf", "gate_other", "products"] {
            assert!(v["keygen_split_ms"][k].as_f64().unwrap() >= 0.0, "{k}: {v}");
        }
        assert!(v["keygen_split_ms"]["dcf"].as_f64().unwrap() > 0.0, "{v}");
        let kinds = v["keygen_kinds_last"].as_array().unwrap();
        assert!(!kinds.is_empty());
        let kind_bytes: u64 = kinds.iter().map(|k| k["bytes"].as_u64().unwrap()).sum();
        let stream_bytes: u64 = v["key_bytes_per_party"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert!(
            kind_bytes > 0 && kind_bytes <= stream_bytes,
            "{kind_bytes} {stream_bytes}"
        );
    }
}

#[test]
fn processes_must_be_one_or_two() {
    let out = suf()
        .args(["bench", "model", "--model", "bert-tiny", "--seq", "4"])
        .args(["--processes", "3", "--backend", "cpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--processes must be 1"));
}

#[test]
fn a_party_process_that_fails_is_reported() {
    // The hidden party subcommand refuses a bad party id with its error as a JSON line.
    let dir = tempfile::tempdir().unwrap();
    let out = suf()
        .args(["bench", "party", "--party", "2", "--dir"])
        .arg(dir.path())
        .args([
            "--model",
            "bert-tiny",
            "--seq",
            "4",
            "--batch",
            "1",
            "--mode",
            "public",
        ])
        .args([
            "--backend",
            "cpu",
            "--timeout",
            "5",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("--party must be 0 or 1"));
}

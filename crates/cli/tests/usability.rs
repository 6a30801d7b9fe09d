//! Usability: local checkpoint folders (a tiny checkpoint of every architecture, written here,
//! run secure == fixed-point reference), output for people by default and exactly one JSON
//! object with `--json`, logs with `-v`, `suf models list`, `suf report` on `suf run` output,
//! and the offline demo.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use suf_models::local::tiny;

fn suf(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_suf"));
    c.env("SUF_CACHE", cache)
        .env("SUF_OFFLINE", "1")
        .env_remove("RUST_LOG");
    c
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// stdout must be exactly one JSON object on one line.
fn one_object(stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stdout}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert!(v.is_object(), "{v}");
    v
}

#[test]
fn every_architecture_from_a_folder_runs_secure_equal_to_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    for arch in tiny::ARCHS {
        let dir = tmp.path().join(arch);
        tiny::write(&dir, arch, 11).unwrap();
        let out = suf(tmp.path())
            .args(["run", "--model", dir.to_str().unwrap()])
            .args([
                "--text",
                "I loved every minute of it!",
                "--backend",
                "cpu",
                "--json",
            ])
            .output()
            .unwrap();
        let v = one_object(&ok(&out, arch));
        assert_eq!(v["matches_plain"], true, "{arch}: {v}");
        assert_eq!(v["max_abs_diff_secure_plain"], 0, "{arch}");
        assert_eq!(v["model"], dir.to_str().unwrap());
        let n = v["tokens"].as_array().unwrap().len();
        assert!(n >= 7, "{arch}: {n} tokens");
        // Fixed point stays close to the float model on these small weights.
        let c = v["cosine_secure_float"].as_f64().unwrap();
        assert!(c > 0.99, "{arch}: cosine {c}");
        assert!(v["rounds"].as_u64().unwrap() > 0 && v["key_bytes"].as_u64().unwrap() > 0);
        assert!(
            !v["layers"].as_array().unwrap().is_empty(),
            "{arch}: no layers"
        );
        let decoder = ["gpt2", "llama", "mistral"].contains(arch);
        assert_eq!(v["secure"].get("top5").is_some(), decoder, "{arch}: {v}");
        if decoder {
            assert_eq!(v["secure"]["top5"], v["plain"]["top5"], "{arch}");
        } else {
            assert_eq!(v["secure"]["pooled"].as_array().unwrap().len(), 16);
        }
    }
}

#[test]
fn human_output_by_default_json_with_the_flag_and_report_accepts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gpt2");
    tiny::write(&dir, "gpt2", 5).unwrap();
    let args = [
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--text",
        "the movie was",
        "--backend",
        "cpu",
    ];
    let json_file = tmp.path().join("run.json");
    let v = one_object(&ok(
        &suf(tmp.path())
            .args(args)
            .arg("--json")
            .arg("--json-out")
            .arg(&json_file)
            .output()
            .unwrap(),
        "run --json",
    ));
    let top1 = v["secure"]["top5"][0]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let human = ok(&suf(tmp.path()).args(args).output().unwrap(), "run");
    assert!(serde_json::from_str::<Value>(&human).is_err(), "{human}");
    assert!(human.contains("next token, top 5"), "{human}");
    assert!(
        human.contains(&format!("{top1:?}")),
        "{top1} not in {human}"
    );
    assert!(human.contains("fixed-point reference") && human.contains("bit for bit"));
    assert!(human.contains(" MB") || human.contains(" kB"), "{human}");
    // `suf report` draws the run's per-layer breakdown.
    let png = tmp.path().join("run.png");
    ok(
        &suf(tmp.path())
            .arg("report")
            .arg(&json_file)
            .arg("--out")
            .arg(&png)
            .output()
            .unwrap(),
        "report",
    );
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    // An encoder shows its embedding beside the references.
    let dir = tmp.path().join("bert");
    tiny::write(&dir, "bert", 5).unwrap();
    let human = ok(
        &suf(tmp.path())
            .args([
                "run",
                "--model",
                dir.to_str().unwrap(),
                "--text",
                "good film",
            ])
            .args(["--backend", "cpu"])
            .output()
            .unwrap(),
        "run bert",
    );
    assert!(
        human.contains("secure") && human.contains("embedding"),
        "{human}"
    );
    assert!(human.contains("cosine(secure, float)"), "{human}");
}

#[test]
fn logs_with_v_and_quiet_without() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama");
    tiny::write(&dir, "llama", 5).unwrap();
    let run = |extra: &[&str]| {
        suf(tmp.path())
            .args(["run", "--model", dir.to_str().unwrap(), "--text", "a film"])
            .args(["--backend", "cpu", "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let quiet = run(&[]);
    ok(&quiet, "quiet");
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let v = run(&["-v"]);
    let e = String::from_utf8_lossy(&v.stderr);
    assert!(e.contains("dealer") && e.contains("party done"), "{e}");
    assert!(!e.contains("round (party 0)"), "debug at -v: {e}");
    one_object(&ok(&v, "-v"));
    let vv = run(&["-vv"]);
    let e = String::from_utf8_lossy(&vv.stderr);
    assert!(
        e.contains("round (party 0)") && e.contains("layer (party 0)"),
        "{e}"
    );
}

#[test]
fn unsupported_checkpoints_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama");
    tiny::write(&dir, "llama", 5).unwrap();
    let p = dir.join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    c["rope_scaling"] = serde_json::json!({"type": "dynamic", "factor": 2.0});
    std::fs::write(&p, c.to_string()).unwrap();
    let o = suf(tmp.path())
        .args(["run", "--model", dir.to_str().unwrap(), "--text", "a"])
        .args(["--backend", "cpu"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("rope_scaling") && e.contains("unsupported"),
        "{e}"
    );
    assert!(o.stdout.is_empty());
    // A name that is neither a model nor a folder says what is accepted.
    let o = suf(tmp.path())
        .args(["run", "--model", "nope", "--text", "a", "--backend", "cpu"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("config.json"), "{e}");
}

#[test]
fn models_list_and_help() {
    let tmp = tempfile::tempdir().unwrap();
    let v = one_object(&ok(
        &suf(tmp.path())
            .args(["models", "list", "--json"])
            .output()
            .unwrap(),
        "list",
    ));
    assert_eq!(v["pinned"].as_array().unwrap().len(), 4);
    assert!(v["pinned"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["cached"] == false));
    assert_eq!(v["zoo"][0]["name"], "bert-tiny");
    assert_eq!(v["zoo"][0]["hidden"], 128);
    let h = ok(
        &suf(tmp.path()).args(["models", "list"]).output().unwrap(),
        "list",
    );
    assert!(h.contains("minilm-l6") && h.contains("llama2-7b") && h.contains("--model PATH"));
    // `suf models tiny` writes a loadable folder; an unknown architecture is an error.
    let d = tmp.path().join("t");
    ok(
        &suf(tmp.path())
            .args(["models", "tiny", "mistral", "--out", d.to_str().unwrap()])
            .output()
            .unwrap(),
        "tiny",
    );
    assert!(d.join("model.safetensors.index.json").is_file());
    suf_models::local::load_dir(&d).unwrap();
    let o = suf(tmp.path())
        .args(["models", "tiny", "t5", "--out", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("t5"));
    let help = ok(&suf(tmp.path()).arg("--help").output().unwrap(), "help");
    for internal in ["\n  run-toy ", "\n  reconstruct ", "\n  share "] {
        assert!(!help.contains(internal), "{internal} in help: {help}");
    }
    assert!(help.contains("demo") && help.contains("run"));
}

#[test]
fn offline_demo_falls_back_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let h = ok(
        &suf(tmp.path())
            .args(["demo", "--backend", "cpu"])
            .output()
            .unwrap(),
        "demo",
    );
    assert!(
        h.contains("synthetic bert-tiny") && h.contains("SUF_OFFLINE"),
        "{h}"
    );
    assert!(h.contains("bit for bit") && h.contains("rounds"), "{h}");
    let v = one_object(&ok(
        &suf(tmp.path())
            .args(["demo", "--backend", "cpu", "--json"])
            .output()
            .unwrap(),
        "demo --json",
    ));
    assert_eq!(v["matches_plain"], true);
    assert_eq!(v["model"], "bert-tiny");
}

//! The fuzz corpus in the ordinary test suite (stable Rust, no libFuzzer): every file kept in
//! `fuzz/seeds/TARGET/` — the seeds, and the input of every crash the fuzzers found, named
//! `crash-…` — is run through the target's entry point, so a past finding cannot come back
//! unnoticed. `cargo test -p suf-cli --test fuzz_corpus -- --ignored` rewrites the seeds from
//! the crates' `fuzz::samples()`.

use std::path::{Path, PathBuf};

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
}

/// The entry point of each cargo-fuzz target (the same calls as `fuzz/fuzz_targets/*.rs`).
fn entry(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "frames" => suf_net::fuzz::frames,
        "handshake" => suf_net::fuzz::hello,
        "safetensors" => suf_models::fuzz::safetensors,
        "gguf" => suf_models::fuzz::gguf,
        "tokenizer" => suf_models::fuzz::tokenizer,
        "model_config" => suf_models::fuzz::config,
        "share_file" => suf_cli::fuzz::vector_file,
        "manifest" => suf_cli::fuzz::manifest,
        "keystream" => suf_cli::fuzz::keystream,
        "gate_spec" => suf_cli::fuzz::gate_spec,
        _ => return None,
    })
}

const TARGETS: [&str; 10] = [
    "frames",
    "handshake",
    "safetensors",
    "gguf",
    "tokenizer",
    "model_config",
    "share_file",
    "manifest",
    "keystream",
    "gate_spec",
];

#[test]
fn every_kept_input_runs_clean() {
    let mut files = 0;
    for t in TARGETS {
        let f = entry(t).unwrap();
        let dir = seeds_dir().join(t);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            f(&std::fs::read(&p).unwrap());
            n += 1;
        }
        assert!(n > 0, "no seeds for {t}");
        files += n;
    }
    // Every target folder is one of the known targets.
    for e in std::fs::read_dir(seeds_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(entry(&name).is_some(), "unknown target folder {name}");
    }
    assert!(files >= 20, "{files}");
}

#[test]
#[ignore = "rewrites fuzz/seeds from the crates' samples"]
fn write_seeds() {
    let mut all = suf_net::fuzz::samples();
    all.extend(suf_models::fuzz::samples());
    all.extend(suf_cli::fuzz::samples());
    for t in TARGETS {
        let dir = seeds_dir().join(t);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    for (i, (t, bytes)) in all.iter().enumerate() {
        assert!(entry(t).is_some(), "{t}");
        std::fs::write(seeds_dir().join(t).join(format!("seed-{i:02}")), bytes).unwrap();
    }
}

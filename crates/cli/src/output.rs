//! Output for people: every command's JSON object rendered as text (tables, the prediction or
//! the top-5 tokens, costs with units). `--json` prints the object itself instead.
//!
//! One vocabulary throughout: **secure** is the two-party protocol's output, the
//! **fixed-point reference** is the plaintext interpreter of the same fixed-point program
//! (the secure output must equal it bit for bit; JSON key `plain`), and **float** is the f64
//! forward pass of the original model.

use std::fmt::Write as _;

use serde_json::Value;

/// Bytes with a unit (B, kB, MB, GB; powers of 1000).
pub fn bytes(b: f64) -> String {
    let (v, u) = if b >= 1e9 {
        (b / 1e9, "GB")
    } else if b >= 1e6 {
        (b / 1e6, "MB")
    } else if b >= 1e3 {
        (b / 1e3, "kB")
    } else {
        return format!("{b:.0} B");
    };
    format!("{v:.2} {u}")
}

/// Milliseconds with a unit (ms below 10 s, else s).
pub fn ms(t: f64) -> String {
    if t >= 10_000.0 {
        format!("{:.1} s", t / 1e3)
    } else if t >= 100.0 {
        format!("{t:.0} ms")
    } else {
        format!("{t:.2} ms")
    }
}

fn f(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A left-aligned text table; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (ri, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
        if ri == 0 && rows.len() > 1 {
            let rule: Vec<String> = w.iter().map(|&n| "-".repeat(n)).collect();
            let _ = writeln!(out, "  {}", rule.join("  "));
        }
    }
    out
}

/// Costs of one secure run, one line.
fn costs(v: &Value) -> Option<String> {
    let online = f(v, "online_ms")?;
    let mut parts = vec![format!("online {}", ms(online))];
    if let Some(r) = v.get("rounds").and_then(Value::as_u64) {
        parts.push(format!("{r} rounds"));
    }
    if let Some(c) = f(v, "comm_bytes").or_else(|| f(v, "comm_bytes_per_party")) {
        parts.push(format!("{} sent+received per server", bytes(c)));
    }
    if let Some(k) = f(v, "key_bytes").or_else(|| f(v, "key_bytes_per_party")) {
        parts.push(format!("keys {} per server", bytes(k)));
    }
    if let Some(k) = f(v, "keygen_ms") {
        parts.push(format!("dealer {}", ms(k)));
    }
    Some(parts.join(" · "))
}

fn verdict(v: &Value) -> Option<String> {
    v.get("matches_plain").and_then(Value::as_bool).map(|m| {
        if m {
            "secure == fixed-point reference, bit for bit".to_string()
        } else {
            "MISMATCH: secure differs from the fixed-point reference".to_string()
        }
    })
}

fn sentiment(p: &Value) -> Option<String> {
    let label = p.get("sentiment")?.as_str()?;
    let pp = p.get("p_positive")?.as_f64()?;
    Some(format!("{label} (p(positive) = {pp:.3})"))
}

fn vec_summary(x: &Value) -> String {
    let Some(a) = x.as_array() else {
        return String::new();
    };
    let head: Vec<String> = a
        .iter()
        .take(4)
        .filter_map(Value::as_f64)
        .map(|z| format!("{z:+.4}"))
        .collect();
    let norm = a
        .iter()
        .filter_map(Value::as_f64)
        .map(|z| z * z)
        .sum::<f64>()
        .sqrt();
    format!(
        "[{}, …] ({} values, norm {norm:.4})",
        head.join(", "),
        a.len()
    )
}

/// `suf run` (and the shared part of `suf demo`): the prediction, then the costs.
fn run(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "suf run: {} ({} tokens, {} backend, {} weights)",
        s(v, "model"),
        v.get("seq").and_then(Value::as_u64).unwrap_or(0),
        s(v, "backend"),
        s(v, "mode")
    );
    if let Some(p) = v.get("prediction") {
        let mut rows = vec![vec!["".into(), "sentiment".into()]];
        for (k, label) in [("secure", "secure"), ("float", "float")] {
            if let Some(t) = p.get(k).and_then(sentiment) {
                rows.push(vec![label.into(), t]);
            }
        }
        o.push_str(&table(&rows));
    }
    let top = |k: &str| {
        v.get(k)
            .and_then(|x| x.get("top5"))
            .and_then(Value::as_array)
    };
    if let (Some(a), Some(b), Some(c)) = (top("secure"), top("plain"), top("float")) {
        let _ = writeln!(o, "  next token, top 5:");
        let cell = |e: Option<&Value>| {
            e.map(|e| {
                format!(
                    "{:?} {:.2}",
                    e.get("token").and_then(Value::as_str).unwrap_or(""),
                    e.get("logit").and_then(Value::as_f64).unwrap_or(0.0)
                )
            })
            .unwrap_or_default()
        };
        let mut rows = vec![vec![
            "#".into(),
            "secure".into(),
            "fixed-point reference".into(),
            "float".into(),
        ]];
        for i in 0..5 {
            rows.push(vec![
                (i + 1).to_string(),
                cell(a.get(i)),
                cell(b.get(i)),
                cell(c.get(i)),
            ]);
        }
        o.push_str(&table(&rows));
    } else if v.get("prediction").is_none() {
        let pooled = |k: &str| v.get(k).and_then(|x| x.get("pooled"));
        for (k, label) in [
            ("secure", "secure               "),
            ("plain", "fixed-point reference"),
            ("float", "float                "),
        ] {
            if let Some(p) = pooled(k) {
                let _ = writeln!(o, "  {label} embedding {}", vec_summary(p));
            }
        }
    }
    if let Some(c) = f(v, "cosine_secure_float") {
        let _ = writeln!(o, "  cosine(secure, float) = {c:.6}");
    }
    if let Some(t) = verdict(v) {
        let _ = writeln!(o, "  {t}");
    }
    if let Some(c) = costs(v) {
        let _ = writeln!(o, "  {c}");
    }
    o
}

fn demo(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "SUF demo: a dealer and two servers on loopback TCP, {} on the {} backend",
        s(v, "model"),
        s(v, "backend")
    );
    let _ = writeln!(
        o,
        "  sentence : {:?} ({} tokens)",
        s(v, "input"),
        v.get("tokens").and_then(Value::as_u64).unwrap_or(0)
    );
    match (
        v.get("secure").and_then(sentiment),
        v.get("float").and_then(sentiment),
    ) {
        (Some(a), Some(b)) => {
            let _ = writeln!(o, "  secure   : {a}");
            let _ = writeln!(o, "  float    : {b}   (plaintext model, for comparison)");
        }
        _ => {
            if let Some(n) = v.get("note").and_then(Value::as_str) {
                let _ = writeln!(o, "  note     : {n}");
            }
        }
    }
    if let Some(c) = f(v, "cosine_secure_float") {
        let _ = writeln!(o, "  cosine(secure embedding, float embedding) = {c:.6}");
    }
    if let Some(t) = verdict(v) {
        let _ = writeln!(o, "  {t}");
    }
    if let Some(c) = costs(v) {
        let _ = writeln!(o, "  {c}");
    }
    if let Some(t) = f(v, "total_ms_including_dealer") {
        let _ = writeln!(o, "  total with the dealer: {}", ms(t));
    }
    o
}

fn gates(v: &Value) -> Option<String> {
    let m = v.as_object()?;
    if m.is_empty() || !m.values().all(|g| g.get("max_err_ulp").is_some()) {
        return None;
    }
    let num = |g: &Value, k: &str, d: usize| {
        f(g, k)
            .map(|x| format!("{x:.d$}"))
            .unwrap_or_else(|| "-".into())
    };
    let mut rows = vec![vec![
        "gate".into(),
        "max error (ulp)".into(),
        "key B/elem".into(),
        "comm B/elem".into(),
        "rounds".into(),
        "AES/elem".into(),
        "bit-exact".into(),
    ]];
    for (name, g) in m {
        rows.push(vec![
            name.clone(),
            num(g, "max_err_ulp", 0),
            num(g, "key_bytes_per_elem", 1),
            num(g, "comm_bytes_per_elem", 1),
            num(g, "rounds", 0),
            num(g, "aes_per_elem", 1),
            g.get("bit_exact")
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    Some(format!(
        "gate library (per element, one party)\n{}",
        table(&rows)
    ))
}

fn eval(v: &Value) -> String {
    let pct = |k: &str| {
        f(v, k)
            .map(|x| format!("{:.1} %", 100.0 * x))
            .unwrap_or_default()
    };
    let mut o = format!(
        "sentiment of {} sentences ({}) with {}\n",
        v.get("sentences").and_then(Value::as_u64).unwrap_or(0),
        s(v, "data"),
        s(v, "model")
    );
    o.push_str(&table(&[
        vec!["".into(), "accuracy".into()],
        vec!["secure".into(), pct("secure_accuracy")],
        vec!["float".into(), pct("float_accuracy")],
        vec!["agreement".into(), pct("agreement")],
    ]));
    let _ = writeln!(
        o,
        "  min cosine(secure, float) = {:.6}; {} sentences also run through the two-party protocol (equal to the fixed-point reference)",
        f(v, "min_cosine_secure_float").unwrap_or(0.0),
        v.get("verified_two_party").and_then(Value::as_u64).unwrap_or(0)
    );
    o
}

fn bench(v: &Value) -> String {
    let mut o = format!(
        "bench model: {} seq {} batch {} ({} backend, {} weights), median of {} runs\n",
        s(v, "model"),
        v.get("seq").and_then(Value::as_u64).unwrap_or(0),
        v.get("batch").and_then(Value::as_u64).unwrap_or(1),
        s(v, "backend"),
        s(v, "mode"),
        v.get("online_ms_runs")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0)
    );
    if let Some(c) = costs(v) {
        let _ = writeln!(o, "  {c}");
    }
    if let Some(t) = verdict(v) {
        let _ = writeln!(o, "  {t}");
    }
    o
}

/// Anything else: one `key: value` line per field, long arrays summarised.
fn generic(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return format!("{v}\n");
    };
    let mut rows = Vec::new();
    for (k, x) in m {
        let val = match x {
            Value::String(t) => t.clone(),
            Value::Array(a) if a.len() > 8 => format!("[{} items]", a.len()),
            Value::Object(o) if o.len() > 8 => format!("{{{} fields}}", o.len()),
            Value::Number(_) if k.ends_with("_ms") => ms(x.as_f64().unwrap_or(0.0)),
            Value::Number(_) if k.contains("bytes") => bytes(x.as_f64().unwrap_or(0.0)),
            Value::Number(n) if n.is_f64() => {
                let z = n.as_f64().unwrap_or(0.0);
                if z.abs() >= 100.0 {
                    format!("{z:.0}")
                } else {
                    format!("{z:.4}")
                }
            }
            other => other.to_string(),
        };
        rows.push(vec![format!("{k}:"), val]);
    }
    table(&rows)
}

/// Log a finished local two-party run at its phase boundaries: the dealer and each party at
/// info level (`-v`), every layer and every round with its bytes and times at debug (`-vv`).
pub fn log_run(r: &suf_runtime::harness::LocalRun) {
    tracing::info!(
        key_bytes_p0 = r.deal.key_bytes[0],
        key_bytes_p1 = r.deal.key_bytes[1],
        keygen_ms = r.deal.keygen_ms,
        "dealer: one-time keys made"
    );
    for rep in &r.reports {
        tracing::info!(
            party = rep.party,
            rounds = rep.rounds,
            bytes_sent = rep.bytes_sent,
            bytes_recv = rep.bytes_recv,
            online_ms = rep.online_ms,
            "party done"
        );
    }
    let rep = &r.reports[0];
    for l in &rep.layers {
        tracing::debug!(
            layer = %l.layer,
            ms = l.ms,
            bytes_sent = l.bytes_sent,
            bytes_recv = l.bytes_recv,
            rounds = l.rounds,
            "layer (party 0)"
        );
    }
    for t in &rep.round_times {
        tracing::debug!(
            round = t.round,
            ms = t.ms,
            wait_ms = t.wait_ms,
            bytes_sent = t.bytes_sent,
            bytes_recv = t.bytes_recv,
            "round (party 0)"
        );
    }
}

/// Party 0's trace lines turned into a progress bar over the transformer blocks (the layer
/// labels `block{i}.…` of the rounds' operators).
pub struct BlockProgress {
    pb: indicatif::ProgressBar,
    buf: Vec<u8>,
    blocks: u64,
    at: u64,
}

impl BlockProgress {
    /// A bar over `blocks` blocks (drawn on a terminal only, never with `--json`).
    pub fn new(blocks: usize) -> Self {
        let pb = crate::logging::progress(blocks as u64, "secure run: block");
        BlockProgress {
            pb,
            buf: Vec::new(),
            blocks: blocks as u64,
            at: 0,
        }
    }

    /// Is the bar drawn? (Tracing costs a JSON line per round: only when someone sees it.)
    pub fn visible(&self) -> bool {
        !self.pb.is_hidden()
    }

    /// The block (1-based) a trace line shows the run in, if it names one.
    pub fn block_of(line: &[u8]) -> Option<u64> {
        let v: Value = serde_json::from_slice(line).ok()?;
        v.get("ops")?
            .as_object()?
            .keys()
            .filter_map(|k| {
                let d: String = k
                    .strip_prefix("block")?
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                d.parse::<u64>().ok().map(|n| n + 1)
            })
            .max()
    }

    /// Clear the bar.
    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

impl std::io::Write for BlockProgress {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        while let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            if let Some(n) = Self::block_of(&line) {
                self.at = self.at.max(n).min(self.blocks);
                self.pb.set_position(self.at);
            }
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A local two-party run with a per-block progress bar while it goes on.
pub fn run_with_progress(
    built: &suf_nn::model::Built,
    be: &crate::models_cmd::Backends,
    x: &std::collections::BTreeMap<String, Vec<u64>>,
    blocks: usize,
    rng: &mut suf_core::prg::Csprng,
) -> anyhow::Result<suf_runtime::harness::LocalRun> {
    let mut bp = BlockProgress::new(blocks);
    let visible = bp.visible();
    let r = suf_runtime::harness::run_two_party_observed(
        &built.prog,
        be.main.as_ref(),
        be.party_refs(),
        x,
        &built.private,
        suf_runtime::harness::Link::Tcp,
        rng,
        if visible {
            Some(&mut bp as &mut (dyn std::io::Write + Send))
        } else {
            None
        },
    );
    bp.finish();
    Ok(r?)
}

/// The text a person reads for one command's JSON object.
pub fn human(v: &Value) -> String {
    if v.get("total_ms_including_dealer").is_some() {
        return demo(v);
    }
    if v.get("online_ms_runs").is_some() {
        return bench(v);
    }
    if v.get("secure_accuracy").is_some() {
        return eval(v);
    }
    if v.get("secure").is_some() && v.get("model").is_some() {
        return run(v);
    }
    if let Some(t) = gates(v) {
        return t;
    }
    generic(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn units() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(2_500_000.0), "2.50 MB");
        assert_eq!(bytes(850_000_000.0), "850.00 MB");
        assert_eq!(bytes(1.2e9), "1.20 GB");
        assert_eq!(ms(12.345), "12.35 ms");
        assert_eq!(ms(640.0), "640 ms");
        assert_eq!(ms(64_000.0), "64.0 s");
    }

    #[test]
    fn decoder_run_shows_top5_in_three_columns() {
        let t = |tok: &str| json!({"top5": [{"id": 1, "token": tok, "logit": 2.5}]});
        let v = json!({"model": "m", "seq": 3, "backend": "cpu", "mode": "public",
            "secure": t("Paris"), "plain": t("Paris"), "float": t("Rome"),
            "matches_plain": true, "online_ms": 1500.0, "rounds": 40,
            "comm_bytes": 3_000_000, "key_bytes": 90_000_000, "keygen_ms": 20.0});
        let h = human(&v);
        assert!(
            h.contains("\"Paris\" 2.50") && h.contains("\"Rome\""),
            "{h}"
        );
        assert!(h.contains("fixed-point reference"), "{h}");
        assert!(
            h.contains("1500 ms") && h.contains("3.00 MB") && h.contains("90.00 MB"),
            "{h}"
        );
        assert!(h.contains("bit for bit"), "{h}");
        let v2 = json!({"model": "m", "secure": {"pooled": [1.0, 0.0]}, "matches_plain": false});
        let h = human(&v2);
        assert!(h.contains("MISMATCH") && h.contains("norm 1.0000"), "{h}");
    }

    #[test]
    fn eval_demo_and_bench_read_as_text() {
        let e = json!({"model": "minilm-l6", "data": "imdb", "sentences": 100,
            "secure_accuracy": 0.81, "float_accuracy": 0.8, "agreement": 0.99,
            "min_cosine_secure_float": 0.9999, "verified_two_party": 2});
        let h = human(&e);
        assert!(
            h.contains("81.0 %") && h.contains("80.0 %") && h.contains("99.0 %"),
            "{h}"
        );
        let d = json!({"model": "minilm-l6", "backend": "cpu", "input": "hi", "tokens": 3,
            "secure": {"sentiment": "positive", "p_positive": 0.97},
            "float": {"sentiment": "positive", "p_positive": 0.96},
            "matches_plain": true, "online_ms": 50.0, "total_ms_including_dealer": 90.0});
        let h = human(&d);
        assert!(
            h.contains("positive (p(positive) = 0.970)") && h.contains("0.960"),
            "{h}"
        );
        assert!(h.contains("\"hi\"") && h.contains("90.00 ms"), "{h}");
        let b = json!({"model": "bert-tiny", "seq": 4, "batch": 1, "backend": "cpu",
            "mode": "public", "online_ms_runs": [1.0, 2.0, 3.0], "online_ms": 2.0,
            "matches_plain": true});
        let h = human(&b);
        assert!(
            h.contains("median of 3 runs") && h.contains("online 2.00 ms"),
            "{h}"
        );
    }

    #[test]
    fn trace_lines_give_the_block() {
        let l = br#"{"round": 3, "party": 0, "ops": {"block0.ffn/gelu": 8, "block2.attention/softmax": 9}}"#;
        assert_eq!(BlockProgress::block_of(l), Some(3));
        assert_eq!(
            BlockProgress::block_of(br#"{"round": 1, "ops": {"input/x": 1}}"#),
            None
        );
        assert_eq!(BlockProgress::block_of(br#"{"fss": "gelu"}"#), None);
        assert_eq!(BlockProgress::block_of(b"not json"), None);
        use std::io::Write;
        let mut bp = BlockProgress::new(4);
        bp.write_all(b"{\"ops\": {\"block1.ffn/x\": 1}}\n{\"ops\": {\"blo")
            .unwrap();
        assert_eq!(bp.at, 2);
        bp.write_all(b"ck9.ffn/x\": 1}}\n").unwrap();
        assert_eq!(bp.at, 4, "capped at the block count");
    }

    #[test]
    fn gates_become_a_table() {
        let v = json!({"gelu": {"max_err_ulp": 3, "key_bytes_per_elem": 100.0, "rounds": 2,
                        "comm_bytes_per_elem": 25.0, "aes_per_elem": 9.0, "bit_exact": true}});
        let h = human(&v);
        assert!(
            h.contains("gelu") && h.contains("max error (ulp)") && h.contains("100.0"),
            "{h}"
        );
        let g = generic(&json!({"a_ms": 5.0, "key_bytes": 2000, "x_per_s": 12345.678, "r": 0.5}));
        assert!(g.contains("2.00 kB") && g.contains("5.00 ms"), "{g}");
        assert!(g.contains("12346") && g.contains("0.5000"), "{g}");
    }
}

//! `suf report`: turns the JSON that a bench or run command printed (`--json`) or wrote
//! (`--json-out`) into a PNG chart.
//!
//! * One run: its per-layer breakdown, three panels side by side (online time, communication,
//!   rounds), one horizontal bar per layer, layers top to bottom in program order.
//! * Several runs: a comparison of their totals (online time, communication, rounds, and key size
//!   when every run reports it), one bar per run.
//!
//! The input schema is in `docs/JSON.md`. Everything here is a pure function of its inputs except
//! [`render`], which reads the files and writes the PNG; bad input is an error, never a panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, Glyph, PxScale, ScaleFont};
use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};
use serde_json::{Map, Value};

/// Width of the chart in pixels.
pub const WIDTH: u32 = 1200;
/// Height of the chart in pixels, grown when there are many bars so their labels stay legible.
pub const HEIGHT: u32 = 800;

const FONT: &str = "sans-serif";
const HEADER_PX: u32 = 70;
const MIN_ROW_PX: u32 = 15;
const MAX_BARS: usize = 2000;
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 120, 20);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const GREY: RGBColor = RGBColor(90, 90, 90);

/// One layer's costs, as the runtime reports them (`LayerReport`).
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Layer label.
    pub name: String,
    /// Local compute time (ms).
    pub ms: f64,
    /// Bytes sent plus bytes received.
    pub comm_bytes: f64,
    /// Rounds in which the layer opened values.
    pub rounds: f64,
}

/// One run read from a JSON file. Totals are optional here; what a chart needs is checked when
/// the chart is made ([`chart_for`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Where the run came from (file name, with `[i]` for an element of an array).
    pub source: String,
    /// `model`.
    pub model: Option<String>,
    /// `seq`.
    pub seq: Option<f64>,
    /// `backend`.
    pub backend: Option<String>,
    /// `mode`.
    pub mode: Option<String>,
    /// `online_ms`.
    pub online_ms: Option<f64>,
    /// `comm_bytes`, or `bytes_sent + bytes_recv`.
    pub comm_bytes: Option<f64>,
    /// `rounds`.
    pub rounds: Option<f64>,
    /// `key_bytes` (the largest entry when it is a per-party array).
    pub key_bytes: Option<f64>,
    /// `layers` (empty when absent).
    pub layers: Vec<Layer>,
}

/// How the values of a panel are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Bytes, in decimal units (kB, MB, GB).
    Bytes,
    /// A plain count.
    Count,
}

/// One panel: one value per bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// Caption above the panel.
    pub caption: String,
    /// Unit of the values.
    pub unit: Unit,
    /// One value per label of the chart.
    pub values: Vec<f64>,
    /// Bar colour.
    pub color: RGBColor,
}

/// What is drawn: a header, the bar labels (shared by all panels) and the panels side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// First header line.
    pub title: String,
    /// Second header line.
    pub subtitle: String,
    /// Bar labels, top to bottom.
    pub labels: Vec<String>,
    /// Panels, left to right.
    pub panels: Vec<Panel>,
}

/// An RGB image, 3 bytes a pixel, row by row.
#[derive(Clone, Debug)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

/// Reads every input, draws one chart (a per-layer breakdown for one run, a comparison for
/// several) and writes it as a PNG to `out`.
pub fn render(inputs: &[PathBuf], out: &Path) -> Result<()> {
    if inputs.is_empty() {
        bail!("no input files: give one run's JSON for a per-layer chart, or several to compare");
    }
    if let Some(ext) = out.extension() {
        if !ext.eq_ignore_ascii_case("png") {
            bail!(
                "only PNG output is supported, but {} ends in .{}",
                out.display(),
                ext.to_string_lossy()
            );
        }
    }
    let mut runs = Vec::new();
    for p in inputs {
        runs.extend(load(p)?);
    }
    let chart = chart_for(&runs)?;
    let png = encode_png(&draw(&chart)?)?;
    std::fs::write(out, png).with_context(|| format!("writing the chart to {}", out.display()))
}

/// Reads one JSON file: one run (an object) or several (an array of objects).
pub fn load(path: &Path) -> Result<Vec<Run>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} (the JSON of a bench or run command)",
            path.display()
        )
    })?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    parse(&text, &name)
}

/// Parses the text of one JSON file; `source` names it in messages and labels.
pub fn parse(text: &str, source: &str) -> Result<Vec<Run>> {
    let v: Value = serde_json::from_str(text).with_context(|| {
        format!("{source} is not valid JSON (expected the one object a `--json` command prints)")
    })?;
    match v {
        Value::Object(m) => Ok(vec![parse_run(&m, source)?]),
        Value::Array(items) => {
            if items.is_empty() {
                bail!("{source}: the array holds no run");
            }
            items
                .iter()
                .enumerate()
                .map(|(i, it)| {
                    let at = format!("{source}[{i}]");
                    match it {
                        Value::Object(m) => parse_run(m, &at),
                        other => bail!("{at}: expected a run (JSON object), found {}", kind(other)),
                    }
                })
                .collect()
        }
        other => bail!(
            "{source}: expected a run (JSON object), found {}",
            kind(&other)
        ),
    }
}

/// The chart for these runs: the per-layer breakdown of one run, or a comparison of several.
pub fn chart_for(runs: &[Run]) -> Result<Chart> {
    match runs {
        [] => bail!("no run to draw"),
        [one] => breakdown(one),
        many => comparison(many),
    }
}

/// One run's per-layer breakdown. Needs a non-empty `layers`.
pub fn breakdown(run: &Run) -> Result<Chart> {
    if run.layers.is_empty() {
        bail!(
            "{}: no per-layer breakdown (`layers` is missing or empty); give several files for a \
             comparison chart instead",
            run.source
        );
    }
    let col = |f: fn(&Layer) -> f64| run.layers.iter().map(f).collect::<Vec<f64>>();
    let sum = |f: fn(&Layer) -> f64| run.layers.iter().map(f).sum::<f64>();
    let mut parts = Vec::new();
    match run.online_ms {
        Some(v) => parts.push(format!("online {}", fmt_value(Unit::Ms, v))),
        None => parts.push(format!(
            "compute {} (sum of layers)",
            fmt_value(Unit::Ms, sum(|l| l.ms))
        )),
    }
    let comm = run.comm_bytes.unwrap_or_else(|| sum(|l| l.comm_bytes));
    parts.push(format!("communication {}", fmt_value(Unit::Bytes, comm)));
    let rounds = run.rounds.unwrap_or_else(|| sum(|l| l.rounds));
    parts.push(format!("{} rounds", fmt_value(Unit::Count, rounds)));
    if let Some(k) = run.key_bytes {
        parts.push(format!("keys {}", fmt_value(Unit::Bytes, k)));
    }
    parts.push(format!("{} layers", run.layers.len()));
    Ok(Chart {
        title: match describe(run) {
            d if d.is_empty() => format!("SUF per-layer costs: {}", run.source),
            d => format!("SUF per-layer costs: {d}"),
        },
        subtitle: format!("{}   [{}]", parts.join(" · "), run.source),
        labels: run.layers.iter().map(|l| l.name.clone()).collect(),
        panels: vec![
            Panel {
                caption: "compute time per layer".into(),
                unit: Unit::Ms,
                values: col(|l| l.ms),
                color: BLUE,
            },
            Panel {
                caption: "communication per layer".into(),
                unit: Unit::Bytes,
                values: col(|l| l.comm_bytes),
                color: ORANGE,
            },
            Panel {
                caption: "rounds per layer".into(),
                unit: Unit::Count,
                values: col(|l| l.rounds),
                color: GREEN,
            },
        ],
    })
}

/// A comparison of several runs' totals. Every run needs `online_ms`, `comm_bytes` (or
/// `bytes_sent` and `bytes_recv`) and `rounds`; key size is shown when every run has `key_bytes`.
pub fn comparison(runs: &[Run]) -> Result<Chart> {
    let need = |r: &Run, v: Option<f64>, what: &str| {
        v.ok_or_else(|| {
            anyhow!(
                "{}: `{what}` is missing; a comparison needs online_ms, comm_bytes (or bytes_sent \
                 and bytes_recv) and rounds in every run",
                r.source
            )
        })
    };
    let mut ms = Vec::new();
    let mut comm = Vec::new();
    let mut rounds = Vec::new();
    for r in runs {
        ms.push(need(r, r.online_ms, "online_ms")?);
        comm.push(need(r, r.comm_bytes, "comm_bytes")?);
        rounds.push(need(r, r.rounds, "rounds")?);
    }
    let mut panels = vec![
        Panel {
            caption: "online time".into(),
            unit: Unit::Ms,
            values: ms,
            color: BLUE,
        },
        Panel {
            caption: "communication per party".into(),
            unit: Unit::Bytes,
            values: comm,
            color: ORANGE,
        },
        Panel {
            caption: "rounds".into(),
            unit: Unit::Count,
            values: rounds,
            color: GREEN,
        },
    ];
    if let Some(keys) = runs
        .iter()
        .map(|r| r.key_bytes)
        .collect::<Option<Vec<f64>>>()
    {
        panels.push(Panel {
            caption: "key size per party".into(),
            unit: Unit::Bytes,
            values: keys,
            color: PURPLE,
        });
    }
    Ok(Chart {
        title: format!("SUF comparison of {} runs", runs.len()),
        subtitle: "one bar per run; shorter is better".into(),
        labels: run_labels(runs),
        panels,
    })
}

/// Labels for runs: model / mode (and seq, backend) when known, else the file name; the file
/// name is added wherever two labels would be the same.
fn run_labels(runs: &[Run]) -> Vec<String> {
    let base: Vec<String> = runs
        .iter()
        .map(|r| {
            let d = describe(r);
            if d.is_empty() {
                r.source.clone()
            } else {
                d
            }
        })
        .collect();
    let mut out: Vec<String> = base
        .iter()
        .zip(runs)
        .map(|(b, r)| {
            if *b != r.source && base.iter().filter(|x| *x == b).count() > 1 {
                format!("{b} ({})", r.source)
            } else {
                b.clone()
            }
        })
        .collect();
    // Still equal (same file given twice): number them.
    for i in 0..out.len() {
        if out[..i].contains(&out[i]) || out[i + 1..].contains(&out[i]) {
            out[i] = format!("{} #{}", out[i], i + 1);
        }
    }
    out
}

fn describe(r: &Run) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = &r.model {
        parts.push(m.clone());
    }
    if let Some(m) = &r.mode {
        parts.push(m.clone());
    }
    if let Some(s) = r.seq {
        parts.push(format!("seq {}", fmt_value(Unit::Count, s)));
    }
    if let Some(b) = &r.backend {
        parts.push(b.clone());
    }
    parts.join(" / ")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn number(v: &Value, key: &str, at: &str) -> Result<f64> {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => bail!("{at}: `{key}` must be a number ≥ 0, found {n}"),
        },
        other => bail!("{at}: `{key}` must be a number, found {}", kind(other)),
    }
}

fn opt_number(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<f64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => number(v, key, at).map(Some),
    }
}

fn opt_string(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("{at}: `{key}` must be a string, found {}", kind(other)),
    }
}

/// `comm_bytes`, else `bytes_sent + bytes_recv` (both needed).
fn comm(m: &Map<String, Value>, at: &str) -> Result<Option<f64>> {
    if let Some(c) = opt_number(m, "comm_bytes", at)? {
        return Ok(Some(c));
    }
    match (
        opt_number(m, "bytes_sent", at)?,
        opt_number(m, "bytes_recv", at)?,
    ) {
        (Some(s), Some(r)) => Ok(Some(s + r)),
        (None, None) => Ok(None),
        (Some(_), None) => bail!("{at}: `bytes_sent` is given but `bytes_recv` is missing"),
        (None, Some(_)) => bail!("{at}: `bytes_recv` is given but `bytes_sent` is missing"),
    }
}

fn parse_run(m: &Map<String, Value>, at: &str) -> Result<Run> {
    let key_bytes = match m.get("key_bytes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let mut best: Option<f64> = None;
            for (i, v) in a.iter().enumerate() {
                let x = number(v, &format!("key_bytes[{i}]"), at)?;
                best = Some(best.map_or(x, |b| b.max(x)));
            }
            best
        }
        Some(v) => Some(number(v, "key_bytes", at)?),
    };
    let layers = match m.get("layers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, l)| parse_layer(l, &format!("{at}: layers[{i}]")))
            .collect::<Result<_>>()?,
        Some(other) => bail!(
            "{at}: `layers` must be an array of layer objects, found {}",
            kind(other)
        ),
    };
    Ok(Run {
        source: at.to_string(),
        model: opt_string(m, "model", at)?,
        seq: opt_number(m, "seq", at)?,
        backend: opt_string(m, "backend", at)?,
        mode: opt_string(m, "mode", at)?,
        online_ms: opt_number(m, "online_ms", at)?,
        comm_bytes: comm(m, at)?,
        rounds: opt_number(m, "rounds", at)?,
        key_bytes,
        layers,
    })
}

fn parse_layer(v: &Value, at: &str) -> Result<Layer> {
    let Value::Object(m) = v else {
        bail!("{at}: expected a layer object, found {}", kind(v));
    };
    let name = match m.get("layer") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => bail!("{at}: `layer` must be a string, found {}", kind(other)),
        None => bail!("{at}: missing field `layer` (the layer's label)"),
    };
    let at = format!("{at} (`{name}`)");
    let ms = match opt_number(m, "ms", &at)? {
        Some(x) => x,
        None => opt_number(m, "online_ms", &at)?
            .ok_or_else(|| anyhow!("{at}: missing field `ms` (or `online_ms`)"))?,
    };
    let comm_bytes = comm(m, &at)?.ok_or_else(|| {
        anyhow!("{at}: missing fields `bytes_sent` and `bytes_recv` (or `comm_bytes`)")
    })?;
    let rounds =
        opt_number(m, "rounds", &at)?.ok_or_else(|| anyhow!("{at}: missing field `rounds`"))?;
    Ok(Layer {
        name,
        ms,
        comm_bytes,
        rounds,
    })
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn sig(v: f64) -> String {
    let a = v.abs();
    trim(if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    })
}

/// A value written with its unit, e.g. `512.3 ms`, `21.68 MB`, `118`.
pub fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Ms => format!("{} ms", sig(v)),
        Unit::Count => {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{v:.0}")
            } else {
                sig(v)
            }
        }
        Unit::Bytes => {
            let a = v.abs();
            let (div, name) = if a >= 1e9 {
                (1e9, "GB")
            } else if a >= 1e6 {
                (1e6, "MB")
            } else if a >= 1e3 {
                (1e3, "kB")
            } else {
                (1.0, "B")
            };
            format!("{} {name}", sig(v / div))
        }
    }
}

/// The embedded chart font (DejaVu Sans), parsed once.
fn font() -> Result<&'static FontRef<'static>> {
    static FONT_REF: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT_REF
        .get_or_init(|| FontRef::try_from_slice(dejavu::sans::regular()).ok())
        .as_ref()
        .ok_or_else(|| anyhow!("the embedded chart font (DejaVu Sans) could not be loaded"))
}

/// The bitmap backend with its text drawn by `ab_glyph` from the embedded font (no system font
/// library), with side bearings and kerning.
struct Canvas<'a> {
    inner: BitMapBackend<'a>,
    font: &'static FontRef<'static>,
}

type CanvasError = DrawingErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;

impl Canvas<'_> {
    /// Glyphs of `text` at `px` pixels, origin at the top left of the line box, and the box's
    /// width and height.
    fn layout(&self, text: &str, px: f64) -> (Vec<Glyph>, f32, f32) {
        let scale = PxScale::from(px.max(1.0) as f32);
        let f = self.font.as_scaled(scale);
        let mut caret = 0f32;
        let mut prev = None;
        let mut glyphs = Vec::with_capacity(text.len());
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                caret += f.kern(p, id);
            }
            glyphs.push(id.with_scale_and_position(scale, point(caret, f.ascent())));
            caret += f.h_advance(id);
            prev = Some(id);
        }
        (glyphs, caret, f.ascent() - f.descent())
    }
}

impl DrawingBackend for Canvas<'_> {
    type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), CanvasError> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), CanvasError> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> Result<(), CanvasError> {
        self.inner.draw_pixel(p, c)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), CanvasError> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        ul: BackendCoord,
        br: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), CanvasError> {
        self.inner.draw_rect(ul, br, style, fill)
    }

    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> Result<(), CanvasError> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let (glyphs, w, h) = self.layout(text, style.size());
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -w / 2.0,
            HPos::Right => -w,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -h / 2.0,
            VPos::Bottom => -h,
        };
        let trans = style.transform();
        let mut pixels = Vec::new();
        for g in glyphs {
            if let Some(og) = self.font.outline_glyph(g) {
                let b = og.px_bounds();
                og.draw(|x, y, cov| {
                    let px = (b.min.x + x as f32 + dx).round() as i32;
                    let py = (b.min.y + y as f32 + dy).round() as i32;
                    pixels.push((trans.transform(px, py), cov));
                });
            }
        }
        for ((x, y), cov) in pixels {
            if cov > 0.0 {
                let c = BackendColor {
                    alpha: color.alpha * f64::from(cov.min(1.0)),
                    rgb: color.rgb,
                };
                self.inner.draw_pixel((pos.0 + x, pos.1 + y), c)?;
            }
        }
        Ok(())
    }

    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> Result<(u32, u32), CanvasError> {
        let (_, w, h) = self.layout(text, style.size());
        Ok((w.ceil() as u32, h.ceil() as u32))
    }
}

type Area<'a> = DrawingArea<Canvas<'a>, plotters::coord::Shift>;

fn derr<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

fn text_width(area: &Area<'_>, s: &str, px: u32) -> Result<u32> {
    let style = (FONT, px).into_text_style(area);
    Ok(area.estimate_text_size(s, &style).map_err(derr)?.0)
}

/// Cuts `s` with an ellipsis until it is at most `max` pixels wide.
fn fit(area: &Area<'_>, s: &str, px: u32, max: u32) -> Result<String> {
    if text_width(area, s, px)? <= max {
        return Ok(s.to_string());
    }
    let chars: Vec<char> = s.chars().collect();
    for keep in (1..chars.len()).rev() {
        let t: String = chars[..keep].iter().collect::<String>() + "…";
        if text_width(area, &t, px)? <= max {
            return Ok(t);
        }
    }
    Ok("…".into())
}

/// Draws the chart into an RGB image, [`WIDTH`] × [`HEIGHT`] or taller for many bars.
pub fn draw(chart: &Chart) -> Result<Image> {
    let n = chart.labels.len();
    if n == 0 || chart.panels.is_empty() {
        bail!("nothing to draw: the chart has no bars");
    }
    if n > MAX_BARS {
        bail!("{n} bars are too many for one chart (at most {MAX_BARS})");
    }
    if let Some(p) = chart.panels.iter().find(|p| p.values.len() != n) {
        bail!(
            "panel `{}` has {} values for {n} labels",
            p.caption,
            p.values.len()
        );
    }
    if let Some(p) = chart
        .panels
        .iter()
        .find(|p| p.values.iter().any(|v| !(0.0..=1e18).contains(v)))
    {
        bail!(
            "panel `{}` has a negative, non-finite or implausibly large value",
            p.caption
        );
    }
    let font = font()?;
    let (w, h) = (WIDTH, HEIGHT.max(HEADER_PX + 110 + MIN_ROW_PX * n as u32));
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = Canvas {
            inner: BitMapBackend::with_buffer(&mut rgb, (w, h)),
            font,
        }
        .into_drawing_area();
        root.fill(&WHITE).map_err(derr)?;
        let (header, body) = root.split_vertically(HEADER_PX);
        let title_px = 22;
        let sub_px = 15;
        let title = fit(&header, &chart.title, title_px, w - 30)?;
        header
            .draw_text(
                &title,
                &(FONT, title_px).into_font().color(&BLACK),
                (15, 12),
            )
            .map_err(derr)?;
        let sub = fit(&header, &chart.subtitle, sub_px, w - 30)?;
        header
            .draw_text(&sub, &(FONT, sub_px).into_font().color(&GREY), (15, 42))
            .map_err(derr)?;

        // Label column, then the panels side by side.
        let plot_rows_px = h - HEADER_PX - 80;
        let row_px = plot_rows_px as f64 / n as f64;
        let label_px = ((row_px * 0.7) as u32).clamp(10, 14);
        let max_label_w = w * 3 / 10;
        let mut labels = Vec::with_capacity(n);
        let mut label_w = 0;
        for l in &chart.labels {
            let t = fit(&body, l, label_px, max_label_w)?;
            label_w = label_w.max(text_width(&body, &t, label_px)?);
            labels.push(t);
        }
        let label_col = label_w + 14;
        let (label_area, panels_area) = body.split_horizontally(label_col);
        let panel_areas = panels_area.split_evenly((1, chart.panels.len()));
        let mut centers: Vec<i32> = Vec::new();
        for (pi, (panel, area)) in chart.panels.iter().zip(&panel_areas).enumerate() {
            let max = panel.values.iter().copied().fold(0.0, f64::max);
            let top = if max > 0.0 { max * 1.3 } else { 1.0 };
            let cap = fit(
                area,
                &panel.caption,
                16,
                area.dim_in_pixel().0.saturating_sub(10),
            )?;
            let mut c = ChartBuilder::on(area)
                .caption(cap, (FONT, 16))
                .margin_left(4)
                .margin_right(14)
                .margin_top(4)
                .margin_bottom(4)
                .x_label_area_size(28)
                .y_label_area_size(0)
                .build_cartesian_2d(0f64..top, 0f64..n as f64)
                .map_err(derr)?;
            let unit = panel.unit;
            let fmt = move |v: &f64| fmt_value(unit, *v);
            c.configure_mesh()
                .disable_y_mesh()
                .x_labels(4)
                .x_label_formatter(&fmt)
                .x_label_style((FONT, 12))
                .max_light_lines(0)
                .bold_line_style(RGBColor(225, 225, 225))
                .axis_style(GREY)
                .draw()
                .map_err(derr)?;
            // Bar i (top to bottom) spans rows n-1-i .. n-i.
            // At most 40 px thick, with a gap between bars when there is room for one.
            let pad = if row_px >= 6.0 {
                (0.5 - 20.0 / row_px).max(0.15)
            } else {
                0.0
            };
            c.draw_series(panel.values.iter().enumerate().map(|(i, &v)| {
                let y = (n - 1 - i) as f64;
                Rectangle::new([(0.0, y + pad), (v, y + 1.0 - pad)], panel.color.filled())
            }))
            .map_err(derr)?;
            if row_px >= 11.0 {
                let style = (FONT, label_px.min(13))
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                c.draw_series(panel.values.iter().enumerate().map(|(i, &v)| {
                    let y = (n - 1 - i) as f64 + 0.5;
                    EmptyElement::at((v, y)) + Text::new(fmt_value(unit, v), (4, 0), style.clone())
                }))
                .map_err(derr)?;
            }
            if pi == 0 {
                centers = (0..n)
                    .map(|i| c.backend_coord(&(0.0, (n - 1 - i) as f64 + 0.5)).1)
                    .collect();
            }
        }
        let y0 = label_area.get_base_pixel().1;
        let style = (FONT, label_px)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        for (t, cy) in labels.iter().zip(&centers) {
            label_area
                .draw_text(t, &style, (label_col as i32 - 8, cy - y0))
                .map_err(derr)?;
        }
        root.present().map_err(derr)?;
    }
    Ok(Image {
        width: w,
        height: h,
        rgb,
    })
}

/// Encodes an image as PNG.
pub fn encode_png(img: &Image) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, img.width, img.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().context("encoding the PNG")?;
        wr.write_image_data(&img.rgb).context("encoding the PNG")?;
        wr.finish().context("encoding the PNG")?;
    }
    Ok(out)
}

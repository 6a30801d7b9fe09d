//! Logs and progress bars, both on stderr so that the JSON a command prints on stdout stays clean.
//!
//! * [`init`]: `tracing` events to stderr; warnings and errors only by default, `-v` adds info,
//!   `-vv` debug, `-vvv` trace. `RUST_LOG` (e.g. `RUST_LOG=suf_net=debug`) overrides the level.
//! * [`progress`]: a progress bar drawn only when stderr is a terminal, hidden otherwise (pipes,
//!   files, CI, tests). Log lines printed while a bar is drawn are written above it.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// The filter for `verbosity` (number of `-v`), unless `RUST_LOG` says otherwise.
fn default_filter(verbosity: u8) -> &'static str {
    match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

/// All visible progress bars, so that log lines can be printed above them.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// stderr, with any progress bars lifted while a log line is written.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().lock().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        bars().suspend(|| std::io::stderr().lock().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Starts logging to stderr: `verbosity` 0 shows warnings and errors, 1 (`-v`) info, 2 (`-vv`)
/// debug, 3 or more trace. A non-empty `RUST_LOG` overrides the level (an invalid one is reported
/// and ignored). Calling it again does nothing.
pub fn init(verbosity: u8) {
    let fallback = default_filter(verbosity);
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => EnvFilter::try_new(&s).unwrap_or_else(|e| {
            eprintln!("warning: ignoring RUST_LOG={s:?} ({e}); using level {fallback}");
            EnvFilter::new(fallback)
        }),
        _ => EnvFilter::new(fallback),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbosity >= 2);
    // Timestamps from -vv on. Err means a subscriber is already installed (a second call, or a
    // test harness): keep it.
    let _ = if verbosity >= 2 {
        fmt.try_init()
    } else {
        fmt.without_time().try_init()
    };
}

/// Progress bars off for the rest of the process (`--json`: stdout carries one object and
/// stderr stays quiet too).
pub fn hide_progress() {
    HIDDEN.store(true, std::sync::atomic::Ordering::Relaxed);
}

static HIDDEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A progress bar of `len` steps labelled `msg` (a spinner when `len` is 0, i.e. unknown),
/// drawn on stderr when stderr is a terminal and hidden otherwise. Call `inc` as work is done and
/// `finish_and_clear` (or `finish_with_message`) at the end; a hidden bar still counts.
pub fn progress(len: u64, msg: &str) -> ProgressBar {
    let msg = msg.to_string();
    if !std::io::stderr().is_terminal() || HIDDEN.load(std::sync::atomic::Ordering::Relaxed) {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden())
            .with_message(msg);
    }
    let style = if len == 0 {
        ProgressStyle::with_template("{spinner} {msg} {human_pos} [{elapsed}]")
    } else {
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {human_pos}/{human_len} {percent:>3}% [{elapsed} < {eta}]",
        )
    }
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let pb = if len == 0 {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(len)
    };
    bars().add(pb.with_style(style).with_message(msg))
}

/// A download bar: bytes done of the total (with rate and time left) once the total is known,
/// drawn like [`progress`] only on a terminal and not with `--json`.
pub fn progress_bytes(msg: &str) -> ProgressBar {
    let pb = progress(0, msg);
    if !pb.is_hidden() {
        if let Ok(st) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} [{elapsed} < {eta}]",
        ) {
            pb.set_style(st.progress_chars("=> "));
        }
    }
    pb
}

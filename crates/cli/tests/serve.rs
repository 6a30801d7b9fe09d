//! Long-lived servers (`suf serve --pool`) fed by `suf dealer`, used through the HTTPS API by
//! `suf client`, on loopback with the toy program (each inference takes milliseconds).
//!
//! The soak run (200 sequential inferences and a concurrent run, fd count and RSS of both
//! servers checked) is opt-in: `SUF_SOAK=1 cargo test --release -p suf-cli --test serve soak
//! -- --nocapture`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn suf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suf"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "stdout {} stderr {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    program: Vec<String>,
}

impl Setup {
    fn new(streams: usize) -> Self {
        Self::with_program(&["--program", "toy"], streams)
    }

    /// A setup whose pools hold `streams` streams for the dealer arguments `program`.
    fn with_program(program: &[&str], streams: usize) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        ok(suf()
            .args(["certs", "--out"])
            .arg(root.join("certs"))
            .output()
            .unwrap());
        let s = Setup {
            _tmp: tmp,
            root,
            program: program.iter().map(|a| a.to_string()).collect(),
        };
        s.deal(streams);
        s
    }

    fn deal(&self, n: usize) {
        ok(suf()
            .arg("dealer")
            .args(&self.program)
            .args(["--count", &n.to_string()])
            .arg("--pool0")
            .arg(self.root.join("pool0"))
            .arg("--pool1")
            .arg(self.root.join("pool1"))
            .output()
            .unwrap());
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

struct Srv {
    child: Child,
    api: String,
    /// The server's stderr.
    log: PathBuf,
}

impl Srv {
    /// Start party `party` on pool `pool` (relative to the setup root) and wait for its ready
    /// line.
    fn start(s: &Setup, party: u8, pool: &str, peer: u16, extra: &[&str]) -> Srv {
        Self::start_with_tls(
            s,
            party,
            pool,
            peer,
            &s.p(&format!("certs/p{party}")),
            extra,
        )
    }

    /// [`Srv::start`] with the TLS identity folder `tls`.
    fn start_with_tls(
        s: &Setup,
        party: u8,
        pool: &str,
        peer: u16,
        tls: &Path,
        extra: &[&str],
    ) -> Srv {
        let log = s.p(&format!("serve{party}-{}.log", free_port()));
        let mut c = suf();
        c.args(["serve", "--party", &party.to_string(), "--backend", "cpu"])
            .arg("--pool")
            .arg(s.p(pool))
            .arg("--state")
            .arg(s.p(&format!("state{party}")))
            .args(["--api", "127.0.0.1:0"])
            .arg("--tls")
            .arg(tls)
            .args(extra)
            .args(if extra.contains(&"--timeout") {
                &[][..]
            } else {
                &["--timeout", "10"][..]
            })
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let peer = format!("127.0.0.1:{peer}");
        if party == 0 {
            c.args(["--listen", &peer]);
        } else {
            c.args(["--connect", &peer]);
        }
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.is_empty() {
            let _ = child.wait();
            let e = std::fs::read_to_string(&log).unwrap();
            panic!("server {party} did not start: {e}");
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        Srv {
            child,
            api: v["api"].as_str().unwrap().to_string(),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait: a graceful stop exits 0.
    fn stop(mut self) -> std::process::ExitStatus {
        self.term();
        self.child.wait().unwrap()
    }

    /// Wait for the process to exit.
    fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Send SIGTERM (by this child's process id).
    fn term(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn client(s: &Setup, a: &Srv, b: &Srv) -> Output {
    suf()
        .args([
            "client",
            "--json",
            "--timeout",
            "30",
            "--p0",
            &a.api,
            "--p1",
            &b.api,
        ])
        .arg("--certs")
        .arg(s.p("certs/client"))
        .output()
        .unwrap()
}

fn client_ok(s: &Setup, a: &Srv, b: &Srv) -> Value {
    let o = ok(client(s, a, b));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["matches_plain"], Value::Bool(true), "{v}");
    v
}

fn client_err(s: &Setup, a: &Srv, b: &Srv) -> String {
    let o = client(s, a, b);
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Streams of `party` left in a pool folder.
fn streams_in(dir: &Path, party: u8) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(&format!(".p{party}.keys"))
        })
        .count()
}

fn registry_lines(s: &Setup, party: u8) -> usize {
    std::fs::read_to_string(s.p(&format!("state{party}/used-sessions.log")))
        .map(|t| t.lines().filter(|l| !l.is_empty()).count())
        .unwrap_or(0)
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn sequential_and_concurrent_requests_equal_plain_then_the_pool_runs_dry() {
    let s = Setup::new(6);
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &[]);
    let b = Srv::start(&s, 1, "pool1", port, &[]);
    let mut sessions = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let v = client_ok(&s, &a, &b);
        assert!(v["latency_ms"].as_f64().unwrap() > 0.0);
        // Each server's wait for its peer before the online phase is reported apart from it,
        // and the two servers' waits cannot both exceed the run's whole latency.
        for p in v["per_party"].as_array().unwrap() {
            let wait = p["peer_wait_ms"].as_f64().unwrap();
            assert!(
                (0.0..v["latency_ms"].as_f64().unwrap()).contains(&wait),
                "{p}"
            );
        }
        sessions.insert(v["session"].as_str().unwrap().to_string());
    }
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (pa, pb, c) = (a.api.clone(), b.api.clone(), s.p("certs/client"));
            std::thread::spawn(move || {
                let o = suf()
                    .args(["client", "--json", "--p0", &pa, "--p1", &pb])
                    .arg("--certs")
                    .arg(c)
                    .output()
                    .unwrap();
                ok(o).stdout
            })
        })
        .collect();
    for t in threads {
        let v: Value = serde_json::from_slice(&t.join().unwrap()).unwrap();
        assert_eq!(v["matches_plain"], Value::Bool(true));
        sessions.insert(v["session"].as_str().unwrap().to_string());
    }
    assert_eq!(sessions.len(), 6, "every inference used its own key stream");
    assert_eq!(
        streams_in(&s.p("pool0"), 0),
        0,
        "consumed streams are deleted"
    );
    assert_eq!(streams_in(&s.p("pool1"), 1), 0);
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (6, 6));
    // Empty pool: a clear refusal with a retry hint, nothing else changes.
    let e = client_err(&s, &a, &b);
    assert!(
        e.contains("key pool is empty") && e.contains("retry"),
        "{e}"
    );
    // The client returns at the first refusal; the other server may still be finishing that
    // request (e.g. the leader waiting on its peer's answer): wait, bounded, for it to settle.
    let metrics = || -> Value {
        let o = ok(suf()
            .args(["client", "--metrics", "--p0", &a.api, "--p1", &b.api])
            .arg("--certs")
            .arg(s.p("certs/client"))
            .output()
            .unwrap());
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let mut m = metrics();
    for _ in 0..100 {
        if m["p0"]["in_flight"] == 0 && m["p1"]["in_flight"] == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        m = metrics();
    }
    for p in ["p0", "p1"] {
        assert_eq!(m[p]["served"], 6, "{m}");
        assert_eq!(m[p]["remaining_streams"], 0, "{m}");
        assert_eq!(m[p]["used_sessions"], 6, "{m}");
        assert_eq!(m[p]["in_flight"], 0, "{m}");
    }
    // The first server to refuse ends the client's wait (the other may never see it).
    let refused = m["p0"]["refused"].as_u64().unwrap() + m["p1"]["refused"].as_u64().unwrap();
    assert!((1..=2).contains(&refused), "{m}");
    // More keys from the dealer are served without a restart.
    s.deal(1);
    client_ok(&s, &a, &b);
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[test]
fn copies_symlinks_and_redelivered_streams_are_refused_and_the_registry_survives_restart() {
    let s = Setup::new(2);
    // A copy of both pools made before any run (the attack on the old sidecar marker).
    for j in 0..2 {
        let (from, to) = (s.p(&format!("pool{j}")), s.p(&format!("copy{j}")));
        std::fs::create_dir(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &[]);
    let b = Srv::start(&s, 1, "pool1", port, &[]);
    let used = client_ok(&s, &a, &b)["session"]
        .as_str()
        .unwrap()
        .to_string();
    // Re-delivered: the used stream put back into the running servers' pools.
    for j in 0..2u8 {
        for suffix in [format!("{used}.p{j}.keys"), format!("{used}.weights")] {
            std::fs::copy(
                s.p(&format!("copy{j}/{suffix}")),
                s.p(&format!("pool{j}/{suffix}")),
            )
            .unwrap();
        }
    }
    let v = client_ok(&s, &a, &b);
    assert_ne!(v["session"].as_str().unwrap(), used);
    let e = client_err(&s, &a, &b);
    assert!(e.contains("key pool is empty"), "{e}");
    assert!(
        !s.p(&format!("pool1/{used}.p1.keys")).exists(),
        "deleted on sight"
    );
    assert!(a.stop().success() && b.stop().success());
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (2, 2));

    // Restart on the pre-run copies, same state: both streams are known used (the registry
    // survived the restart), so nothing is served and the copies are deleted.
    let port = free_port();
    let a = Srv::start(&s, 0, "copy0", port, &[]);
    let b = Srv::start(&s, 1, "copy1", port, &[]);
    let e = client_err(&s, &a, &b);
    assert!(e.contains("key pool is empty"), "{e}");
    assert_eq!(streams_in(&s.p("copy1"), 1), 0);
    drop((a, b));

    // A fresh stream whose party-0 file is a symlink: party 0 refuses to pair, and party 1's
    // stream is not consumed (a refusal costs nothing).
    s.deal(1);
    let p0 = s.p("pool0");
    let name = std::fs::read_dir(&p0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".p0.keys"))
        .unwrap();
    std::fs::rename(p0.join(&name), s.p("elsewhere.keys")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(s.p("elsewhere.keys"), p0.join(&name)).unwrap();
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &[]);
    let b = Srv::start(&s, 1, "pool1", port, &[]);
    let e = client_err(&s, &a, &b);
    assert!(e.contains("not a regular file"), "{e}");
    assert!(e.contains("nothing consumed"), "{e}");
    assert_eq!(
        streams_in(&s.p("pool1"), 1),
        1,
        "party 1's stream is intact"
    );
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (2, 2));
    // With the real file back the same stream serves.
    std::fs::remove_file(p0.join(&name)).unwrap();
    std::fs::rename(s.p("elsewhere.keys"), p0.join(&name)).unwrap();
    client_ok(&s, &a, &b);
}

#[test]
fn strangers_replayed_hellos_and_absent_peers_consume_nothing() {
    let s = Setup::new(1);
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &["--timeout", "3"]);
    // Absent peer: party 1 points at a port where no party 0 listens; it cannot pair, party 0
    // never hears of the request, and neither consumes anything.
    let b = Srv::start(&s, 1, "pool1", free_port(), &["--timeout", "3"]);
    let e = client_err(&s, &a, &b);
    assert!(
        e.contains("nothing consumed") || e.contains("did not pair"),
        "{e}"
    );
    drop(b);
    assert_eq!(
        (streams_in(&s.p("pool0"), 0), streams_in(&s.p("pool1"), 1)),
        (1, 1)
    );
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (0, 0));
    // A stranger on party 0's peer port with a replayed-looking hello (right magic, version,
    // party 1, the pool's program) and a made-up authentication tag.
    let pool: Value =
        serde_json::from_slice(&std::fs::read(s.p("pool0/pool.json")).unwrap()).unwrap();
    let fp = pool["program_fp"].as_str().unwrap();
    let mut model_fp = [0u8; 32];
    for (i, b) in model_fp.iter_mut().enumerate() {
        *b = u8::from_str_radix(&fp[2 * i..2 * i + 2], 16).unwrap();
    }
    let hello = suf_net::handshake::Hello {
        version: suf_net::handshake::PROTOCOL_VERSION,
        party: 1,
        session_id: [0; 16],
        model_fp,
        keys_fp: [0; 32],
    };
    let mut t = TcpStream::connect(("127.0.0.1", port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.write_all(&hello.encode()).unwrap();
    let mut theirs = [0u8; suf_net::handshake::HELLO_LEN];
    t.read_exact(&mut theirs).unwrap();
    let frame = |b: &[u8]| {
        let mut f = (b.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(b);
        f
    };
    t.write_all(&frame(&[7u8; 32])).unwrap();
    t.write_all(&frame(&[9u8; 32])).unwrap();
    // Party 0 reads its nonce, then our bad tag, and closes without answering.
    let mut rest = Vec::new();
    let _ = t.read_to_end(&mut rest);
    assert!(rest.len() <= 8 + 32, "only party 0's nonce came back");
    // Nothing was consumed: a real pair of servers still serves the one stream.
    let b = Srv::start(&s, 1, "pool1", port, &["--timeout", "3"]);
    client_ok(&s, &a, &b);
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (1, 1));
}

#[cfg(unix)]
#[test]
fn key_shares_and_private_keys_are_owner_only() {
    let s = Setup::new(1);
    for d in ["pool0", "pool1", "certs", "certs/p0", "certs/p1"] {
        assert_eq!(mode(&s.p(d)), 0o700, "{d}");
    }
    for d in ["pool0", "pool1", "certs/p0", "certs/p1", "certs/client"] {
        for e in std::fs::read_dir(s.p(d)).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    // Each host's folder holds its own private key only.
    assert!(s.p("certs/p0/p0.key").exists() && !s.p("certs/p0/p1.key").exists());
    assert!(s.p("certs/p1/p1.key").exists() && !s.p("certs/p1/p0.key").exists());
    assert!(!s.p("certs/client/p0.key").exists());
    // The registry's place is not derived from the pool's path: --state is required.
    let o = suf()
        .args([
            "serve",
            "--party",
            "0",
            "--backend",
            "cpu",
            "--api",
            "127.0.0.1:0",
        ])
        .args(["--listen", "127.0.0.1:0", "--pool"])
        .arg(s.p("pool0"))
        .arg("--tls")
        .arg(s.p("certs/p0"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--state DIR"));
    // certs and dealer refuse to overwrite or to mix pools.
    let o = suf()
        .args(["certs", "--out"])
        .arg(s.p("certs"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = suf()
        .args(["dealer", "--program", "toy", "--model-seed", "9"])
        .arg("--pool0")
        .arg(s.p("pool0"))
        .arg("--pool1")
        .arg(s.p("pool1"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("serves one program"));
    // Only party 0's pool (with its secret) and a fresh party 1 pool: not halves of one pool.
    let o = suf()
        .args(["dealer", "--program", "toy"])
        .arg("--pool0")
        .arg(s.p("pool0"))
        .arg("--pool1")
        .arg(s.p("other1"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    // A checkpoint folder is refused before any key is dealt: the servers take a pool's
    // program by name only (they would refuse the pool afterwards).
    let ck = s.p("ckpt");
    std::fs::create_dir_all(&ck).unwrap();
    let o = suf()
        .args(["dealer", "--seq", "4", "--program"])
        .arg(&ck)
        .arg("--pool0")
        .arg(s.p("ck0"))
        .arg("--pool1")
        .arg(s.p("ck1"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("serves a model by name"), "{e}");
    assert!(
        !s.p("ck0").exists() && !s.p("ck1").exists(),
        "nothing written"
    );
}

fn proc_status(pid: u32) -> (u64, usize) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = st
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn soak() {
    if std::env::var_os("SUF_SOAK").is_none() {
        eprintln!("soak skipped: set SUF_SOAK=1");
        return;
    }
    let (seq_n, conc_threads, conc_each) = (200usize, 4usize, 25usize);
    let s = Setup::new(seq_n + 2 * conc_threads * conc_each + 10);
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &[]);
    let b = Srv::start(&s, 1, "pool1", port, &[]);
    for _ in 0..10 {
        client_ok(&s, &a, &b);
    }
    let before = [proc_status(a.pid()), proc_status(b.pid())];
    let (mut lat, mut online) = (Vec::new(), Vec::new());
    let t = Instant::now();
    for _ in 0..seq_n {
        let v = client_ok(&s, &a, &b);
        lat.push(v["latency_ms"].as_f64().unwrap());
        online.push(v["online_ms"].as_f64().unwrap());
    }
    let seq_s = t.elapsed().as_secs_f64();
    let mid = [proc_status(a.pid()), proc_status(b.pid())];
    // Two concurrent runs: the first opens the idle peer links (at most 8), the second must
    // leave descriptors and memory where the first left them.
    let concurrent = || {
        let t = Instant::now();
        let threads: Vec<_> = (0..conc_threads)
            .map(|_| {
                let (pa, pb, c) = (a.api.clone(), b.api.clone(), s.p("certs/client"));
                std::thread::spawn(move || {
                    let mut l = Vec::new();
                    for _ in 0..conc_each {
                        let o = suf()
                            .args(["client", "--json", "--p0", &pa, "--p1", &pb])
                            .arg("--certs")
                            .arg(&c)
                            .output()
                            .unwrap();
                        let v: Value = serde_json::from_slice(&ok(o).stdout).unwrap();
                        assert_eq!(v["matches_plain"], Value::Bool(true));
                        l.push(v["latency_ms"].as_f64().unwrap());
                    }
                    l
                })
            })
            .collect();
        let l: Vec<f64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (l, t.elapsed().as_secs_f64())
    };
    let _ = concurrent();
    let c1 = [proc_status(a.pid()), proc_status(b.pid())];
    let (mut clat, conc_s) = concurrent();
    let after = [proc_status(a.pid()), proc_status(b.pid())];
    let report = serde_json::json!({
        "sequential": {"inferences": seq_n, "wall_s": seq_s, "per_s": seq_n as f64 / seq_s,
            "latency_ms_p50": pct(&mut lat, 0.5), "latency_ms_p99": pct(&mut lat, 0.99),
            "online_ms_p50": pct(&mut online, 0.5), "online_ms_p99": pct(&mut online, 0.99)},
        "concurrent": {"clients": conc_threads, "inferences": conc_threads * conc_each,
            "wall_s": conc_s, "per_s": (conc_threads * conc_each) as f64 / conc_s,
            "latency_ms_p50": pct(&mut clat, 0.5), "latency_ms_p99": pct(&mut clat, 0.99)},
        "rss_kib": {"before": [before[0].0, before[1].0], "after_sequential": [mid[0].0, mid[1].0],
                    "after_concurrent_1": [c1[0].0, c1[1].0], "after_concurrent_2": [after[0].0, after[1].0]},
        "fds": {"before": [before[0].1, before[1].1], "after_sequential": [mid[0].1, mid[1].1],
                "after_concurrent_1": [c1[0].1, c1[1].1], "after_concurrent_2": [after[0].1, after[1].1]},
    });
    println!("SOAK {report}");
    for j in 0..2 {
        assert!(mid[j].1 <= before[j].1 + 2, "fd growth: {report}");
        assert!(after[j].1 <= c1[j].1 + 2, "fd growth: {report}");
        assert!(mid[j].0 <= before[j].0 + 32 * 1024, "RSS growth: {report}");
        assert!(after[j].0 <= c1[j].0 + 32 * 1024, "RSS growth: {report}");
    }
    assert!(a.stop().success() && b.stop().success());
}

#[test]
fn peer_link_over_mutual_tls_and_a_wrong_pin_consumes_nothing() {
    let s = Setup::new(1);
    // Without the pools' loopback secret the servers pair over mutually authenticated TLS.
    for j in 0..2 {
        std::fs::remove_file(s.p(&format!("pool{j}/peer.secret"))).unwrap();
    }
    // Party 1 with its own identity but the pin of another party 0 certificate.
    ok(suf()
        .args(["certs", "--out"])
        .arg(s.p("other"))
        .output()
        .unwrap());
    let mixed = s.p("mixed");
    std::fs::create_dir(&mixed).unwrap();
    for (from, to) in [
        ("certs/p1/p1.crt", "p1.crt"),
        ("certs/p1/p1.key", "p1.key"),
        ("other/p0/p0.crt", "p0.crt"),
    ] {
        std::fs::copy(s.p(from), mixed.join(to)).unwrap();
    }
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &["--timeout", "3"]);
    let b = Srv::start_with_tls(&s, 1, "pool1", port, &mixed, &["--timeout", "3"]);
    let e = client_err(&s, &a, &b);
    assert!(
        e.contains("nothing consumed") || e.contains("did not pair"),
        "{e}"
    );
    drop(b);
    assert_eq!(
        (streams_in(&s.p("pool0"), 0), streams_in(&s.p("pool1"), 1)),
        (1, 1)
    );
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (0, 0));
    // The right pins: the inference runs over the TLS link.
    let b = Srv::start(&s, 1, "pool1", port, &["--timeout", "3"]);
    client_ok(&s, &a, &b);
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (1, 1));
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    // bert-tiny (synthetic weights, 8 tokens): an inference takes long enough (hundreds of ms)
    // to stop the servers while it runs.
    let s = Setup::with_program(&["--program", "bert-tiny", "--seq", "8"], 1);
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &["-v"]);
    let b = Srv::start(&s, 1, "pool1", port, &["-v"]);
    let (pa, pb, c) = (a.api.clone(), b.api.clone(), s.p("certs/client"));
    let cl = std::thread::spawn(move || {
        suf()
            .args([
                "client", "--json", "--text", "any text", "--p0", &pa, "--p1", &pb,
            ])
            .arg("--certs")
            .arg(c)
            .output()
            .unwrap()
    });
    // Stop both servers as soon as party 1 logs the request.
    let t = Instant::now();
    while !std::fs::read_to_string(&b.log)
        .unwrap()
        .contains("INFO request")
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no request logged");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (la, lb) = (a.log.clone(), b.log.clone());
    b.term();
    a.term();
    assert!(a.wait().success() && b.wait().success());
    let o = ok(cl.join().unwrap());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["matches_plain"], Value::Bool(true));
    let log = std::fs::read_to_string(lb).unwrap();
    let (stop, served) = (
        log.find("shutting down").unwrap(),
        log.find("request served").unwrap(),
    );
    assert!(stop < served, "the stop came after the result: {log}");
    assert!(std::fs::read_to_string(la)
        .unwrap()
        .contains("request served"));
}

fn client_tokens(s: &Setup, a: &Srv, b: &Srv, tokens: usize) -> Output {
    suf()
        .args([
            "client",
            "--json",
            "--timeout",
            "60",
            "--text",
            "any text",
            "--tokens",
            &tokens.to_string(),
            "--p0",
            &a.api,
            "--p1",
            &b.api,
        ])
        .arg("--certs")
        .arg(s.p("certs/client"))
        .output()
        .unwrap()
}

#[test]
fn a_bucket_pool_serves_shorter_inputs() {
    // bert-tiny (synthetic weights, one block) with keys for the bucket of 8 tokens: a
    // 3-token and an 8-token request each use one of the bucket's streams and equal the
    // padded Plain run (which equals the unpadded one bit for bit: suf-nn's bucket tests).
    let s = Setup::with_program(&["--program", "bert-tiny", "--seq", "8", "--bucket"], 2);
    let m: Value = serde_json::from_slice(&std::fs::read(s.p("pool0/pool.json")).unwrap()).unwrap();
    assert_eq!(m["bucket"], Value::Bool(true));
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &[]);
    let b = Srv::start(&s, 1, "pool1", port, &[]);
    // Too long for the bucket: refused by the client, nothing consumed.
    let o = client_tokens(&s, &a, &b, 9);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--tokens 9"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (0, 0));
    for (i, t) in [3usize, 8].into_iter().enumerate() {
        let v: Value = serde_json::from_slice(&ok(client_tokens(&s, &a, &b, t)).stdout).unwrap();
        assert_eq!(v["matches_plain"], Value::Bool(true), "{v}");
        assert_eq!(v["tokens"], Value::from(t));
        assert_eq!(v["bucket"], Value::from(8));
        assert_eq!(
            (registry_lines(&s, 0), registry_lines(&s, 1)),
            (i + 1, i + 1)
        );
    }
    assert_eq!(
        (streams_in(&s.p("pool0"), 0), streams_in(&s.p("pool1"), 1)),
        (0, 0)
    );
}

#[test]
fn a_folder_of_buckets_takes_the_smallest_with_keys_left() {
    // `--buckets 4,8`, one stream each: 3 tokens take bucket 4; 2 tokens then find bucket 4
    // empty and take bucket 8; a third request finds no keys (503, nothing consumed).
    let s = Setup::with_program(&["--program", "bert-tiny", "--buckets", "8,4"], 1);
    for b in ["b4", "b8"] {
        assert_eq!(streams_in(&s.p(&format!("pool0/{b}")), 0), 1);
        assert_eq!(streams_in(&s.p(&format!("pool1/{b}")), 1), 1);
    }
    let port = free_port();
    let a = Srv::start(&s, 0, "pool0", port, &[]);
    let b = Srv::start(&s, 1, "pool1", port, &[]);
    for (t, bucket) in [(3usize, 4usize), (2, 8)] {
        let v: Value = serde_json::from_slice(&ok(client_tokens(&s, &a, &b, t)).stdout).unwrap();
        assert_eq!(v["matches_plain"], Value::Bool(true), "{v}");
        assert_eq!(
            (v["tokens"].clone(), v["bucket"].clone()),
            (t.into(), bucket.into())
        );
    }
    assert_eq!(streams_in(&s.p("pool0/b8"), 0), 0);
    let o = client_tokens(&s, &a, &b, 1);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("503"), "{e}");
    assert_eq!((registry_lines(&s, 0), registry_lines(&s, 1)), (2, 2));
    // Nine tokens fit no bucket: refused by the client before anything is sent.
    assert!(!client_tokens(&s, &a, &b, 9).status.success());
}

#[test]
fn bucket_dealer_arguments_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = suf()
            .arg("dealer")
            .args(args)
            .arg("--pool0")
            .arg(tmp.path().join("p0"))
            .arg("--pool1")
            .arg(tmp.path().join("p1"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(run(&["--program", "toy", "--bucket"]).contains("for models"));
    let e = run(&["--program", "bert-tiny", "--buckets", "4", "--seq", "4"]);
    assert!(e.contains("replaces"), "{e}");
    assert!(run(&["--program", "bert-tiny", "--buckets", "0,4"]).contains("at least 1"));
    assert!(run(&["--program", "bert-tiny", "--buckets", "100000"]).contains("positions"));
    // A pool of one length is not extended with bucket keys (another program).
    let ok_args = ["--program", "bert-tiny", "--seq", "4"];
    ok(suf()
        .arg("dealer")
        .args(ok_args)
        .arg("--pool0")
        .arg(tmp.path().join("q0"))
        .arg("--pool1")
        .arg(tmp.path().join("q1"))
        .output()
        .unwrap());
    let o = suf()
        .arg("dealer")
        .args(ok_args)
        .arg("--bucket")
        .arg("--pool0")
        .arg(tmp.path().join("q0"))
        .arg("--pool1")
        .arg(tmp.path().join("q1"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("a pool serves one program"));
}

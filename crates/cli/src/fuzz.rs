//! Entry points for the cargo-fuzz targets in the repository's `fuzz/` folder (hidden; not
//! an API). A panic is a finding.

/// Share and vector files: a file the parser accepts re-encodes to exactly its bytes, and
/// its exact size is what [`crate::files::encoded_len`] predicts.
pub fn vector_file(data: &[u8]) {
    if let Ok(m) = crate::files::parse(data) {
        assert_eq!(crate::files::encode(&m), data);
        let len = crate::files::encoded_len(m.iter().map(|(k, v)| (k.as_str(), v.len())));
        assert_eq!(len, data.len() as u64);
    }
}

/// Session manifests: an accepted manifest passes its own checks and survives a JSON round
/// trip.
pub fn manifest(data: &[u8]) {
    if let Ok(s) = crate::session::parse(data) {
        assert!(s.validate().is_ok());
        if s.keygen_ms.is_finite() {
            let again = serde_json::to_vec(&s).unwrap_or_default();
            assert!(crate::session::parse(&again).is_ok());
        }
    }
}

/// Seed inputs per target (`share_file`, `manifest`), for the fuzz corpus.
pub fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut m = crate::files::Named::new();
    m.insert("x".into(), vec![1, 2, u64::MAX]);
    m.insert("out0".into(), vec![]);
    let manifest = br#"{"program":"bert-tiny","seq":8,"bits":50,"frac":12,"model_seed":7,"program_fp":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","key_bytes":[10,20],"keygen_ms":1.5,"rounds":85}"#;
    vec![
        ("share_file", crate::files::encode(&m)),
        ("share_file", crate::files::encode(&crate::files::Named::new())),
        ("manifest", manifest.to_vec()),
        ("manifest", br#"{"program":"toy","bits":50,"frac":12,"model_seed":7,"program_fp":"","key_bytes":[0,0],"keygen_ms":0,"rounds":4}"#.to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_accepted() {
        for (t, s) in samples() {
            match t {
                "share_file" => {
                    assert!(crate::files::parse(&s).is_ok());
                    vector_file(&s);
                }
                _ => {
                    assert!(
                        crate::session::parse(&s).is_ok(),
                        "{}",
                        String::from_utf8_lossy(&s)
                    );
                    manifest(&s);
                }
            }
        }
    }
}

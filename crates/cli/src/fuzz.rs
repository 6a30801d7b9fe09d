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

//! Newtypes at the edges: identifiers parsed and trimmed of DICOM padding once, then trusted.

use std::fmt;

/// Why an identifier from the network was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// A DICOM UID (PS3.5 §9.1): digits and dots, at most 64 characters, no leading zeros in
/// components. Validated before it touches a path or a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

impl Uid {
    pub fn parse(kind: &'static str, raw: &str) -> Result<Self, InvalidId> {
        let value = raw.trim_end_matches(['\0', ' ']).trim_start();
        let err = |reason| InvalidId {
            kind,
            value: raw.chars().take(80).collect(),
            reason,
        };
        if value.is_empty() {
            return Err(err("empty"));
        }
        if value.len() > 64 {
            return Err(err("longer than 64 characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(err("only digits and '.' are allowed"));
        }
        for part in value.split('.') {
            if part.is_empty() {
                return Err(err("empty component"));
            }
            if part.len() > 1 && part.starts_with('0') {
                return Err(err("component with a leading zero"));
            }
        }
        Ok(Uid(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Uid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An application entity title, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AeTitle(String);

impl AeTitle {
    pub fn new(raw: &str) -> Self {
        AeTitle(raw.trim_matches(['\0', ' ']).to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Well-known transfer syntax UIDs.
pub mod ts {
    pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
    pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
    pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
    pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

    /// Syntaxes whose pixel data is native (not encapsulated).
    pub fn is_native(uid: &str) -> bool {
        matches!(
            uid,
            IMPLICIT_VR_LE | EXPLICIT_VR_LE | DEFLATED_EXPLICIT_VR_LE | EXPLICIT_VR_BE
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_validation() {
        assert_eq!(
            Uid::parse("uid", "1.2.840.10008\0").unwrap().as_str(),
            "1.2.840.10008"
        );
        assert!(Uid::parse("uid", "1.02.3").is_err());
        assert!(Uid::parse("uid", "../etc/passwd").is_err());
        assert!(Uid::parse("uid", "1..2").is_err());
        assert!(Uid::parse("uid", &"1.".repeat(40)).is_err());
    }
}

//! A guard before dicom-parser reads a stored file: dicom-parser allocates (and zero-fills)
//! an element's declared length before reading it, so a C-STORE of a few hundred bytes that
//! declares a 4 GiB value would make the gateway allocate 4 GiB (found by the `dataset` fuzz
//! target). This walk reads only element headers, descending into sequences, items and
//! encapsulated pixel data as the parser would, and refuses any declared length larger than
//! the bytes left in the file. A deflated data set is inflated into a temporary file first
//! (at most `MAX_INFLATED` bytes: more is refused) and checked there.
//!
//! Binary values (US, UL, FD, OW ...) must hold whole numbers of their unit: dicom-parser reads
//! `len / unit` units but advances its position by `len`, so a UL of 46 bytes leaves it two
//! bytes out of step, and the next "length" it reads is garbage (fuzz finding). In Implicit VR
//! the VR comes from the standard dictionary, as the parser takes it.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::Tag;
use dicom_dictionary_std::StandardDataDictionary;

use super::layout::{data_set_start, has_long_length, has_short_length};

const UNDEFINED: u32 = u32::MAX;
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
/// Largest inflated data set accepted.
const MAX_INFLATED: u64 = 4 << 30;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// Why a file is refused.
#[derive(Debug, thiserror::Error)]
pub enum BoundsError {
    #[error("element ({0:04X},{1:04X}) declares {2} bytes but only {3} remain in the file")]
    TooLong(u16, u16, u32, u64),
    #[error("{0}")]
    Layout(#[from] super::layout::LayoutError),
    #[error(
        "element ({0:04X},{1:04X}) {2}: a length of {3} bytes is not a whole number of values"
    )]
    PartialValue(u16, u16, String, u32),
    #[error("the deflated data set inflates to more than {0} bytes")]
    TooLarge(u64),
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
}

/// Check every declared length of the data set of the Part 10 file at `path`.
pub fn check_lengths(path: &Path, ts_uid: &str) -> Result<(), BoundsError> {
    let file = File::open(path)?;
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let mut start = data_set_start(&mut r)?;
    r.seek(SeekFrom::Start(start))?;
    if ts_uid == DEFLATED {
        let inflated = inflate(r)?;
        r = BufReader::with_capacity(64 * 1024, inflated);
        start = 0;
    }
    let size = r.get_ref().metadata()?.len();
    let mut walk = Walk {
        r,
        size,
        pos: start,
        explicit: ts_uid != "1.2.840.10008.1.2",
        big_endian: ts_uid == "1.2.840.10008.1.2.2",
        in_fragments: false,
    };
    walk.run()
}

/// Inflate the rest of `r` (raw deflate, PS3.5 A.5) into an anonymous temporary file.
fn inflate(r: impl Read) -> Result<File, BoundsError> {
    let mut out = tempfile::tempfile()?;
    let mut inflater = flate2::read::DeflateDecoder::new(r).take(MAX_INFLATED + 1);
    let n = io::copy(&mut inflater, &mut out)?;
    if n > MAX_INFLATED {
        return Err(BoundsError::TooLarge(MAX_INFLATED));
    }
    out.seek(SeekFrom::Start(0))?;
    Ok(out)
}

/// The VR dicom-parser gives `tag` in Implicit VR: OW for Pixel Data and overlays, the
/// dictionary's (first) VR, or UN for a tag the dictionary does not know.
fn implicit_vr(tag: (u16, u16)) -> [u8; 2] {
    if tag == PIXEL_DATA || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return *b"OW";
    }
    StandardDataDictionary
        .by_tag(Tag(tag.0, tag.1))
        .map(|entry| entry.vr().relaxed().to_bytes())
        .unwrap_or(*b"UN")
}

/// Binary VRs hold values of a fixed size: their length must be a multiple of it.
fn check_whole_values(tag: (u16, u16), vr: &[u8; 2], len: u32) -> Result<(), BoundsError> {
    let unit = match vr {
        b"US" | b"SS" | b"OW" => 2,
        b"UL" | b"SL" | b"FL" | b"OF" | b"OL" | b"AT" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => return Ok(()),
    };
    if len % unit != 0 {
        let vr = String::from_utf8_lossy(vr).into_owned();
        return Err(BoundsError::PartialValue(tag.0, tag.1, vr, len));
    }
    Ok(())
}

struct Walk<R> {
    r: R,
    size: u64,
    pos: u64,
    explicit: bool,
    big_endian: bool,
    in_fragments: bool,
}

impl<R: Read + Seek> Walk<R> {
    fn run(&mut self) -> Result<(), BoundsError> {
        // shorter than a header: let the parser report the truncation
        while self.size.saturating_sub(self.pos) >= 8 {
            let tag = (self.u16()?, self.u16()?);
            if tag.0 == 0xFFFE {
                self.delimiter(tag)?;
                continue;
            }
            let vr = self.value_header(tag)?;
            let (vr, len) = vr;
            if len == UNDEFINED {
                // a sequence (or UN / encapsulated pixel data) whose contents follow
                self.in_fragments = tag == PIXEL_DATA;
                continue;
            }
            self.check(tag, len)?;
            if tag != PIXEL_DATA {
                check_whole_values(tag, &vr, len)?;
            }
            let descend = &vr == b"SQ" || (&vr == b"UN" && self.starts_with_item(len)?);
            if !descend {
                self.skip(len)?;
            }
        }
        Ok(())
    }

    /// An item or a delimiter. Items of encapsulated pixel data hold bytes, not elements.
    fn delimiter(&mut self, tag: (u16, u16)) -> Result<(), BoundsError> {
        let len = self.u32()?;
        if tag == SEQUENCE_END {
            self.in_fragments = false;
        }
        if tag == ITEM && len != UNDEFINED {
            self.check(tag, len)?;
            if self.in_fragments {
                self.skip(len)?;
            }
        }
        Ok(())
    }

    /// The VR (as dicom-parser takes it) and the declared length of the element `tag`.
    fn value_header(&mut self, tag: (u16, u16)) -> io::Result<([u8; 2], u32)> {
        if !self.explicit {
            return Ok((implicit_vr(tag), self.u32()?));
        }
        let mut vr = [0u8; 2];
        self.read(&mut vr)?;
        let short = has_short_length(&vr);
        let len = if short {
            u32::from(self.u16()?)
        } else {
            self.u16()?;
            self.u32()?
        };
        let known = short || has_long_length(&vr);
        let vr = if known { vr } else { *b"UN" };
        Ok((vr, len))
    }

    fn check(&self, tag: (u16, u16), len: u32) -> Result<(), BoundsError> {
        let remaining = self.size.saturating_sub(self.pos);
        if u64::from(len) > remaining {
            return Err(BoundsError::TooLong(tag.0, tag.1, len, remaining));
        }
        Ok(())
    }

    /// Does a value of `len` bytes start with an item tag (an implicit VR sequence)?
    fn starts_with_item(&mut self, len: u32) -> io::Result<bool> {
        if len < 8 {
            return Ok(false);
        }
        let tag = (self.u16()?, self.u16()?);
        self.r.seek_relative(-4)?;
        self.pos -= 4;
        Ok(tag == ITEM)
    }

    fn skip(&mut self, len: u32) -> io::Result<()> {
        self.r.seek_relative(i64::from(len))?;
        self.pos += u64::from(len);
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u16(&mut self) -> io::Result<u16> {
        let mut b = [0u8; 2];
        self.read(&mut b)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// The store's File Meta header naming `ts`, then `data_set` (as the fuzz target builds files).
    fn part10(ts: &str, data_set: &[u8]) -> Vec<u8> {
        let mut out = crate::store::disk::part10_header(&crate::store::disk::FileMeta {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
            sop_instance_uid: "1.2.3.4".into(),
            transfer_syntax_uid: ts.into(),
            source_ae_title: String::new(),
        });
        out.extend_from_slice(data_set);
        out
    }

    fn check(bytes: &[u8], ts: &str) -> Result<(), BoundsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.dcm");
        std::fs::write(&path, bytes).unwrap();
        check_lengths(&path, ts)
    }

    #[test]
    fn every_committed_sample_passes() {
        let dir = root().join("tests/dicom-samples");
        let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        let manifest: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert!(!manifest.is_empty());
        for e in manifest {
            let path = dir.join(e["path"].as_str().unwrap());
            let ts = e["transfer_syntax"].as_str().unwrap();
            check_lengths(&path, ts).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        }
    }

    #[test]
    fn a_declared_length_beyond_the_file_is_refused() {
        // (0010,0010) UT declaring 1 GiB, followed by 4 bytes
        let mut ds = vec![0x10, 0x00, 0x10, 0x00, b'U', b'T', 0, 0];
        ds.extend_from_slice(&0x4000_0000u32.to_le_bytes());
        ds.extend_from_slice(b"abcd");
        let err = check(&part10("1.2.840.10008.1.2.1", &ds), "1.2.840.10008.1.2.1");
        assert!(matches!(
            err,
            Err(BoundsError::TooLong(0x0010, 0x0010, _, _))
        ));
        // implicit VR: an item inside a sequence of undefined length
        let mut ds = vec![0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF];
        ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        ds.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, 0x00, 0x00, 0x00, 0x70]);
        let err = check(&part10("1.2.840.10008.1.2", &ds), "1.2.840.10008.1.2");
        assert!(matches!(
            err,
            Err(BoundsError::TooLong(0x0008, 0x1150, _, _))
        ));
    }

    /// Inputs the `dataset` fuzz target found allocating over 1 GiB in dicom-parser.
    #[test]
    fn fuzz_regressions_are_refused_cheaply() {
        // as in fuzz/fuzz_targets/dataset.rs: the first byte selects the syntax
        const SYNTAXES: [&str; 4] = [
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.1.99",
        ];
        for name in [
            "dataset-declared-length-1.bin",
            "dataset-declared-length-2.bin",
            "dataset-unknown-vr.bin",
            "dataset-deflated.bin",
        ] {
            let raw = std::fs::read(root().join("tests/fuzz-regressions").join(name)).unwrap();
            let ts = SYNTAXES[usize::from(raw[0]) % SYNTAXES.len()];
            let bytes = part10(ts, &raw[1..]);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.dcm");
            std::fs::write(&path, bytes).unwrap();
            let indexed = crate::store::ingest::index_file(&path, |a, b, c| format!("{a}/{b}/{c}"));
            assert!(indexed.is_err(), "{name}");
        }
    }

    /// Fuzz finding: in Implicit VR, (0000,0000) is UL; a length of 46 made dicom-parser read
    /// 44 bytes while counting 46, so it took the next element's tag bytes for a length of
    /// 0xFFFF0000 and allocated 4 GiB for it.
    #[test]
    fn a_binary_value_with_a_partial_last_value_is_refused() {
        let raw = std::fs::read(root().join("tests/fuzz-regressions/dataset-ul-partial-value.bin"))
            .unwrap();
        let err = check(&part10("1.2.840.10008.1.2", &raw[1..]), "1.2.840.10008.1.2");
        assert!(
            matches!(err, Err(BoundsError::PartialValue(0x0000, 0x0000, ref vr, 46)) if vr == "UL"),
            "{err:?}"
        );
        // explicit VR: an FD of 12 bytes
        let mut ds = vec![0x18, 0x00, 0x50, 0x00, b'F', b'D', 12, 0];
        ds.extend_from_slice(&[0u8; 12]);
        let err = check(&part10("1.2.840.10008.1.2.1", &ds), "1.2.840.10008.1.2.1");
        assert!(matches!(
            err,
            Err(BoundsError::PartialValue(0x0018, 0x0050, _, 12))
        ));
    }
}

//! Where the pixel data sits inside a stored file, found by walking element headers (seeking
//! over values) rather than decoding: the byte ranges of each frame, native or encapsulated,
//! so a frame request reads exactly that frame's bytes.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_DELIMITER: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: (u16, u16) = (0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Pixel attributes needed to cut native pixel data into frames.
#[derive(Debug, Clone, Copy)]
pub struct PixelGeometry {
    pub rows: u32,
    pub columns: u32,
    pub samples_per_pixel: u32,
    pub bits_allocated: u32,
    pub number_of_frames: u32,
}

impl PixelGeometry {
    /// Bytes of one native frame (bit-packed for BitsAllocated 1, rounded up).
    pub fn frame_len(&self) -> u64 {
        let bits = self.rows as u64
            * self.columns as u64
            * self.samples_per_pixel as u64
            * self.bits_allocated as u64;
        bits.div_ceil(8)
    }
}

/// One contiguous byte range in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub offset: u64,
    pub len: u64,
}

/// The byte ranges of each frame: one range for native frames, one or more fragments for
/// encapsulated ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameIndex {
    pub encapsulated: bool,
    pub frames: Vec<Vec<Range>>,
}

/// The top-level Pixel Data element of a file.
#[derive(Debug, Clone)]
pub enum PixelData {
    Native(Range),
    Encapsulated {
        offset_table: Vec<u32>,
        fragments: Vec<Range>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("the file has no Pixel Data")]
    NoPixelData,
    #[error("frame layout not supported: {0}")]
    Unsupported(String),
    #[error("malformed file: {0}")]
    Malformed(String),
}

/// Find the top-level Pixel Data of a Part 10 file in the given transfer syntax.
pub fn locate_pixel_data(path: &Path, ts_uid: &str) -> Result<PixelData, LayoutError> {
    let explicit = match ts_uid {
        "1.2.840.10008.1.2" => false,
        "1.2.840.10008.1.2.2" => {
            return Err(LayoutError::Unsupported("big endian".into()));
        }
        "1.2.840.10008.1.2.1.99" => {
            return Err(LayoutError::Unsupported("deflated data set".into()));
        }
        _ => true,
    };
    let mut r = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let start = data_set_start(&mut r)?;
    r.seek(SeekFrom::Start(start))?;
    let mut walker = Walker {
        r,
        explicit,
        pos: start,
    };
    walker.find_pixel_data()
}

/// Offset of the data set: after the preamble, "DICM" and the file meta group.
pub(crate) fn data_set_start<R: Read + Seek>(r: &mut R) -> Result<u64, LayoutError> {
    let mut head = [0u8; 144];
    r.read_exact(&mut head)?;
    if &head[128..132] != b"DICM" {
        return Err(LayoutError::Malformed("no DICM prefix".into()));
    }
    let tag = (
        u16::from_le_bytes([head[132], head[133]]),
        u16::from_le_bytes([head[134], head[135]]),
    );
    if tag != (0x0002, 0x0000) || &head[136..138] != b"UL" {
        return Err(LayoutError::Malformed(
            "file meta group has no group length".into(),
        ));
    }
    let gl = u32::from_le_bytes([head[140], head[141], head[142], head[143]]);
    Ok(144 + gl as u64)
}

struct Walker<R> {
    r: R,
    explicit: bool,
    pos: u64,
}

struct Header {
    tag: (u16, u16),
    vr: [u8; 2],
    len: u32,
}

impl<R: Read + Seek> Walker<R> {
    fn read_u16(&mut self) -> io::Result<u16> {
        let mut b = [0u8; 2];
        self.r.read_exact(&mut b)?;
        self.pos += 2;
        Ok(u16::from_le_bytes(b))
    }

    fn read_u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.r.read_exact(&mut b)?;
        self.pos += 4;
        Ok(u32::from_le_bytes(b))
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.r.seek_relative(n as i64)?;
        self.pos += n;
        Ok(())
    }

    /// Read the next element header; `None` at a clean end of file.
    fn header(&mut self) -> Result<Option<Header>, LayoutError> {
        let group = match self.read_u16() {
            Ok(g) => g,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let element = self.read_u16()?;
        let tag = (group, element);
        if group == 0xFFFE || !self.explicit {
            let len = self.read_u32()?;
            return Ok(Some(Header {
                tag,
                vr: *b"  ",
                len,
            }));
        }
        let mut vr = [0u8; 2];
        self.r.read_exact(&mut vr)?;
        self.pos += 2;
        let len = if has_short_length(&vr) {
            u32::from(self.read_u16()?)
        } else {
            self.skip(2)?;
            self.read_u32()?
        };
        Ok(Some(Header { tag, vr, len }))
    }

    fn find_pixel_data(&mut self) -> Result<PixelData, LayoutError> {
        while let Some(h) = self.header()? {
            if h.tag == PIXEL_DATA {
                return self.pixel_data(h);
            }
            self.skip_value(&h)?;
        }
        Err(LayoutError::NoPixelData)
    }

    fn skip_value(&mut self, h: &Header) -> Result<(), LayoutError> {
        if h.len != UNDEFINED {
            return Ok(self.skip(u64::from(h.len))?);
        }
        // undefined length: a sequence (or encapsulated data): walk its items
        self.skip_undefined_sequence()
    }

    fn skip_undefined_sequence(&mut self) -> Result<(), LayoutError> {
        loop {
            let h = self
                .header()?
                .ok_or_else(|| LayoutError::Malformed("sequence not terminated".into()))?;
            match h.tag {
                SEQUENCE_DELIMITER => return Ok(()),
                ITEM if h.len == UNDEFINED => self.skip_undefined_item()?,
                ITEM => self.skip(u64::from(h.len))?,
                other => {
                    return Err(LayoutError::Malformed(format!(
                        "unexpected ({:04X},{:04X}) in a sequence",
                        other.0, other.1
                    )))
                }
            }
        }
    }

    fn skip_undefined_item(&mut self) -> Result<(), LayoutError> {
        loop {
            let h = self
                .header()?
                .ok_or_else(|| LayoutError::Malformed("item not terminated".into()))?;
            if h.tag == ITEM_DELIMITER {
                return Ok(());
            }
            self.skip_value(&h)?;
        }
    }

    fn pixel_data(&mut self, h: Header) -> Result<PixelData, LayoutError> {
        if h.len != UNDEFINED {
            let _ = h.vr;
            return Ok(PixelData::Native(Range {
                offset: self.pos,
                len: u64::from(h.len),
            }));
        }
        let mut offset_table = Vec::new();
        let mut fragments = Vec::new();
        let mut first = true;
        loop {
            let item = self
                .header()?
                .ok_or_else(|| LayoutError::Malformed("pixel sequence not terminated".into()))?;
            match item.tag {
                SEQUENCE_DELIMITER => break,
                ITEM if item.len == UNDEFINED => {
                    return Err(LayoutError::Malformed(
                        "fragment with undefined length".into(),
                    ))
                }
                ITEM if first => {
                    for _ in 0..item.len / 4 {
                        offset_table.push(self.read_u32()?);
                    }
                    self.skip(u64::from(item.len % 4))?;
                }
                ITEM => {
                    fragments.push(Range {
                        offset: self.pos,
                        len: u64::from(item.len),
                    });
                    self.skip(u64::from(item.len))?;
                }
                other => {
                    return Err(LayoutError::Malformed(format!(
                        "unexpected ({:04X},{:04X}) in pixel data",
                        other.0, other.1
                    )))
                }
            }
            first = false;
        }
        Ok(PixelData::Encapsulated {
            offset_table,
            fragments,
        })
    }
}

/// Cut pixel data into frames.
pub fn frame_index(pixel: &PixelData, geom: &PixelGeometry) -> Result<FrameIndex, LayoutError> {
    let frames = geom.number_of_frames.max(1) as usize;
    match pixel {
        PixelData::Native(range) => {
            let flen = geom.frame_len();
            if flen == 0 {
                return Err(LayoutError::Malformed("zero-sized frames".into()));
            }
            let frames = (0..frames as u64)
                .map(|i| Range {
                    offset: range.offset + i * flen,
                    len: flen,
                })
                .take_while(|r| r.offset + r.len <= range.offset + range.len)
                .map(|r| vec![r])
                .collect();
            Ok(FrameIndex {
                encapsulated: false,
                frames,
            })
        }
        PixelData::Encapsulated {
            offset_table,
            fragments,
        } => Ok(FrameIndex {
            encapsulated: true,
            frames: group_fragments(offset_table, fragments, frames)?,
        }),
    }
}

/// Map fragments to frames: one fragment per frame, or by the Basic Offset Table, or all
/// fragments for a single frame.
fn group_fragments(
    offset_table: &[u32],
    fragments: &[Range],
    frames: usize,
) -> Result<Vec<Vec<Range>>, LayoutError> {
    if fragments.len() == frames {
        return Ok(fragments.iter().map(|f| vec![*f]).collect());
    }
    if frames == 1 {
        return Ok(vec![fragments.to_vec()]);
    }
    if offset_table.len() == frames {
        // offsets are relative to the first fragment's item header (8 bytes before its data)
        let base = fragments
            .first()
            .map(|f| f.offset - 8)
            .ok_or_else(|| LayoutError::Malformed("no fragments".into()))?;
        let mut out = vec![Vec::new(); frames];
        for f in fragments {
            let rel = f.offset - 8 - base;
            let idx = offset_table
                .iter()
                .rposition(|o| u64::from(*o) <= rel)
                .unwrap_or(0);
            out[idx].push(*f);
        }
        return Ok(out);
    }
    Err(LayoutError::Unsupported(format!(
        "{} fragments for {} frames without a basic offset table",
        fragments.len(),
        frames
    )))
}

/// Read the bytes of a set of ranges, concatenated.
pub fn read_ranges(path: &Path, ranges: &[Range]) -> io::Result<Vec<u8>> {
    let total: u64 = ranges.iter().map(|r| r.len).sum();
    let mut out = Vec::with_capacity(total as usize);
    let mut f = File::open(path)?;
    for r in ranges {
        f.seek(SeekFrom::Start(r.offset))?;
        let mut take = (&mut f).take(r.len);
        let n = take.read_to_end(&mut out)?;
        if n as u64 != r.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than its pixel data",
            ));
        }
    }
    Ok(out)
}

/// Explicit VRs whose header has a 16-bit length (PS3.5 7.1.2). Every other VR, unknown ones
/// included (read as UN, as dicom-encoding does), has 2 reserved bytes and a 32-bit length.
pub(crate) fn has_short_length(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// Explicit VRs of the standard whose header has 2 reserved bytes and a 32-bit length.
pub(crate) fn has_long_length(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_group_by_offset_table() {
        let frags = vec![
            Range {
                offset: 108,
                len: 10,
            },
            Range {
                offset: 126,
                len: 10,
            },
            Range {
                offset: 144,
                len: 10,
            },
        ];
        // frame 0 = fragments 0+1 (offset 0), frame 1 = fragment 2 (offset 36)
        let out = group_fragments(&[0, 36], &frags, 2).unwrap();
        assert_eq!(out[0].len(), 2);
        assert_eq!(out[1], vec![frags[2]]);
        assert!(group_fragments(&[], &frags, 2).is_err());
        assert_eq!(group_fragments(&[], &frags, 1).unwrap()[0].len(), 3);
    }

    #[test]
    fn native_frames_are_cut_by_geometry() {
        let geom = PixelGeometry {
            rows: 2,
            columns: 2,
            samples_per_pixel: 1,
            bits_allocated: 16,
            number_of_frames: 3,
        };
        let idx = frame_index(
            &PixelData::Native(Range {
                offset: 100,
                len: 24,
            }),
            &geom,
        )
        .unwrap();
        assert_eq!(idx.frames.len(), 3);
        assert_eq!(
            idx.frames[2],
            vec![Range {
                offset: 116,
                len: 8
            }]
        );
    }
}

//! Content negotiation for WADO-RS (PS3.18 §8.7): parse `Accept` as real viewers send it
//! (quoted or unquoted `type=`, `transfer-syntax=*`, q-values, several ranges) and choose, per
//! instance or frame, a media type and transfer syntax we can produce without changing pixels.

use crate::types::ts;

/// One media range of an Accept header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// `type/subtype`, lower-cased.
    pub media_type: String,
    /// Parameters with lower-cased names and unquoted values.
    pub params: Vec<(String, String)>,
    pub q: f32,
}

impl MediaRange {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn is_multipart(&self) -> bool {
        self.media_type == "multipart/related"
    }

    /// The media type of the parts: `type=` for multipart, else the range itself.
    pub fn part_type(&self) -> &str {
        if self.is_multipart() {
            self.param("type").unwrap_or("")
        } else {
            &self.media_type
        }
    }
}

/// Parse an Accept header; an absent or empty header means `*/*`.
pub fn parse_accept(header: Option<&str>) -> Vec<MediaRange> {
    let text = header.unwrap_or("").trim();
    if text.is_empty() {
        return vec![MediaRange {
            media_type: "*/*".into(),
            params: Vec::new(),
            q: 1.0,
        }];
    }
    let mut ranges: Vec<MediaRange> = split_outside_quotes(text, ',')
        .into_iter()
        .filter_map(|r| parse_range(&r))
        .filter(|r| r.q > 0.0)
        .collect();
    // stable: equal q keeps the client's order
    ranges.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    ranges
}

fn parse_range(text: &str) -> Option<MediaRange> {
    let mut parts = split_outside_quotes(text, ';').into_iter();
    let media_type = parts.next()?.trim().to_ascii_lowercase();
    if media_type.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    let mut q = 1.0;
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().trim_matches('"').trim().to_string();
        if k == "q" {
            q = v.parse().unwrap_or(1.0);
        } else if k == "type" {
            params.push((k, v.to_ascii_lowercase()));
        } else {
            params.push((k, v));
        }
    }
    Some(MediaRange {
        media_type,
        params,
        q,
    })
}

fn split_outside_quotes(text: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c == sep && !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// How one instance or frame will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Media type of the part (e.g. `application/dicom`, `application/octet-stream`, `image/jls`).
    pub part_type: String,
    /// Transfer syntax of the bytes sent.
    pub transfer_syntax: String,
    /// The stored bytes must be rewritten (implicit → explicit VR LE); pixels are unchanged.
    pub rewrite: bool,
    /// The pixel data must be decoded and encoded in `transfer_syntax`.
    pub transcode: bool,
    /// The client asked for a bare single-part body (e.g. `Accept: image/jphc`), not
    /// `multipart/related` (PS3.18 §8.7.3.5: only for a single frame).
    pub single_part: bool,
}

impl Choice {
    fn new(part_type: &str, transfer_syntax: &str) -> Self {
        Choice {
            part_type: part_type.into(),
            transfer_syntax: transfer_syntax.into(),
            rewrite: false,
            transcode: false,
            single_part: false,
        }
    }

    fn transcoded(part_type: &str, transfer_syntax: &str) -> Self {
        Choice {
            transcode: true,
            ..Choice::new(part_type, transfer_syntax)
        }
    }
}

/// Whether pixel data stored in one syntax can be converted to another (the codec layer's
/// answer, passed in so negotiation stays a pure function).
pub trait Convert {
    fn can_convert(&self, from_ts: &str, to_ts: &str) -> bool;
}

/// No conversion at all (as stored only).
pub struct AsStoredOnly;

impl Convert for AsStoredOnly {
    fn can_convert(&self, _: &str, _: &str) -> bool {
        false
    }
}

/// The most preferred ranges (those sharing the highest q-value). Answering from these
/// as stored is always right; anything else needs the full search with the codecs, so a
/// lower-q "as stored" never wins over a higher-q syntax we could produce.
pub fn preferred(ranges: &[MediaRange]) -> &[MediaRange] {
    let top = ranges.first().map_or(0.0, |r| r.q);
    let n = ranges.iter().take_while(|r| r.q == top).count();
    &ranges[..n]
}

/// Choose how to send a whole instance stored in `stored_ts` (PS3.18 §8.7.3.5: without a
/// `transfer-syntax` parameter, `application/dicom` means Explicit VR Little Endian).
pub fn choose_instance(
    ranges: &[MediaRange],
    stored_ts: &str,
    conv: &dyn Convert,
) -> Option<Choice> {
    ranges.iter().find_map(|r| {
        let wildcard = r.media_type == "*/*" || (r.is_multipart() && r.part_type().is_empty());
        if wildcard {
            return Some(Choice::new("application/dicom", stored_ts));
        }
        let part = r.part_type();
        if part != "application/dicom" && part != "application/*" && part != "*/*" {
            return None;
        }
        match r.param("transfer-syntax") {
            Some("*") => Some(Choice::new("application/dicom", stored_ts)),
            Some(wanted) => instance_in(wanted, stored_ts, conv),
            None => instance_in(ts::EXPLICIT_VR_LE, stored_ts, conv),
        }
    })
}

fn instance_in(wanted: &str, stored_ts: &str, conv: &dyn Convert) -> Option<Choice> {
    if wanted == stored_ts {
        return Some(Choice::new("application/dicom", stored_ts));
    }
    if wanted == ts::EXPLICIT_VR_LE && stored_ts == ts::IMPLICIT_VR_LE {
        return Some(Choice {
            rewrite: true,
            ..Choice::new("application/dicom", wanted)
        });
    }
    conv.can_convert(stored_ts, wanted)
        .then(|| Choice::transcoded("application/dicom", wanted))
}

/// The single-frame media type of a compressed transfer syntax (PS3.18 Table 8.7.3-5).
pub fn frame_media_type(ts_uid: &str) -> Option<&'static str> {
    Some(match ts_uid {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => return None,
    })
}

/// The default transfer syntax of a single-frame media type (PS3.18 Table 8.7.3-5).
pub fn default_ts_for(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        "image/jpeg" => "1.2.840.10008.1.2.4.70",
        "image/jls" => "1.2.840.10008.1.2.4.80",
        "image/jp2" => "1.2.840.10008.1.2.4.90",
        "image/jpx" => "1.2.840.10008.1.2.4.92",
        "image/jphc" => "1.2.840.10008.1.2.4.201",
        "image/dicom-rle" | "image/x-dicom-rle" => "1.2.840.10008.1.2.5",
        _ => return None,
    })
}

/// Choose how to send frames stored in `stored_ts`: as stored when the client allows it,
/// else converted to a syntax it names (native frames are sent as Explicit VR Little Endian
/// bytes, which is what they are for little-endian storage).
pub fn choose_frames(ranges: &[MediaRange], stored_ts: &str, conv: &dyn Convert) -> Option<Choice> {
    ranges.iter().find_map(|r| {
        let single_part = !r.is_multipart() && r.media_type != "*/*";
        frame_choice(r, stored_ts, conv).map(|c| Choice { single_part, ..c })
    })
}

/// What the codecs convert from: native frames are Explicit VR Little Endian bytes.
pub fn pixel_source_ts(stored_ts: &str) -> &str {
    if ts::is_native(stored_ts) {
        ts::EXPLICIT_VR_LE
    } else {
        stored_ts
    }
}

fn frame_choice(r: &MediaRange, stored_ts: &str, conv: &dyn Convert) -> Option<Choice> {
    let sent_ts = pixel_source_ts(stored_ts);
    let as_stored = Choice::new("application/octet-stream", sent_ts);
    let part = r.part_type();
    let wanted = r.param("transfer-syntax");
    if r.media_type == "*/*" || part.is_empty() || part == "*/*" {
        return Some(as_stored);
    }
    if part != "application/octet-stream" {
        return frame_in_media_type(part, wanted, stored_ts, conv);
    }
    let target = match wanted {
        Some("*") => return Some(as_stored),
        Some(w) => w,
        None => ts::EXPLICIT_VR_LE,
    };
    if target == sent_ts {
        return Some(as_stored);
    }
    conv.can_convert(sent_ts, target)
        .then(|| Choice::transcoded("application/octet-stream", target))
}

/// The server's own choice for frames (`transcode.preferred_frame_syntax`, e.g. HTJ2K RPCL
/// .202 for progressive viewers): taken when one of the client's most preferred ranges accepts
/// `preferred` (`transfer-syntax=*`, which lets the server choose, or naming it, or its
/// single-frame media type) and the stored pixels are native or lossless, so nothing is lost.
/// None means negotiate as usual.
pub fn prefer_frames_syntax(
    ranges: &[MediaRange],
    stored_ts: &str,
    preferred_ts: &str,
    conv: &dyn Convert,
) -> Option<Choice> {
    if stored_ts == preferred_ts
        || is_lossy(stored_ts)
        || !conv.can_convert(pixel_source_ts(stored_ts), preferred_ts)
    {
        return None;
    }
    let own_media_type = frame_media_type(preferred_ts);
    preferred(ranges).iter().find_map(|r| {
        let wanted = r.param("transfer-syntax");
        let names_it = matches!(wanted, Some("*")) || wanted == Some(preferred_ts);
        let part = r.part_type();
        let part_type = if part == "application/octet-stream" && names_it {
            "application/octet-stream"
        } else if own_media_type == Some(part) && (wanted.is_none() || names_it) {
            part
        } else {
            return None;
        };
        Some(Choice {
            single_part: !r.is_multipart(),
            ..Choice::transcoded(part_type, preferred_ts)
        })
    })
}

/// Syntaxes whose stored pixels already lost information: never re-encoded on our own
/// initiative (a lossless copy of them is larger and no better).
pub fn is_lossy(ts_uid: &str) -> bool {
    matches!(
        ts_uid,
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.81"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.93"
            | "1.2.840.10008.1.2.4.203"
    ) || ts_uid.starts_with("1.2.840.10008.1.2.4.10")
}

/// Frames requested as a single-frame media type (`image/jls`, `image/jphc`, ...).
fn frame_in_media_type(
    part: &str,
    wanted: Option<&str>,
    stored_ts: &str,
    conv: &dyn Convert,
) -> Option<Choice> {
    let own = frame_media_type(stored_ts);
    let matches_stored = own.is_some_and(|o| o == part || part == "image/*")
        && (matches!(wanted, None | Some("*")) || wanted == Some(stored_ts));
    if matches_stored {
        return own.map(|o| Choice::new(o, stored_ts));
    }
    let target = match wanted {
        Some(w) if w != "*" => w,
        _ => default_ts_for(part)?,
    };
    if frame_media_type(target) != Some(part) && default_ts_for(part).is_none() {
        return None;
    }
    conv.can_convert(pixel_source_ts(stored_ts), target)
        .then(|| Choice::transcoded(frame_media_type(target).unwrap_or(part), target))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OHIF: &str = "multipart/related; type=application/octet-stream; transfer-syntax=*";

    #[test]
    fn parses_ohif_frames_accept() {
        let r = parse_accept(Some(OHIF));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].part_type(), "application/octet-stream");
        assert_eq!(r[0].param("transfer-syntax"), Some("*"));
    }

    #[test]
    fn quoted_and_q_values() {
        let r = parse_accept(Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.90; q=0.5, multipart/related; type=\"application/dicom\"",
        ));
        assert_eq!(r[0].param("transfer-syntax"), None);
        assert_eq!(r[1].q, 0.5);
    }

    #[test]
    fn instance_defaults_to_explicit_le() {
        let r = parse_accept(Some("multipart/related; type=\"application/dicom\""));
        let c = choose_instance(&r, ts::IMPLICIT_VR_LE, &AsStoredOnly).unwrap();
        assert!(c.rewrite);
        assert_eq!(c.transfer_syntax, ts::EXPLICIT_VR_LE);
        assert!(choose_instance(&r, "1.2.840.10008.1.2.4.90", &AsStoredOnly).is_none());
        let star = parse_accept(Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        ));
        assert_eq!(
            choose_instance(&star, "1.2.840.10008.1.2.4.90", &AsStoredOnly)
                .unwrap()
                .transfer_syntax,
            "1.2.840.10008.1.2.4.90"
        );
    }

    struct Everything;
    impl Convert for Everything {
        fn can_convert(&self, _: &str, _: &str) -> bool {
            true
        }
    }

    #[test]
    fn conversions_are_chosen_only_when_needed() {
        let jls = parse_accept(Some("multipart/related; type=\"image/jls\""));
        let c = choose_frames(&jls, ts::EXPLICIT_VR_LE, &Everything).unwrap();
        assert!(c.transcode);
        assert_eq!(
            (c.part_type.as_str(), c.transfer_syntax.as_str()),
            ("image/jls", "1.2.840.10008.1.2.4.80")
        );
        let plain = parse_accept(Some("multipart/related; type=application/octet-stream"));
        let c = choose_frames(&plain, "1.2.840.10008.1.2.4.90", &Everything).unwrap();
        assert_eq!(c.transfer_syntax, ts::EXPLICIT_VR_LE);
        assert!(c.transcode);
        let default = parse_accept(Some("multipart/related; type=\"application/dicom\""));
        let c = choose_instance(&default, "1.2.840.10008.1.2.4.80", &Everything).unwrap();
        assert!(c.transcode && c.transfer_syntax == ts::EXPLICIT_VR_LE);
        let htj2k = parse_accept(Some("multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.202"));
        assert!(choose_instance(&htj2k, ts::EXPLICIT_VR_LE, &AsStoredOnly).is_none());
    }

    #[test]
    fn lower_q_as_stored_does_not_win() {
        let r = parse_accept(Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1; q=0.5, multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.202",
        ));
        assert!(choose_instance(preferred(&r), ts::EXPLICIT_VR_LE, &AsStoredOnly).is_none());
        let c = choose_instance(&r, ts::EXPLICIT_VR_LE, &Everything).unwrap();
        assert_eq!(c.transfer_syntax, "1.2.840.10008.1.2.4.202");
    }

    #[test]
    fn frames_negotiation() {
        let r = parse_accept(Some(OHIF));
        let c = choose_frames(&r, ts::IMPLICIT_VR_LE, &AsStoredOnly).unwrap();
        assert_eq!(c.transfer_syntax, ts::EXPLICIT_VR_LE);
        let c = choose_frames(&r, "1.2.840.10008.1.2.4.80", &AsStoredOnly).unwrap();
        assert_eq!(c.transfer_syntax, "1.2.840.10008.1.2.4.80");
        let plain = parse_accept(Some("multipart/related; type=application/octet-stream"));
        assert!(choose_frames(&plain, "1.2.840.10008.1.2.4.80", &AsStoredOnly).is_none());
        let jls = parse_accept(Some("multipart/related; type=image/jls"));
        assert_eq!(
            choose_frames(&jls, "1.2.840.10008.1.2.4.80", &AsStoredOnly)
                .unwrap()
                .part_type,
            "image/jls"
        );
    }

    const RPCL: &str = "1.2.840.10008.1.2.4.202";

    #[test]
    fn single_part_is_what_the_client_named() {
        let jphc = parse_accept(Some("image/jphc"));
        let c = choose_frames(&jphc, ts::EXPLICIT_VR_LE, &Everything).unwrap();
        assert!(c.single_part && c.transcode);
        assert_eq!(c.part_type, "image/jphc");
        let multi = parse_accept(Some(OHIF));
        assert!(
            !choose_frames(&multi, ts::EXPLICIT_VR_LE, &Everything)
                .unwrap()
                .single_part
        );
        let any = parse_accept(None);
        assert!(
            !choose_frames(&any, ts::EXPLICIT_VR_LE, &Everything)
                .unwrap()
                .single_part
        );
    }

    #[test]
    fn preferred_syntax_when_the_client_lets_us_choose() {
        let ohif = parse_accept(Some(OHIF));
        let c = prefer_frames_syntax(&ohif, ts::EXPLICIT_VR_LE, RPCL, &Everything).unwrap();
        assert_eq!(
            (
                c.part_type.as_str(),
                c.transfer_syntax.as_str(),
                c.transcode
            ),
            ("application/octet-stream", RPCL, true)
        );
        // never over a lossy source, never when stored so already, never without a codec
        assert!(prefer_frames_syntax(&ohif, "1.2.840.10008.1.2.4.50", RPCL, &Everything).is_none());
        assert!(prefer_frames_syntax(&ohif, RPCL, RPCL, &Everything).is_none());
        assert!(prefer_frames_syntax(&ohif, ts::EXPLICIT_VR_LE, RPCL, &AsStoredOnly).is_none());
        // a client that names another syntax gets that one
        let named = parse_accept(Some(
            "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
        ));
        assert!(prefer_frames_syntax(&named, ts::EXPLICIT_VR_LE, RPCL, &Everything).is_none());
        // the single-frame media type of the preferred syntax, without a syntax parameter
        let jphc = parse_accept(Some("image/jphc"));
        let c = prefer_frames_syntax(&jphc, ts::EXPLICIT_VR_LE, RPCL, &Everything).unwrap();
        assert!(c.single_part && c.transfer_syntax == RPCL);
    }
}

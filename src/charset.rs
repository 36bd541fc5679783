//! Specific Character Set (0008,0005): decoding and encoding of DICOM text values.
//!
//! This module owns everything Tsunagi does with character repertoires of text elements
//! (PN, LO, SH, ST, LT, UT, UC), following PS3.5 §6.1 and Annexes H (Japanese), I (Korean)
//! and PS3.3 C.12.1.1.2:
//!
//! - parsing the declared terms into a [`CharacterSet`];
//! - decoding the raw bytes of a value into Unicode, including the ISO 2022 code extension
//!   techniques (G0/G1 designation by escape sequences, return to the initial code
//!   elements at delimiters and control characters); decoding never fails;
//! - encoding Unicode text with the escape sequences PS3.5 requires;
//! - repairing strings that dicom-rs 0.10 decoded using only the first term of (0008,0005)
//!   ([`CharacterSet::fix_dicom_rs_text`]).
//!
//! Leniencies when decoding (they never change the result for conformant data):
//! bytes 0x80–0xFF with no G1 set designated (the default repertoire) are read as ISO 8859-1,
//! like dicom-rs and pydicom do; escape sequences for known sets are honoured even if the set
//! was not declared; where JIS X 0201 katakana is in G1, byte pairs that are invalid there but
//! form a Shift_JIS double-byte character are read as Shift_JIS (a common vendor deviation
//! with `ISO_IR 13`); JIS X 0208 rows outside the standard (NEC/IBM extensions) are accepted.
//! Encoding is strict: only the standard JIS X 0208-1990 rows are produced.
//!
//! JIS X 0208 and 0212 are mapped to Unicode through encoding_rs's EUC-JP (WHATWG) tables, so
//! for instance 0x2141 decodes to U+FF5E; the JIS-standard counterparts (U+301C WAVE DASH, …)
//! are accepted when encoding.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use encoding_rs::{
    Encoding, EUC_JP, EUC_KR, GB18030, GBK, ISO_8859_15, ISO_8859_2, ISO_8859_3, ISO_8859_4,
    ISO_8859_5, ISO_8859_6, ISO_8859_7, ISO_8859_8, SHIFT_JIS, UTF_8, WINDOWS_1254, WINDOWS_874,
};

/// The ESCAPE control character that starts an ISO 2022 escape sequence.
const ESC: u8 = 0x1B;

/// The character written for bytes that cannot be decoded.
const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// The declared Specific Character Set of a data set: its values in order (the first may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CharacterSet {
    terms: Vec<String>,
}

/// An error raised when text cannot be encoded in a character set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CharsetError {
    /// `ch` has no representation in the declared character set `charset`
    /// (the value of (0008,0005), terms joined by `\`).
    Unrepresentable {
        /// The character that cannot be encoded.
        ch: char,
        /// The Specific Character Set value in use.
        charset: String,
    },
}

impl fmt::Display for CharsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CharsetError::Unrepresentable { ch, charset } => {
                write!(
                    f,
                    "character {ch:?} (U+{:04X}) cannot be represented in ",
                    u32::from(*ch)
                )?;
                if charset.is_empty() {
                    f.write_str("the default character repertoire (ISO-IR 6)")
                } else {
                    write!(f, "Specific Character Set \"{charset}\"")
                }
            }
        }
    }
}

impl std::error::Error for CharsetError {}

impl fmt::Display for CharacterSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_value())
    }
}

impl CharacterSet {
    /// Builds a character set from its terms, trimming space/NUL padding from each and dropping
    /// trailing empty terms (an empty *first* term is kept: it stands for ISO-IR 6).
    pub fn from_terms<I: IntoIterator<Item = S>, S: AsRef<str>>(terms: I) -> Self {
        let mut terms: Vec<String> = terms
            .into_iter()
            .map(|t| t.as_ref().trim_matches([' ', '\0']).to_owned())
            .collect();
        while terms.last().is_some_and(String::is_empty) {
            terms.pop();
        }
        CharacterSet { terms }
    }

    /// Builds a character set from the raw (0008,0005) value, e.g. `"\\ISO 2022 IR 87"`.
    pub fn from_value(value: &str) -> Self {
        Self::from_terms(value.split('\\'))
    }

    /// The declared terms, in order, trimmed.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// The (0008,0005) value: the terms joined by `\` (empty when nothing was declared).
    pub fn to_value(&self) -> String {
        self.terms.join("\\")
    }

    /// Whether this is the default repertoire (nothing declared, or only ISO-IR 6 terms).
    pub fn is_default(&self) -> bool {
        self.terms
            .iter()
            .all(|t| matches!(t.as_str(), "" | "ISO_IR 6" | "ISO 2022 IR 6"))
    }

    /// Decode raw bytes of one value of a text element (PN, LO, SH, ST, LT, UT, UC; never split by '\\' inside).
    /// VR matters: PN resets to the initial code set at '^' and '=' delimiters; others at CR/LF/FF/TAB and '\\'.
    /// This method applies the non-PN rules; use [`CharacterSet::decode_pn`] for person names.
    /// Never fails: bytes that cannot be decoded become U+FFFD.
    pub fn decode(&self, raw: &[u8]) -> String {
        self.decode_value(raw, false)
    }

    /// Decodes one value of a PN element (also returns to the initial code elements at `^` and `=`).
    pub fn decode_pn(&self, raw: &[u8]) -> String {
        self.decode_value(raw, true)
    }

    /// Decodes one value, with the PN delimiter rules when `is_pn` is set.
    pub fn decode_value(&self, raw: &[u8], is_pn: bool) -> String {
        match self.scheme() {
            Scheme::Whole(encoding) => encoding.decode_without_bom_handling(raw).0.into_owned(),
            Scheme::Iso2022(plan) => Decoder::new(raw, plan.initial, is_pn).run(),
        }
    }

    /// Decodes a whole (possibly multi-valued) element value and splits it into values.
    ///
    /// Splitting happens after decoding, so a 0x5C byte inside a multi-byte character
    /// (JIS X 0208, GBK, …) is not mistaken for the `\` value delimiter.
    pub fn decode_values(&self, raw: &[u8], is_pn: bool) -> Vec<String> {
        self.decode_value(raw, is_pn)
            .split('\\')
            .map(str::to_owned)
            .collect()
    }

    /// Encode text for this character set, inserting ISO 2022 escape sequences as PS3.5 Annex H requires
    /// (e.g. ESC $ B before JIS X 0208 text, ESC ( B back to ASCII before '^', '=', '\\' and at the end of the
    /// value when the value switched; ESC ) I for IR 13 katakana; ESC $ ( D for JIS X 0212).
    ///
    /// Each character goes to the active G1 or G0 set if it can, otherwise to the first declared
    /// set that can represent it.
    ///
    /// # Errors
    ///
    /// [`CharsetError::Unrepresentable`] names the first character that no declared set holds
    /// (also ESC, which would corrupt an ISO 2022 value).
    pub fn encode(&self, text: &str, is_pn: bool) -> Result<Vec<u8>, CharsetError> {
        let result = match self.scheme() {
            Scheme::Whole(encoding) => encode_whole(encoding, text),
            Scheme::Iso2022(plan) => Encoder::new(&plan, is_pn).run(text),
        };
        result.map_err(|ch| CharsetError::Unrepresentable {
            ch,
            charset: self.to_value(),
        })
    }

    /// Repairs a (non-PN) value that dicom-rs 0.10 decoded.
    ///
    /// dicom-rs decodes text with only the FIRST term of (0008,0005): an empty first term or
    /// "ISO 2022 IR 6"/"ISO_IR 100"-like terms → ISO-8859-1, "ISO 2022 IR 13"/"ISO_IR 13" → WINDOWS-31J
    /// (Shift_JIS), "ISO 2022 IR 87" → ISO-2022-JP, "ISO_IR 192" → UTF-8, etc. (see
    /// `dicom_encoding::text::SpecificCharacterSet::from_code`). The original bytes are recovered
    /// when that is exactly possible (checked by decoding them again the way dicom-rs does) and
    /// decoded with [`CharacterSet::decode`]. The input is returned unchanged when dicom-rs's
    /// decoding was already correct (a single term it supports, no escape sequences left in the
    /// text) or when the bytes cannot be recovered (e.g. after dicom-rs's ISO-2022-JP decoding).
    ///
    /// dicom-rs splits multi-valued elements at 0x5C bytes before decoding, which can cut a
    /// JIS X 0208 character in two: join its values with `\`, repair, then split the result at `\`.
    pub fn fix_dicom_rs_text<'a>(&self, decoded_by_dicom_rs: &'a str) -> Cow<'a, str> {
        self.fix_dicom_rs(decoded_by_dicom_rs, false)
    }

    /// Like [`CharacterSet::fix_dicom_rs_text`], for a PN value.
    pub fn fix_dicom_rs_pn<'a>(&self, decoded_by_dicom_rs: &'a str) -> Cow<'a, str> {
        self.fix_dicom_rs(decoded_by_dicom_rs, true)
    }

    /// Recovers the raw bytes of a value from the string dicom-rs 0.10 decoded it to, if that
    /// can be done exactly (dicom-rs decodes the returned bytes back to `decoded_by_dicom_rs`).
    pub fn recover_dicom_rs_bytes(&self, decoded_by_dicom_rs: &str) -> Option<Vec<u8>> {
        let codec = self.dicom_rs_codec();
        let inverse = DicomRsInverse::for_codec(&codec.name())?;
        [true, false].into_iter().find_map(|octal| {
            let raw = inverse.encode(decoded_by_dicom_rs, octal)?;
            let again = codec.decode(&raw).ok()?;
            (again == decoded_by_dicom_rs).then_some(raw)
        })
    }

    /// Shared body of the `fix_dicom_rs_*` methods.
    fn fix_dicom_rs<'a>(&self, decoded: &'a str, is_pn: bool) -> Cow<'a, str> {
        if self.dicom_rs_was_right(decoded) {
            return Cow::Borrowed(decoded);
        }
        match self.recover_dicom_rs_bytes(decoded) {
            Some(raw) => {
                let fixed = self.decode_value(&raw, is_pn);
                if fixed == decoded {
                    Cow::Borrowed(decoded)
                } else {
                    Cow::Owned(fixed)
                }
            }
            None => Cow::Borrowed(decoded),
        }
    }

    /// Whether dicom-rs decoded this string the same way [`CharacterSet::decode`] would: a single
    /// term that dicom-rs knows, and no escape sequence left undecoded.
    fn dicom_rs_was_right(&self, decoded: &str) -> bool {
        self.terms.len() <= 1
            && self
                .terms
                .first()
                .is_none_or(|t| SpecificCharacterSet::from_code(t).is_some())
            && !decoded.contains(char::from(ESC))
    }

    /// The codec dicom-rs 0.10 picks: from the first term, or its default (ISO-8859-1) when the
    /// first term is empty or unknown to it.
    fn dicom_rs_codec(&self) -> SpecificCharacterSet {
        self.terms
            .first()
            .and_then(|t| SpecificCharacterSet::from_code(t))
            .unwrap_or_default()
    }

    /// Derives how values are decoded and encoded from the declared terms.
    fn scheme(&self) -> Scheme {
        let first = self.terms.first().map_or("", String::as_str);
        match parse_term(first) {
            Some(Term::Whole(encoding)) => Scheme::Whole(encoding),
            Some(Term::Iso2022 { g0, g1 }) => Scheme::Iso2022(self.plan(State::initial(g0, g1))),
            None => Scheme::Iso2022(self.plan(State::initial(None, None))),
        }
    }

    /// The ISO 2022 plan: the initial state and, in declaration order, the non-ASCII sets.
    fn plan(&self, initial: State) -> Plan {
        let sets = self
            .terms
            .iter()
            .filter_map(|t| match parse_term(t) {
                Some(Term::Iso2022 { g0, g1 }) => Some([g0, g1]),
                _ => None,
            })
            .flatten()
            .flatten()
            .filter(|set| !set.is_ascii_like())
            .collect();
        Plan { initial, sets }
    }
}

// ---------------------------------------------------------------------------------------------
// Terms, code elements and their escape sequences (PS3.3 Tables C.12-2 to C.12-5).

/// A graphic character set designated to G0 or G1 by an ISO 2022 escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    /// ISO-IR 6 (ASCII), G0: `ESC ( B`.
    Ascii,
    /// ISO-IR 14 (JIS X 0201 romaji), G0: `ESC ( J`; treated as ASCII.
    JisRoman,
    /// ISO-IR 13 (JIS X 0201 katakana), G1: `ESC ) I` (G0 with `ESC ( I`, decoding only).
    JisKatakana,
    /// ISO-IR 87 (JIS X 0208), G0: `ESC $ B` (`ESC $ @` accepted when decoding).
    Jis0208,
    /// ISO-IR 159 (JIS X 0212), G0: `ESC $ ( D`.
    Jis0212,
    /// ISO-IR 149 (KS X 1001), G1: `ESC $ ) C`.
    Ksx1001,
    /// ISO-IR 58 (GB 2312), G1: `ESC $ ) A`.
    Gb2312,
    /// A 96-character set (right half of an ISO 8859 part, TIS 620), G1: `ESC - F`, F the final byte.
    Upper(u8),
}

impl Set {
    /// Whether the set is designated to G0 (otherwise G1) when encoding.
    fn is_g0(self) -> bool {
        matches!(
            self,
            Set::Ascii | Set::JisRoman | Set::Jis0208 | Set::Jis0212
        )
    }

    /// Whether the set is ASCII or read as ASCII (JIS X 0201 romaji).
    fn is_ascii_like(self) -> bool {
        matches!(self, Set::Ascii | Set::JisRoman)
    }

    /// Whether characters of the set take two bytes.
    fn is_double_byte(self) -> bool {
        matches!(
            self,
            Set::Jis0208 | Set::Jis0212 | Set::Ksx1001 | Set::Gb2312
        )
    }

    /// Appends the escape sequence designating this set (to G0 or G1, see [`Set::is_g0`]).
    fn push_designation(self, out: &mut Vec<u8>) {
        let tail: &[u8] = match self {
            Set::Ascii => b"(B",
            Set::JisRoman => b"(J",
            Set::JisKatakana => b")I",
            Set::Jis0208 => b"$B",
            Set::Jis0212 => b"$(D",
            Set::Ksx1001 => b"$)C",
            Set::Gb2312 => b"$)A",
            Set::Upper(final_byte) => {
                out.extend_from_slice(&[ESC, b'-', final_byte]);
                return;
            }
        };
        out.push(ESC);
        out.extend_from_slice(tail);
    }
}

/// What one defined term of (0008,0005) stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    /// A term taking part in ISO 2022 code extension, with the sets it brings to G0 and G1.
    Iso2022 { g0: Option<Set>, g1: Option<Set> },
    /// A term fixing one encoding for whole values, without code extension (ISO_IR 192, GB18030, GBK).
    Whole(&'static Encoding),
}

/// Parses one term; `None` for terms this module does not know (they are ignored).
fn parse_term(term: &str) -> Option<Term> {
    let term = term.trim_matches([' ', '\0']);
    match term {
        "" => return iso_ir_term("6"),
        "ISO_IR 192" => return Some(Term::Whole(UTF_8)),
        "GB18030" => return Some(Term::Whole(GB18030)),
        "GBK" => return Some(Term::Whole(GBK)),
        _ => {}
    }
    let number = term
        .strip_prefix("ISO 2022 IR ")
        .or_else(|| term.strip_prefix("ISO_IR "))
        .or_else(|| term.strip_prefix("ISO_IR_"))?;
    iso_ir_term(number)
}

/// The G0/G1 sets of the term with this ISO-IR registration number.
fn iso_ir_term(number: &str) -> Option<Term> {
    let (g0, g1) = match number {
        "6" => (Some(Set::Ascii), None),
        "13" => (Some(Set::JisRoman), Some(Set::JisKatakana)),
        "87" => (Some(Set::Jis0208), None),
        "159" => (Some(Set::Jis0212), None),
        "149" => (None, Some(Set::Ksx1001)),
        "58" => (None, Some(Set::Gb2312)),
        _ => (
            Some(Set::Ascii),
            Some(Set::Upper(upper_final_byte(number)?)),
        ),
    };
    Some(Term::Iso2022 { g0, g1 })
}

/// The final byte of `ESC - F` for the single-byte terms with a 96-character G1 set.
fn upper_final_byte(number: &str) -> Option<u8> {
    Some(match number {
        "100" => b'A',
        "101" => b'B',
        "109" => b'C',
        "110" => b'D',
        "126" => b'F',
        "127" => b'G',
        "138" => b'H',
        "144" => b'L',
        "148" => b'M',
        "166" => b'T',
        "203" => b'b',
        _ => return None,
    })
}

/// The encoding_rs encoding whose upper half is the 96-set with this final byte.
///
/// `None` for ISO-IR 100 (final byte `A`), which is handled directly as Latin-1 because
/// encoding_rs maps the ISO-8859-1 label to windows-1252, and for unknown final bytes.
fn upper_encoding(final_byte: u8) -> Option<&'static Encoding> {
    Some(match final_byte {
        b'B' => ISO_8859_2,
        b'C' => ISO_8859_3,
        b'D' => ISO_8859_4,
        b'F' => ISO_8859_7,
        b'G' => ISO_8859_6,
        b'H' => ISO_8859_8,
        b'L' => ISO_8859_5,
        b'M' => WINDOWS_1254,
        b'T' => WINDOWS_874,
        b'b' => ISO_8859_15,
        _ => return None,
    })
}

/// The set designated by an escape sequence (the bytes after ESC), and whether to G0.
fn designation(sequence: &[u8]) -> Option<(Set, bool)> {
    Some(match sequence {
        b"(B" => (Set::Ascii, true),
        b"(J" => (Set::JisRoman, true),
        b"(I" => (Set::JisKatakana, true),
        b"$B" | b"$@" | b"$(B" | b"$(@" => (Set::Jis0208, true),
        b"$(D" => (Set::Jis0212, true),
        b"$A" | b"$(A" => (Set::Gb2312, true),
        b"$(C" => (Set::Ksx1001, true),
        b")I" => (Set::JisKatakana, false),
        b"$)C" => (Set::Ksx1001, false),
        b"$)A" => (Set::Gb2312, false),
        [b'-', f] if *f == b'A' || upper_encoding(*f).is_some() => (Set::Upper(*f), false),
        _ => return None,
    })
}

/// The sets invoked in G0 and G1 at one point of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// The set for bytes 0x21–0x7E.
    g0: Set,
    /// The set for bytes 0xA1–0xFE; `None` reads them as Latin-1 (lenient default).
    g1: Option<Set>,
}

impl State {
    /// The state at the start of each value, from the first term's sets: G0 is ASCII unless the
    /// first term is ISO-IR 13 (JIS X 0201 romaji); multi-byte G0 sets never start active.
    fn initial(g0: Option<Set>, g1: Option<Set>) -> State {
        let g0 = g0.filter(|s| s.is_ascii_like()).unwrap_or(Set::Ascii);
        State { g0, g1 }
    }
}

/// How values of a data set are decoded and encoded.
enum Scheme {
    /// One encoding for the whole value, no code extension.
    Whole(&'static Encoding),
    /// ISO 2022 code extension.
    Iso2022(Plan),
}

/// The ISO 2022 parameters derived from all terms.
struct Plan {
    /// The state at the start of a value and after each delimiter.
    initial: State,
    /// The declared non-ASCII sets, in declaration order (encoding preference).
    sets: Vec<Set>,
}

// ---------------------------------------------------------------------------------------------
// Decoding.

/// An ISO 2022 decoder for one value.
struct Decoder<'a> {
    raw: &'a [u8],
    pos: usize,
    initial: State,
    state: State,
    is_pn: bool,
    out: String,
}

impl<'a> Decoder<'a> {
    /// Prepares to decode `raw` starting in `initial`.
    fn new(raw: &'a [u8], initial: State, is_pn: bool) -> Self {
        Decoder {
            raw,
            pos: 0,
            initial,
            state: initial,
            is_pn,
            out: String::with_capacity(raw.len()),
        }
    }

    /// Decodes everything.
    fn run(mut self) -> String {
        while let Some(&byte) = self.raw.get(self.pos) {
            self.step(byte);
        }
        self.out
    }

    /// Decodes the character (or escape sequence) starting with `byte` at `pos`.
    fn step(&mut self, byte: u8) {
        match byte {
            ESC => self.escape(),
            0x00..=0x1F | 0x7F => {
                // Control characters: the initial code elements are active again (PS3.5 6.1.2.5.3).
                self.emit(char::from(byte), 1);
                self.state = self.initial;
            }
            0x20 => self.emit(' ', 1),
            0x21..=0x7E => self.graphic_left(byte),
            _ => self.graphic_right(byte),
        }
    }

    /// Appends `c` and advances over `len` bytes.
    fn emit(&mut self, c: char, len: usize) {
        self.out.push(c);
        self.pos += len;
    }

    /// Reads an escape sequence (ESC, intermediates 0x20–0x2F, a final 0x30–0x7E) and applies it.
    fn escape(&mut self) {
        let rest = self.raw.get(self.pos + 1..).unwrap_or_default();
        let intermediates = rest
            .iter()
            .take_while(|b| (0x20..=0x2F).contains(*b))
            .count();
        let complete = rest
            .get(intermediates)
            .is_some_and(|f| (0x30..=0x7E).contains(f));
        if !complete {
            // Truncated or malformed: drop ESC and its intermediates.
            self.emit(REPLACEMENT, 1 + intermediates);
            return;
        }
        let sequence = rest.get(..=intermediates).unwrap_or_default();
        self.pos += 1 + sequence.len();
        match designation(sequence) {
            Some((set, true)) => self.state.g0 = set,
            Some((set, false)) => self.state.g1 = Some(set),
            None => self.out.push(REPLACEMENT),
        }
    }

    /// Decodes a byte 0x21–0x7E through G0.
    fn graphic_left(&mut self, byte: u8) {
        match self.state.g0 {
            Set::Ascii | Set::JisRoman => {
                self.emit(char::from(byte), 1);
                if self.is_delimiter(byte) {
                    self.state = self.initial;
                }
            }
            Set::JisKatakana => self.emit(katakana(byte | 0x80).unwrap_or(REPLACEMENT), 1),
            set if set.is_double_byte() => self.double(set, 0x21..=0x7E),
            _ => self.emit(REPLACEMENT, 1),
        }
    }

    /// Decodes a byte 0x80–0xFF through G1.
    fn graphic_right(&mut self, byte: u8) {
        match self.state.g1 {
            None => self.emit(char::from(byte), 1),
            Some(Set::JisKatakana) => self.katakana_or_shift_jis(byte),
            Some(Set::Upper(final_byte)) => {
                self.emit(decode_upper(final_byte, byte).unwrap_or(REPLACEMENT), 1);
            }
            Some(set) if set.is_double_byte() => self.double(set, 0xA1..=0xFE),
            Some(_) => self.emit(REPLACEMENT, 1),
        }
    }

    /// Whether `byte`, read in a single-byte G0, delimits a value or PN component.
    fn is_delimiter(&self, byte: u8) -> bool {
        byte == b'\\' || (self.is_pn && (byte == b'^' || byte == b'='))
    }

    /// Decodes a two-byte character of `set` whose bytes must both lie in `range`.
    fn double(&mut self, set: Set, range: std::ops::RangeInclusive<u8>) {
        let pair = self.raw.get(self.pos..self.pos + 2).unwrap_or_default();
        match pair {
            [b1, b2] if range.contains(b1) && range.contains(b2) => {
                let c = decode_double(set, b1 | 0x80, b2 | 0x80);
                self.emit(c.unwrap_or(REPLACEMENT), 2);
            }
            _ => self.emit(REPLACEMENT, 1),
        }
    }

    /// Decodes a JIS X 0201 katakana byte, or a Shift_JIS double-byte character (leniency).
    fn katakana_or_shift_jis(&mut self, byte: u8) {
        if let Some(c) = katakana(byte) {
            return self.emit(c, 1);
        }
        let pair = self.raw.get(self.pos..self.pos + 2).unwrap_or_default();
        match decode_one(SHIFT_JIS, pair) {
            Some(c) if pair.len() == 2 => self.emit(c, 2),
            _ => self.emit(REPLACEMENT, 1),
        }
    }
}

/// The half-width katakana for a JIS X 0201 byte 0xA1–0xDF.
fn katakana(byte: u8) -> Option<char> {
    (0xA1..=0xDF)
        .contains(&byte)
        .then(|| char::from_u32(0xFF61 + u32::from(byte - 0xA1)))
        .flatten()
}

/// Decodes a byte 0x80–0xFF of the 96-set with this final byte.
fn decode_upper(final_byte: u8, byte: u8) -> Option<char> {
    match upper_encoding(final_byte) {
        Some(encoding) => decode_one(encoding, &[byte]),
        None => Some(char::from(byte)),
    }
}

/// Decodes a two-byte character of `set`, given as bytes 0xA1–0xFE.
fn decode_double(set: Set, b1: u8, b2: u8) -> Option<char> {
    match set {
        Set::Jis0208 => decode_one(EUC_JP, &[b1, b2]),
        Set::Jis0212 => decode_one(EUC_JP, &[0x8F, b1, b2]),
        Set::Ksx1001 => decode_one(EUC_KR, &[b1, b2]),
        Set::Gb2312 => decode_one(GBK, &[b1, b2]),
        _ => None,
    }
}

/// Decodes `bytes` that must form exactly one character in `encoding`.
fn decode_one(encoding: &'static Encoding, bytes: &[u8]) -> Option<char> {
    let text = encoding.decode_without_bom_handling_and_without_replacement(bytes)?;
    let mut chars = text.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

// ---------------------------------------------------------------------------------------------
// Encoding.

/// The bytes of one encoded character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    One(u8),
    Two(u8, u8),
}

impl Code {
    /// Appends the bytes to `out`.
    fn push_to(self, out: &mut Vec<u8>) {
        match self {
            Code::One(b) => out.push(b),
            Code::Two(b1, b2) => out.extend_from_slice(&[b1, b2]),
        }
    }
}

/// Encodes `text` with a whole-value encoding; the error is the first unrepresentable character.
fn encode_whole(encoding: &'static Encoding, text: &str) -> Result<Vec<u8>, char> {
    if encoding == UTF_8 {
        return Ok(text.as_bytes().to_vec());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        out.extend(encode_char(encoding, c).ok_or(c)?);
    }
    Ok(out)
}

/// Encodes one character with encoding_rs, `None` if `encoding` cannot represent it.
fn encode_char(encoding: &'static Encoding, c: char) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4];
    let (bytes, _, had_errors) = encoding.encode(c.encode_utf8(&mut buf));
    (!had_errors).then(|| bytes.into_owned())
}

/// An ISO 2022 encoder for one value.
struct Encoder<'a> {
    plan: &'a Plan,
    state: State,
    is_pn: bool,
    out: Vec<u8>,
}

impl<'a> Encoder<'a> {
    /// Prepares to encode one value under `plan`.
    fn new(plan: &'a Plan, is_pn: bool) -> Self {
        Encoder {
            plan,
            state: plan.initial,
            is_pn,
            out: Vec::new(),
        }
    }

    /// Encodes `text`, returning to the initial G0 set at the end; the error is the first
    /// unrepresentable character.
    fn run(mut self, text: &str) -> Result<Vec<u8>, char> {
        for c in text.chars() {
            match u8::try_from(c) {
                Ok(ESC) => return Err(c),
                Ok(byte) if byte.is_ascii() => self.ascii(byte),
                _ => self.non_ascii(c)?,
            }
        }
        self.restore_g0();
        Ok(self.out)
    }

    /// Writes an ASCII character, returning to the initial code elements before delimiters and
    /// control characters, and to a single-byte G0 set before other characters.
    fn ascii(&mut self, byte: u8) {
        if self.is_reset_point(byte) {
            self.restore_g0();
            self.state.g1 = self.plan.initial.g1;
        } else if !self.state.g0.is_ascii_like() {
            self.designate(self.plan.initial.g0);
        }
        self.out.push(byte);
    }

    /// Whether the initial code elements must be active before `byte` (PS3.5 6.1.2.5.3).
    fn is_reset_point(&self, byte: u8) -> bool {
        byte.is_ascii_control() || byte == b'\\' || (self.is_pn && (byte == b'^' || byte == b'='))
    }

    /// Writes a non-ASCII character through the active G1 or G0 set, or else designates the first
    /// declared set that can represent it.
    fn non_ascii(&mut self, c: char) -> Result<(), char> {
        let active = [self.state.g1, Some(self.state.g0)];
        if let Some(code) = active.into_iter().flatten().find_map(|s| encode_in(s, c)) {
            code.push_to(&mut self.out);
            return Ok(());
        }
        let (set, code) = self
            .plan
            .sets
            .iter()
            .find_map(|&s| encode_in(s, c).map(|code| (s, code)))
            .ok_or(c)?;
        self.designate(set);
        code.push_to(&mut self.out);
        Ok(())
    }

    /// Designates the initial G0 set again if another one is active.
    fn restore_g0(&mut self) {
        if self.state.g0 != self.plan.initial.g0 {
            self.designate(self.plan.initial.g0);
        }
    }

    /// Writes the escape sequence for `set` and records it as active.
    fn designate(&mut self, set: Set) {
        set.push_designation(&mut self.out);
        if set.is_g0() {
            self.state.g0 = set;
        } else {
            self.state.g1 = Some(set);
        }
    }
}

/// The code of non-ASCII `c` in `set` (G1 sets give 8-bit bytes, G0 sets 7-bit bytes).
fn encode_in(set: Set, c: char) -> Option<Code> {
    match set {
        Set::Ascii | Set::JisRoman => None,
        Set::JisKatakana => encode_katakana(c),
        Set::Upper(final_byte) => encode_upper(final_byte, c),
        Set::Jis0208 => jis0208_table().get(&c).map(|&[b1, b2]| Code::Two(b1, b2)),
        Set::Jis0212 => jis0212_table().get(&c).map(|&[b1, b2]| Code::Two(b1, b2)),
        Set::Ksx1001 => encode_double_g1(EUC_KR, c),
        Set::Gb2312 => encode_double_g1(GBK, c),
    }
}

/// The JIS X 0201 byte (G1) of a half-width katakana.
fn encode_katakana(c: char) -> Option<Code> {
    let offset = u32::from(c).checked_sub(0xFF61)?;
    u8::try_from(offset)
        .ok()
        .filter(|&o| o <= 0xDF - 0xA1)
        .map(|o| Code::One(0xA1 + o))
}

/// The byte 0xA0–0xFF of `c` in the 96-set with this final byte.
fn encode_upper(final_byte: u8, c: char) -> Option<Code> {
    let byte = match upper_encoding(final_byte) {
        None => u8::try_from(c).ok()?,
        Some(encoding) => match encode_char(encoding, c)?.as_slice() {
            [b] => *b,
            _ => return None,
        },
    };
    (byte >= 0xA0).then_some(Code::One(byte))
}

/// The two bytes 0xA1–0xFE of `c` in a 94×94 G1 set, via an EUC-style encoding_rs encoding.
fn encode_double_g1(encoding: &'static Encoding, c: char) -> Option<Code> {
    let in_range = |b: &u8| (0xA1..=0xFE).contains(b);
    match encode_char(encoding, c)?.as_slice() {
        [b1, b2] if in_range(b1) && in_range(b2) => Some(Code::Two(*b1, *b2)),
        _ => None,
    }
}

/// JIS-standard code points that encoding_rs (WHATWG) maps to other characters, with their
/// JIS X 0208 codes; accepted when encoding.
const JIS0208_ALIASES: [(char, [u8; 2]); 6] = [
    ('\u{301C}', [0x21, 0x41]), // WAVE DASH (decodes as U+FF5E)
    ('\u{2016}', [0x21, 0x42]), // DOUBLE VERTICAL LINE (U+2225)
    ('\u{2212}', [0x21, 0x5D]), // MINUS SIGN (U+FF0D)
    ('\u{00A2}', [0x21, 0x71]), // CENT SIGN (U+FFE0)
    ('\u{00A3}', [0x21, 0x72]), // POUND SIGN (U+FFE1)
    ('\u{00AC}', [0x22, 0x4C]), // NOT SIGN (U+FFE2)
];

/// Unicode → JIS X 0208 (7-bit bytes), rows 1–8 and 16–84 only (JIS X 0208-1990), built once.
fn jis0208_table() -> &'static HashMap<char, [u8; 2]> {
    static TABLE: OnceLock<HashMap<char, [u8; 2]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let standard_row = |b1: u8| matches!(b1, 0x21..=0x28 | 0x30..=0x74);
        let mut table = jis_table(Set::Jis0208, standard_row);
        for (c, code) in JIS0208_ALIASES {
            table.entry(c).or_insert(code);
        }
        table
    })
}

/// Unicode → JIS X 0212 (7-bit bytes), built once (encoding_rs cannot encode JIS X 0212).
fn jis0212_table() -> &'static HashMap<char, [u8; 2]> {
    static TABLE: OnceLock<HashMap<char, [u8; 2]>> = OnceLock::new();
    TABLE.get_or_init(|| jis_table(Set::Jis0212, |_| true))
}

/// Builds a reverse table by decoding every code of `set` in the rows `row` accepts;
/// the first code of a character wins.
fn jis_table(set: Set, row: impl Fn(u8) -> bool) -> HashMap<char, [u8; 2]> {
    let mut table = HashMap::new();
    for b1 in (0x21..=0x7E).filter(|&b| row(b)) {
        for b2 in 0x21..=0x7E {
            if let Some(c) = decode_double(set, b1 | 0x80, b2 | 0x80) {
                table.entry(c).or_insert([b1, b2]);
            }
        }
    }
    table
}

// ---------------------------------------------------------------------------------------------
// Undoing dicom-rs's decoding.

/// The inverse of the codec dicom-rs used.
enum DicomRsInverse {
    /// ISO-8859-1: every character U+0000–U+00FF is its byte.
    Latin1,
    /// An encoding_rs encoding with the same mapping as dicom-rs's codec.
    Table(&'static Encoding),
}

impl DicomRsInverse {
    /// The inverse for a dicom-rs codec name; `None` where the bytes are lost (ISO-2022-JP
    /// consumes the escape sequences).
    fn for_codec(name: &str) -> Option<Self> {
        Some(match name {
            "ISO_IR 6" | "ISO_IR 100" => DicomRsInverse::Latin1,
            "ISO_IR 13" => DicomRsInverse::Table(SHIFT_JIS),
            "ISO_IR 101" => DicomRsInverse::Table(ISO_8859_2),
            "ISO_IR 109" => DicomRsInverse::Table(ISO_8859_3),
            "ISO_IR 110" => DicomRsInverse::Table(ISO_8859_4),
            "ISO_IR 126" => DicomRsInverse::Table(ISO_8859_7),
            "ISO_IR 127" => DicomRsInverse::Table(ISO_8859_6),
            "ISO_IR 138" => DicomRsInverse::Table(ISO_8859_8),
            "ISO_IR 144" => DicomRsInverse::Table(ISO_8859_5),
            "ISO_IR 149" => DicomRsInverse::Table(EUC_KR),
            "ISO_IR 166" => DicomRsInverse::Table(WINDOWS_874),
            "ISO_IR 192" => DicomRsInverse::Table(UTF_8),
            "GB18030" => DicomRsInverse::Table(GB18030),
            "GBK" => DicomRsInverse::Table(GBK),
            _ => return None,
        })
    }

    /// Re-encodes `text`; with `octal`, dicom-rs's `\ooo` escapes for undecodable bytes
    /// 0x80–0xFF are turned back into those bytes.
    fn encode(&self, text: &str, octal: bool) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some(byte) = octal.then(|| octal_escape(rest)).flatten() {
                out.push(byte);
                rest = rest.get(4..)?;
                continue;
            }
            self.push_char(c, &mut out)?;
            rest = rest.get(c.len_utf8()..)?;
        }
        Some(out)
    }

    /// Appends the bytes of one character.
    fn push_char(&self, c: char, out: &mut Vec<u8>) -> Option<()> {
        match self {
            DicomRsInverse::Latin1 => out.push(u8::try_from(c).ok()?),
            DicomRsInverse::Table(_) if c.is_ascii() => out.push(u8::try_from(c).ok()?),
            DicomRsInverse::Table(encoding) => out.extend(encode_char(encoding, c)?),
        }
        Some(())
    }
}

/// The byte of a leading `\ooo` escape (three octal digits, value 0o200–0o377).
fn octal_escape(text: &str) -> Option<u8> {
    let digits = text.strip_prefix('\\')?.get(..3)?;
    if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u8::from_str_radix(digits, 8).ok().filter(|&b| b >= 0o200)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PS3.5 H.3.1: `\ISO 2022 IR 87`.
    const H31_TEXT: &str = "Yamada^Tarou=山田^太郎=やまだ^たろう";
    const H31_BYTES: &[u8] = &[
        0x59, 0x61, 0x6d, 0x61, 0x64, 0x61, 0x5e, 0x54, 0x61, 0x72, 0x6f, 0x75, 0x3d, 0x1b, 0x24,
        0x42, 0x3b, 0x33, 0x45, 0x44, 0x1b, 0x28, 0x42, 0x5e, 0x1b, 0x24, 0x42, 0x42, 0x40, 0x4f,
        0x3a, 0x1b, 0x28, 0x42, 0x3d, 0x1b, 0x24, 0x42, 0x24, 0x64, 0x24, 0x5e, 0x24, 0x40, 0x1b,
        0x28, 0x42, 0x5e, 0x1b, 0x24, 0x42, 0x24, 0x3f, 0x24, 0x6d, 0x24, 0x26, 0x1b, 0x28, 0x42,
    ];

    /// PS3.5 H.3.2: `ISO 2022 IR 13\ISO 2022 IR 87`.
    const H32_TEXT: &str = "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう";
    const H32_BYTES: &[u8] = &[
        0xd4, 0xcf, 0xc0, 0xde, 0x5e, 0xc0, 0xdb, 0xb3, 0x3d, 0x1b, 0x24, 0x42, 0x3b, 0x33, 0x45,
        0x44, 0x1b, 0x28, 0x4a, 0x5e, 0x1b, 0x24, 0x42, 0x42, 0x40, 0x4f, 0x3a, 0x1b, 0x28, 0x4a,
        0x3d, 0x1b, 0x24, 0x42, 0x24, 0x64, 0x24, 0x5e, 0x24, 0x40, 0x1b, 0x28, 0x4a, 0x5e, 0x1b,
        0x24, 0x42, 0x24, 0x3f, 0x24, 0x6d, 0x24, 0x26, 0x1b, 0x28, 0x4a,
    ];

    /// PS3.5 I.2: `\ISO 2022 IR 149`.
    const I2_TEXT: &str = "Hong^Gildong=洪^吉洞=홍^길동";
    const I2_BYTES: &[u8] = b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf";

    fn cs(value: &str) -> CharacterSet {
        CharacterSet::from_value(value)
    }

    /// What dicom-rs does with a value: ISO-8859-1 decoding, byte for byte.
    fn latin1(raw: &[u8]) -> String {
        raw.iter().map(|&b| char::from(b)).collect()
    }

    #[test]
    fn h31_encode_is_byte_exact() {
        let bytes = cs("\\ISO 2022 IR 87").encode(H31_TEXT, true).unwrap();
        assert_eq!(bytes, H31_BYTES);
    }

    #[test]
    fn h31_decode() {
        let set = cs("\\ISO 2022 IR 87");
        assert_eq!(set.decode_pn(H31_BYTES), H31_TEXT);
        assert_eq!(set.decode(H31_BYTES), H31_TEXT);
    }

    #[test]
    fn h32_encode_is_byte_exact() {
        let bytes = cs("ISO 2022 IR 13\\ISO 2022 IR 87")
            .encode(H32_TEXT, true)
            .unwrap();
        assert_eq!(bytes, H32_BYTES);
    }

    #[test]
    fn h32_decode() {
        let set = cs("ISO 2022 IR 13\\ISO 2022 IR 87");
        assert_eq!(set.decode_pn(H32_BYTES), H32_TEXT);
        assert_eq!(set.decode(H32_BYTES), H32_TEXT);
    }

    #[test]
    fn i2_korean_round_trip() {
        let set = cs("\\ISO 2022 IR 149");
        assert_eq!(set.encode(I2_TEXT, true).unwrap(), I2_BYTES);
        assert_eq!(set.decode_pn(I2_BYTES), I2_TEXT);
    }

    #[test]
    fn non_pn_keeps_g1_across_caret() {
        let set = cs("\\ISO 2022 IR 149");
        let bytes = set.encode("洪^吉", false).unwrap();
        assert_eq!(bytes, b"\x1b$)C\xfb\xf3^\xd1\xce");
        assert_eq!(set.decode(&bytes), "洪^吉");
    }

    #[test]
    fn jis0212_round_trip() {
        let set = cs("\\ISO 2022 IR 87\\ISO 2022 IR 159");
        let text = "Yamada^Tarou=丂田^太郎";
        let bytes = set.encode(text, true).unwrap();
        let expected: &[u8] =
            b"Yamada^Tarou=\x1b$(D\x30\x21\x1b$B\x45\x44\x1b(B^\x1b$B\x42\x40\x4f\x3a\x1b(B";
        assert_eq!(bytes, expected);
        assert_eq!(set.decode_pn(&bytes), text);
    }

    #[test]
    fn jis0212_not_declared_is_an_error() {
        let err = cs("\\ISO 2022 IR 87").encode("丂", false).unwrap_err();
        assert_eq!(
            err,
            CharsetError::Unrepresentable {
                ch: '丂',
                charset: "\\ISO 2022 IR 87".to_owned()
            }
        );
    }

    #[test]
    fn katakana_designated_when_not_initial() {
        let set = cs("\\ISO 2022 IR 13\\ISO 2022 IR 87");
        let bytes = set.encode("ｱ^山", true).unwrap();
        assert_eq!(bytes, b"\x1b)I\xb1^\x1b$B\x3b\x33\x1b(B");
        assert_eq!(set.decode_pn(&bytes), "ｱ^山");
    }

    #[test]
    fn utf8_round_trip() {
        let set = cs("ISO_IR 192");
        let text = "Wang^XiaoDong=王^小東=山田^花子";
        assert_eq!(set.encode(text, true).unwrap(), text.as_bytes());
        assert_eq!(set.decode_pn(text.as_bytes()), text);
        assert_eq!(set.decode(b"a\xffb"), "a\u{FFFD}b");
    }

    #[test]
    fn latin1_round_trip() {
        let set = cs("ISO_IR 100");
        let bytes = b"Buc^J\xe9r\xf4me";
        assert_eq!(set.encode("Buc^Jérôme", true).unwrap(), bytes);
        assert_eq!(set.decode_pn(bytes), "Buc^Jérôme");
        assert_eq!(set.decode(b"\x80"), "\u{80}", "no windows-1252 mapping");
        assert!(set.encode("€", false).is_err());
    }

    #[test]
    fn greek_round_trip() {
        let set = cs("ISO_IR 126");
        let bytes = b"\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2";
        assert_eq!(set.decode(bytes), "Διονυσιος");
        assert_eq!(set.encode("Διονυσιος", false).unwrap(), bytes);
    }

    #[test]
    fn iso2022_latin_and_greek() {
        let set = cs("ISO 2022 IR 100\\ISO 2022 IR 126");
        let bytes = set.encode("é α é", false).unwrap();
        assert_eq!(bytes, b"\xe9 \x1b-F\xe1 \x1b-A\xe9");
        assert_eq!(set.decode(&bytes), "é α é");
    }

    #[test]
    fn ascii_default() {
        for set in [CharacterSet::default(), cs(""), cs("ISO_IR 6")] {
            assert!(set.is_default());
            assert_eq!(set.encode("Doe^John", true).unwrap(), b"Doe^John");
            assert_eq!(set.decode_pn(b"Doe^John"), "Doe^John");
            let err = set.encode("Doe^Jöhn", true).unwrap_err();
            assert!(matches!(err, CharsetError::Unrepresentable { ch: 'ö', .. }));
            assert!(err.to_string().contains("IR 6"), "{err}");
        }
    }

    #[test]
    fn error_names_the_character() {
        let err = cs("ISO_IR 13").encode("ﾀﾛｳ山", false).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("'山'"), "{message}");
        assert!(message.contains("U+5C71"), "{message}");
        assert!(message.contains("ISO_IR 13"), "{message}");
        assert!(cs("ISO_IR 6").encode("\u{1b}", false).is_err());
    }

    #[test]
    fn gbk_and_gb18030() {
        let text = "Wang^XiaoDong=王^小东";
        for value in ["GB18030", "GBK"] {
            let set = cs(value);
            let bytes = set.encode(text, true).unwrap();
            assert_eq!(set.decode_pn(&bytes), text);
        }
        assert!(cs("GBK").encode("😀", false).is_err());
        assert!(cs("GB18030").encode("😀", false).is_ok());
    }

    #[test]
    fn terms_are_trimmed() {
        let set = CharacterSet::from_terms([" ISO 2022 IR 13 ", "ISO 2022 IR 87\0", ""]);
        assert_eq!(set.terms(), ["ISO 2022 IR 13", "ISO 2022 IR 87"]);
        assert_eq!(cs("\\ISO 2022 IR 87").terms(), ["", "ISO 2022 IR 87"]);
        assert!(cs("").terms().is_empty());
        assert!(!cs("\\ISO 2022 IR 87").is_default());
        assert_eq!(cs("\\ISO 2022 IR 87 ").to_string(), "\\ISO 2022 IR 87");
    }

    #[test]
    fn wave_dash_alias_encodes() {
        let set = cs("\\ISO 2022 IR 87");
        let bytes = set.encode("1\u{301C}3", false).unwrap();
        assert_eq!(bytes, b"1\x1b$B\x21\x41\x1b(B3");
        assert_eq!(set.decode(&bytes), "1\u{FF5E}3");
        assert_eq!(set.encode("1\u{FF5E}3", false).unwrap(), bytes);
    }

    #[test]
    fn ibm_extension_rows_decode_but_do_not_encode() {
        let set = cs("\\ISO 2022 IR 87\\ISO 2022 IR 159");
        assert_eq!(set.decode(b"\x1b$B\x7c\x62\x1b(B"), "髙");
        assert!(set.encode("髙", false).is_err());
    }

    #[test]
    fn decode_values_ignores_backslash_bytes_inside_kanji() {
        let set = cs("\\ISO 2022 IR 87");
        let bytes = set.encode("移", false).unwrap();
        assert!(bytes.contains(&b'\\'));
        let mut raw = bytes.clone();
        raw.push(b'\\');
        raw.extend_from_slice(&bytes);
        assert_eq!(set.decode_values(&raw, false), ["移", "移"]);
    }

    #[test]
    fn iso_ir_13_accepts_shift_jis_kanji() {
        let set = cs("ISO_IR 13");
        let (sjis, _, _) = SHIFT_JIS.encode("ﾔﾏﾀﾞ=山田");
        assert_eq!(set.decode(&sjis), "ﾔﾏﾀﾞ=山田");
    }

    #[test]
    fn escape_resets_at_control_characters() {
        let set = cs("\\ISO 2022 IR 87");
        // A sloppy writer that does not switch back before CR LF.
        assert_eq!(set.decode(b"\x1b$B\x3b\x33\r\nAB"), "山\r\nAB");
        let bytes = set.encode("山\r\nA", false).unwrap();
        assert_eq!(bytes, b"\x1b$B\x3b\x33\x1b(B\r\nA");
    }

    #[test]
    fn malformed_input_does_not_panic() {
        let set = cs("\\ISO 2022 IR 87\\ISO 2022 IR 159");
        assert_eq!(set.decode(b"A\x1b"), "A\u{FFFD}");
        assert_eq!(set.decode(b"A\x1b$"), "A\u{FFFD}");
        assert_eq!(set.decode(b"A\x1b$("), "A\u{FFFD}");
        assert_eq!(set.decode(b"\x1b$B\x3b"), "\u{FFFD}");
        assert_eq!(set.decode(b"\x1b$B\x3b\x33\x45"), "山\u{FFFD}");
        assert_eq!(set.decode(b"\x1b$B\x3b "), "\u{FFFD} ");
        assert_eq!(set.decode(b"\x1b(Zx"), "\u{FFFD}x");
        assert_eq!(set.decode(b"\x1b\rx"), "\u{FFFD}\rx");
        assert_eq!(set.decode(b"\x1b$)C\xfb"), "\u{FFFD}");
        assert_eq!(cs("ISO 2022 IR 13").decode(b"\x81"), "\u{FFFD}");
        assert_eq!(cs("ISO_IR 138").decode(b"\xbf"), "\u{FFFD}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let values = [
            "",
            "ISO_IR 13",
            "\\ISO 2022 IR 87\\ISO 2022 IR 159",
            "ISO 2022 IR 13\\ISO 2022 IR 87",
            "\\ISO 2022 IR 149",
            "ISO_IR 192",
            "GB18030",
            "ISO_IR 138",
            "\\ISO 2022 IR 58",
        ];
        let mut seed: u32 = 0x1234_5678;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let alphabet = [
            0x1b, b'$', b'(', b')', b'-', b'B', b'D', b'I', b'J', b'C', b'A', b'^', b'\\',
        ];
        for value in values {
            let set = cs(value);
            for _ in 0..2000 {
                let len = next() % 12;
                let raw: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = next();
                        if r % 2 == 0 {
                            alphabet[(r as usize / 2) % alphabet.len()]
                        } else {
                            (r >> 8) as u8
                        }
                    })
                    .collect();
                let text = set.decode_pn(&raw);
                let _ = set.decode(&raw);
                let dicom_rs = latin1(&raw);
                let fixed = set.fix_dicom_rs_pn(&dicom_rs);
                if value.starts_with('\\') {
                    // dicom-rs decoded ISO-8859-1: always recoverable.
                    assert_eq!(fixed, text, "{value:?} {raw:02x?}");
                }
                // Whatever decodes without replacement characters encodes back to the same text
                // (JIS-standard aliases such as U+00AC excepted: they decode to the WHATWG forms).
                let aliased = JIS0208_ALIASES.iter().any(|(c, _)| text.contains(*c));
                if !text.contains(['\u{FFFD}', '\u{1b}']) && !aliased {
                    if let Ok(bytes) = set.encode(&text, true) {
                        assert_eq!(set.decode_pn(&bytes), text, "{value:?} {raw:02x?}");
                    }
                }
            }
        }
    }

    #[test]
    fn fix_latin1_decoded_h31() {
        let set = cs("\\ISO 2022 IR 87");
        let dicom_rs = latin1(H31_BYTES);
        assert_eq!(set.recover_dicom_rs_bytes(&dicom_rs).unwrap(), H31_BYTES);
        assert_eq!(set.fix_dicom_rs_pn(&dicom_rs), H31_TEXT);
        assert_eq!(set.fix_dicom_rs_text(&dicom_rs), H31_TEXT);
    }

    #[test]
    fn fix_shift_jis_decoded_h32() {
        let set = cs("ISO 2022 IR 13\\ISO 2022 IR 87");
        let (dicom_rs, _) = SHIFT_JIS.decode_without_bom_handling(H32_BYTES);
        assert_eq!(set.fix_dicom_rs_pn(&dicom_rs), H32_TEXT);
    }

    #[test]
    fn fix_with_the_real_dicom_rs_codecs() {
        let cases = [
            ("\\ISO 2022 IR 87", H31_BYTES, H31_TEXT),
            ("ISO 2022 IR 13\\ISO 2022 IR 87", H32_BYTES, H32_TEXT),
            ("\\ISO 2022 IR 149", I2_BYTES, I2_TEXT),
            // Sloppy but common: only ISO_IR 13 declared, JIS X 0208 escapes used anyway.
            ("ISO_IR 13", H32_BYTES, H32_TEXT),
        ];
        for (value, raw, expected) in cases {
            let set = cs(value);
            let dicom_rs = set.dicom_rs_codec().decode(raw).unwrap();
            assert_ne!(dicom_rs, expected, "dicom-rs should get {value:?} wrong");
            assert_eq!(set.fix_dicom_rs_pn(&dicom_rs), expected, "{value:?}");
        }
    }

    #[test]
    fn fix_jis0212_decoded_as_latin1() {
        let set = cs("\\ISO 2022 IR 87\\ISO 2022 IR 159");
        let raw = set.encode("丂田^太郎", true).unwrap();
        assert_eq!(set.fix_dicom_rs_pn(&latin1(&raw)), "丂田^太郎");
    }

    #[test]
    fn fix_leaves_correct_decodings_alone() {
        let cases = [
            ("ISO_IR 100", "Buc^Jérôme"),
            ("ISO_IR 192", "山田^太郎"),
            ("ISO_IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ"),
            ("", "Doe^John"),
            ("\\ISO 2022 IR 87", "Doe^John"),
        ];
        for (value, text) in cases {
            let fixed = cs(value).fix_dicom_rs_pn(text);
            assert!(matches!(fixed, Cow::Borrowed(_)), "{value:?}");
            assert_eq!(fixed, text);
        }
    }

    #[test]
    fn fix_leaves_unrecoverable_text_alone() {
        // Not a possible ISO-8859-1 decoding: characters above U+00FF.
        let set = cs("\\ISO 2022 IR 87");
        assert!(matches!(
            set.fix_dicom_rs_text("山田"),
            Cow::Borrowed("山田")
        ));
        // dicom-rs's ISO-2022-JP decoding loses the escape sequences.
        let set = cs("ISO 2022 IR 87\\ISO 2022 IR 159");
        assert!(set.recover_dicom_rs_bytes("山田").is_none());
    }

    #[test]
    fn fix_reverses_dicom_rs_octal_escapes() {
        // Shift_JIS cannot decode a lone 0xA0; dicom-rs writes "\240".
        let set = cs("ISO 2022 IR 13\\ISO 2022 IR 100");
        let raw = b"\xb1\x1b-A\xa0";
        let dicom_rs = set.dicom_rs_codec().decode(raw).unwrap();
        assert_eq!(dicom_rs, "ｱ\u{1b}-A\\240");
        assert_eq!(set.recover_dicom_rs_bytes(&dicom_rs).unwrap(), raw);
        assert_eq!(set.fix_dicom_rs_text(&dicom_rs), "ｱ\u{A0}");
        // A literal backslash sequence that is not an escape survives.
        let set = cs("\\ISO 2022 IR 87");
        assert_eq!(
            set.fix_dicom_rs_text("a\\240\u{1b}$B;3\u{1b}(B"),
            "a\\240山"
        );
    }
}

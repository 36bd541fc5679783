//! DICOM JSON (PS3.18 §F.2) from parsed data sets: tags as 8 upper-case hex digits, values
//! typed per VR (IS/DS and binary numbers as JSON numbers, PN as component-group objects),
//! text decoded from the data set's Specific Character Set (Japanese ISO 2022 included), and
//! large binary values as `BulkDataURI`s relative to the DICOMweb root.

use base64::Engine;
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use serde_json::{json, Map, Value as Json};

use crate::charset::CharacterSet;

/// Tag of Specific Character Set, which JSON always reports as UTF-8.
const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);

/// How binary values are written.
pub struct JsonOptions<'a> {
    /// Relative URI of the instance (`studies/{s}/series/{se}/instances/{i}`); binary values
    /// larger than `inline_limit` become `{prefix}/bulk/{tag path}`. `None` inlines everything.
    pub bulk_prefix: Option<&'a str>,
    /// Binary values up to this many bytes are inlined as base64.
    pub inline_limit: usize,
}

/// The 8-digit upper-case hex key of a tag.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// Encode a whole data set as a DICOM JSON object, in tag order.
pub fn dataset_to_json(
    obj: &InMemDicomObject,
    charset: &CharacterSet,
    opts: &JsonOptions<'_>,
) -> Map<String, Json> {
    write_object(obj, charset, opts, "")
}

fn write_object(
    obj: &InMemDicomObject,
    charset: &CharacterSet,
    opts: &JsonOptions<'_>,
    path: &str,
) -> Map<String, Json> {
    let mut map = Map::new();
    for elem in obj.iter() {
        let tag = elem.tag();
        // group lengths are not part of the JSON model
        if tag.element() == 0x0000 {
            continue;
        }
        let key = tag_key(tag);
        let elem_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}/{key}")
        };
        map.insert(key, element_to_json(elem, charset, opts, &elem_path));
    }
    map
}

fn element_to_json(
    elem: &InMemElement,
    charset: &CharacterSet,
    opts: &JsonOptions<'_>,
    path: &str,
) -> Json {
    let vr = elem.vr();
    let mut out = Map::new();
    out.insert("vr".into(), Json::String(vr.to_string().into()));
    match elem.value() {
        Value::Sequence(seq) => {
            let items: Vec<Json> = seq
                .items()
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    Json::Object(write_object(item, charset, opts, &format!("{path}/{i}")))
                })
                .collect();
            if !items.is_empty() {
                out.insert("Value".into(), Json::Array(items));
            }
        }
        Value::PixelSequence(_) => {
            insert_bulk(&mut out, opts, path);
        }
        Value::Primitive(p) => {
            if elem.tag() == SPECIFIC_CHARACTER_SET {
                out.insert("Value".into(), json!(["ISO_IR 192"]));
            } else {
                write_primitive(&mut out, vr, p, charset, opts, path);
            }
        }
    }
    Json::Object(out)
}

fn insert_bulk(out: &mut Map<String, Json>, opts: &JsonOptions<'_>, path: &str) {
    if let Some(prefix) = opts.bulk_prefix {
        out.insert(
            "BulkDataURI".into(),
            Json::String(format!("{prefix}/bulk/{path}")),
        );
    }
}

fn write_primitive(
    out: &mut Map<String, Json>,
    vr: VR,
    p: &PrimitiveValue,
    charset: &CharacterSet,
    opts: &JsonOptions<'_>,
    path: &str,
) {
    if dicom_core::header::HasLength::is_empty(p) {
        return;
    }
    match vr {
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN => {
            let bytes = p.to_bytes();
            if opts.bulk_prefix.is_some() && bytes.len() > opts.inline_limit {
                insert_bulk(out, opts, path);
            } else {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
                out.insert("InlineBinary".into(), Json::String(b64));
            }
        }
        VR::PN => {
            let values: Vec<Json> = strings(p, charset, Text::PersonName)
                .into_iter()
                .map(|s| person_name_json(&s))
                .collect();
            out.insert("Value".into(), Json::Array(values));
        }
        VR::LT | VR::ST | VR::UT | VR::UR => {
            // single-valued: backslash is a character, not a separator
            let whole = strings(p, charset, Text::Coded).join("\\");
            out.insert("Value".into(), json!([trim_text(&whole)]));
        }
        VR::LO | VR::SH | VR::UC => {
            let values: Vec<Json> = strings(p, charset, Text::Coded)
                .into_iter()
                .map(|s| text_or_null(trim_text(&s)))
                .collect();
            out.insert("Value".into(), Json::Array(values));
        }
        VR::IS | VR::DS => {
            let values: Vec<Json> = strings(p, charset, Text::Plain)
                .iter()
                .map(|s| number_from_text(s))
                .collect();
            out.insert("Value".into(), Json::Array(values));
        }
        VR::US | VR::SS | VR::UL | VR::SL | VR::UV | VR::SV | VR::FL | VR::FD => {
            out.insert("Value".into(), binary_numbers(p));
        }
        VR::AT => {
            let values: Vec<Json> = match p {
                PrimitiveValue::Tags(tags) => tags.iter().map(|t| json!(tag_key(*t))).collect(),
                _ => Vec::new(),
            };
            out.insert("Value".into(), Json::Array(values));
        }
        _ => {
            // AE, AS, CS, DA, DT, TM, UI: default repertoire
            let values: Vec<Json> = strings(p, charset, Text::Plain)
                .into_iter()
                .map(|s| text_or_null(trim_text(&s)))
                .collect();
            out.insert("Value".into(), Json::Array(values));
        }
    }
}

/// How the strings of a value are decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    /// Default repertoire (CS, UI, DA, ...): as parsed.
    Plain,
    /// LO, SH, LT, ST, UT, UC: the data set's character set.
    Coded,
    /// PN: the character set, with resets at component delimiters.
    PersonName,
}

/// The string values of a primitive, with Japanese and other ISO 2022 text decoded correctly.
/// dicom-rs splits at raw 0x5C bytes, which can fall inside a kanji, so the values are joined
/// again before the text is repaired and split afterwards.
fn strings(p: &PrimitiveValue, charset: &CharacterSet, text: Text) -> Vec<String> {
    let raw: Vec<String> = match p {
        PrimitiveValue::Strs(v) => v.iter().cloned().collect(),
        PrimitiveValue::Str(s) => vec![s.clone()],
        other => other.to_multi_str().iter().cloned().collect(),
    };
    if text == Text::Plain || charset.is_default() {
        return raw;
    }
    let joined = raw.join("\\");
    let fixed = match text {
        Text::PersonName => charset.fix_dicom_rs_pn(&joined),
        _ => charset.fix_dicom_rs_text(&joined),
    };
    fixed.split('\\').map(str::to_string).collect()
}

fn trim_text(s: &str) -> &str {
    s.trim_end_matches(['\0', ' '])
}

fn text_or_null(s: &str) -> Json {
    if s.is_empty() {
        Json::Null
    } else {
        Json::String(s.to_string())
    }
}

/// `Yamada^Tarou=山田^太郎=やまだ^たろう` → {"Alphabetic":..,"Ideographic":..,"Phonetic":..}.
pub fn person_name_json(value: &str) -> Json {
    let value = trim_text(value);
    if value.is_empty() {
        return Json::Null;
    }
    let mut obj = Map::new();
    for (key, group) in ["Alphabetic", "Ideographic", "Phonetic"]
        .iter()
        .zip(value.split('='))
    {
        let group = group.trim_end_matches('^').trim_end();
        if !group.is_empty() {
            obj.insert((*key).into(), Json::String(group.to_string()));
        }
    }
    Json::Object(obj)
}

/// IS/DS text as a JSON number; text that is not a number is kept as a string
/// rather than lost.
pub fn number_from_text(s: &str) -> Json {
    let t = s.trim_matches(['\0', ' ']);
    if t.is_empty() {
        return Json::Null;
    }
    if let Ok(i) = t.parse::<i64>() {
        return json!(i);
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => {
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                json!(f as i64)
            } else {
                json!(f)
            }
        }
        _ => Json::String(t.to_string()),
    }
}

fn binary_numbers(p: &PrimitiveValue) -> Json {
    let values: Vec<Json> = match p {
        PrimitiveValue::U16(v) => v.iter().map(|x| json!(x)).collect(),
        PrimitiveValue::I16(v) => v.iter().map(|x| json!(x)).collect(),
        PrimitiveValue::U32(v) => v.iter().map(|x| json!(x)).collect(),
        PrimitiveValue::I32(v) => v.iter().map(|x| json!(x)).collect(),
        PrimitiveValue::U64(v) => v.iter().map(|x| json!(x)).collect(),
        PrimitiveValue::I64(v) => v.iter().map(|x| json!(x)).collect(),
        PrimitiveValue::F32(v) => v.iter().map(|x| float_json(f64::from(*x))).collect(),
        PrimitiveValue::F64(v) => v.iter().map(|x| float_json(*x)).collect(),
        other => other
            .to_multi_str()
            .iter()
            .map(|s| number_from_text(s))
            .collect(),
    };
    Json::Array(values)
}

fn float_json(f: f64) -> Json {
    serde_json::Number::from_f64(f)
        .map(Json::Number)
        .unwrap_or_else(|| Json::String(f.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_dictionary_std::tags;

    #[test]
    fn person_names_split_into_groups() {
        let v = person_name_json("Yamada^Tarou=山田^太郎=やまだ^たろう");
        assert_eq!(
            v,
            json!({"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎","Phonetic":"やまだ^たろう"})
        );
        assert_eq!(
            person_name_json("=山田^太郎"),
            json!({"Ideographic":"山田^太郎"})
        );
    }

    #[test]
    fn numbers_and_empty_values() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SLICE_THICKNESS,
            VR::DS,
            PrimitiveValue::from("1.25"),
        ));
        obj.put(DataElement::new(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from("7 "),
        ));
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(512_u16),
        ));
        obj.put(DataElement::new(
            tags::ACCESSION_NUMBER,
            VR::SH,
            PrimitiveValue::Empty,
        ));
        let opts = JsonOptions {
            bulk_prefix: None,
            inline_limit: 0,
        };
        let j = dataset_to_json(&obj, &CharacterSet::default(), &opts);
        assert_eq!(j["00180050"], json!({"vr":"DS","Value":[1.25]}));
        assert_eq!(j["00200013"], json!({"vr":"IS","Value":[7]}));
        assert_eq!(j["00280010"], json!({"vr":"US","Value":[512]}));
        assert_eq!(j["00080050"], json!({"vr":"SH"}));
    }

    #[test]
    fn large_binary_becomes_bulk_uri() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            Tag(0x0009, 0x1010),
            VR::OB,
            PrimitiveValue::from(vec![1u8; 4096]),
        ));
        obj.put(DataElement::new(
            Tag(0x0009, 0x1011),
            VR::OB,
            PrimitiveValue::from(vec![1u8, 2]),
        ));
        let opts = JsonOptions {
            bulk_prefix: Some("studies/1/series/2/instances/3"),
            inline_limit: 1024,
        };
        let j = dataset_to_json(&obj, &CharacterSet::default(), &opts);
        assert_eq!(
            j["00091010"]["BulkDataURI"],
            json!("studies/1/series/2/instances/3/bulk/00091010")
        );
        assert_eq!(j["00091011"]["InlineBinary"], json!("AQI="));
    }
}

//! C-FIND SCU (Study Root): builds the identifier in the upstream's character set (Japanese
//! values encoded with ISO 2022 escapes where the PACS expects them), collects the pending
//! responses up to a bound (then C-CANCEL), and returns each match as a DICOM JSON object
//! with its text decoded from the response's character set.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::{Map, Value as Json};

use super::command::{tag, Command, CommandField, Priority, StatusClass};
use super::scu::{Proposal, ScuError, Upstream, STUDY_ROOT_FIND, UNCOMPRESSED};
use crate::charset::CharacterSet;
use crate::dicom_json::{dataset_to_json, JsonOptions};

/// Query/Retrieve Level (0008,0052).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryLevel {
    Study,
    Series,
    Image,
}

impl QueryLevel {
    pub fn code(self) -> &'static str {
        match self {
            QueryLevel::Study => "STUDY",
            QueryLevel::Series => "SERIES",
            QueryLevel::Image => "IMAGE",
        }
    }
}

/// One key of an identifier: tag, VR and value in C-FIND syntax (empty: return key).
#[derive(Debug, Clone)]
pub struct Key {
    pub tag: Tag,
    pub vr: VR,
    pub value: String,
}

impl Key {
    pub fn new(tag: Tag, vr: VR, value: &str) -> Self {
        Key {
            tag,
            vr,
            value: value.into(),
        }
    }
}

/// Largest identifier we accept in a response.
const MAX_IDENTIFIER: usize = 1 << 20;

/// Run a C-FIND at `level` and return up to `max_results` matches as DICOM JSON objects.
/// The second value is true when the PACS had more and was cancelled.
pub async fn find(
    up: &Upstream,
    level: QueryLevel,
    keys: &[Key],
    max_results: usize,
) -> Result<(Vec<Map<String, Json>>, bool), ScuError> {
    let mut assoc = up
        .associate(&[Proposal::new(STUDY_ROOT_FIND, &UNCOMPRESSED)])
        .await?;
    let (pc, ts_uid) = assoc.accepted_context(STUDY_ROOT_FIND)?;
    let charset = CharacterSet::from_value(&up.config.character_set);
    let identifier =
        encode_identifier(level, keys, &charset, &ts_uid).map_err(|m| up.failed(&m))?;
    let message_id = up.next_message_id();
    let mut rq = Command::new(CommandField::CFindRq, true);
    rq.set_u16(tag::MESSAGE_ID, message_id);
    rq.set_uid(tag::AFFECTED_SOP_CLASS_UID, STUDY_ROOT_FIND);
    rq.set_u16(tag::PRIORITY, Priority::Medium.code());
    assoc.send_command(pc, &rq).await?;
    assoc.send_data_set(pc, &identifier).await?;

    let mut matches = Vec::new();
    let mut cancelled = false;
    loop {
        let (_, rsp) = assoc.next_command().await?;
        let status = rsp.status().unwrap_or(super::Status(0xC000));
        if rsp.has_data_set() {
            let bytes = assoc.read_data_set(MAX_IDENTIFIER).await?;
            if status.classify() == StatusClass::Pending && !cancelled {
                matches.push(decode_identifier(&bytes, &ts_uid).map_err(|m| up.failed(&m))?);
            }
        }
        match status.classify() {
            StatusClass::Pending => {
                if matches.len() >= max_results && !cancelled {
                    let mut cancel = Command::new(CommandField::CCancelRq, false);
                    cancel.set_u16(tag::MESSAGE_ID_BEING_RESPONDED_TO, message_id);
                    assoc.send_command(pc, &cancel).await?;
                    cancelled = true;
                }
            }
            StatusClass::Success | StatusClass::Cancel => break,
            StatusClass::Warning => break,
            StatusClass::Failure => {
                let comment = rsp.error_comment().unwrap_or_default();
                assoc.release().await;
                return Err(up.failed(&format!("C-FIND failed with status {status} {comment}")));
            }
        }
    }
    assoc.release().await;
    Ok((matches, cancelled))
}

/// Encode an identifier with the negotiated transfer syntax.
pub fn encode_identifier(
    level: QueryLevel,
    keys: &[Key],
    charset: &CharacterSet,
    ts_uid: &str,
) -> Result<Vec<u8>, String> {
    let mut obj = InMemDicomObject::new_empty();
    if !charset.is_default() {
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::Strs(charset.terms().iter().cloned().collect()),
        ));
    }
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level.code()),
    ));
    for k in keys {
        let value = if is_coded_text(k.vr) && !k.value.is_empty() {
            text_for_dicom_rs(&k.value, k.vr == VR::PN, charset)?
        } else {
            k.value.clone()
        };
        let v = if value.is_empty() {
            PrimitiveValue::Empty
        } else {
            PrimitiveValue::from(value)
        };
        obj.put(DataElement::new(k.tag, k.vr, v));
    }
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| format!("cannot encode the identifier: {e}"))?;
    Ok(out)
}

fn is_coded_text(vr: VR) -> bool {
    matches!(
        vr,
        VR::PN | VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC
    )
}

/// dicom-rs encodes text with the codec of the first character set term only. Encode the
/// text ourselves (ISO 2022 escapes included) and hand dicom-rs the string that its codec
/// turns back into exactly those bytes.
fn text_for_dicom_rs(text: &str, is_pn: bool, charset: &CharacterSet) -> Result<String, String> {
    let bytes = charset
        .encode(text, is_pn)
        .map_err(|e| format!("{text:?} cannot be sent in {charset}: {e}"))?;
    let first = charset.terms().first().map(String::as_str).unwrap_or("");
    let codec = dicom_encoding::text::SpecificCharacterSet::from_code(first).unwrap_or_default();
    use dicom_encoding::text::TextCodec;
    codec
        .decode(&bytes)
        .map_err(|e| format!("cannot prepare {text:?} for {charset}: {e}"))
}

/// Decode a response identifier into DICOM JSON.
pub fn decode_identifier(bytes: &[u8], ts_uid: &str) -> Result<Map<String, Json>, String> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, ts)
        .map_err(|e| format!("malformed C-FIND response identifier: {e}"))?;
    let charset = crate::store::ingest::character_set(&obj);
    let opts = JsonOptions {
        bulk_prefix: None,
        inline_limit: usize::MAX,
    };
    let mut json = dataset_to_json(&obj, &charset, &opts);
    json.remove("00080052");
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_identifier_round_trips_in_iso_2022() {
        let charset = CharacterSet::from_value("\\ISO 2022 IR 87");
        let keys = [
            Key::new(tags::PATIENT_NAME, VR::PN, "山田*"),
            Key::new(tags::STUDY_INSTANCE_UID, VR::UI, ""),
        ];
        let bytes =
            encode_identifier(QueryLevel::Study, &keys, &charset, "1.2.840.10008.1.2.1").unwrap();
        // ESC $ B 3 3 E D ESC ( B  *  is how 山田* is written in ISO 2022 IR 87
        let needle = [
            0x1b, b'$', b'B', 0x3b, 0x33, 0x45, 0x44, 0x1b, b'(', b'B', b'*',
        ];
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
        let back = decode_identifier(&bytes, "1.2.840.10008.1.2.1").unwrap();
        assert_eq!(back["00100010"]["Value"][0]["Alphabetic"], "山田*");
    }
}

//! From a stored file to index rows: parse the header (up to Pixel Data), decode text with the
//! instance's character set, split attributes into patient/study, series and instance levels,
//! and precompute the instance's DICOM JSON metadata.

use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use serde_json::{Map, Value as Json};

use super::layout::{self, PixelData};
use crate::charset::CharacterSet;
use crate::dicom_json::{dataset_to_json, tag_key, JsonOptions};
use crate::types::{InvalidId, Uid};

/// Binary values up to this size are inlined in metadata; larger ones become BulkDataURIs.
pub const INLINE_BINARY_LIMIT: usize = 256;

/// Why a stored file cannot be indexed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot parse the data set: {0}")]
    Parse(String),
    #[error("{0}")]
    MissingUid(#[from] InvalidId),
}

/// Patient and study level values of one instance.
#[derive(Debug, Clone, Default)]
pub struct StudyFields {
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_date: String,
    pub study_time: String,
    pub accession_number: String,
    pub study_id: String,
    pub study_description: String,
    pub referring_physician_name: String,
    pub meta_json: String,
}

/// Series level values of one instance.
#[derive(Debug, Clone, Default)]
pub struct SeriesFields {
    pub modality: String,
    pub series_number: Option<i64>,
    pub series_description: String,
    pub series_date: String,
    pub series_time: String,
    pub body_part_examined: String,
    pub pps_start_date: String,
    pub pps_start_time: String,
    pub meta_json: String,
}

/// Instance level values.
#[derive(Debug, Clone, Default)]
pub struct InstanceFields {
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub samples_per_pixel: Option<i64>,
    pub number_of_frames: Option<i64>,
    pub meta_json: String,
}

/// Everything the index needs about one instance.
#[derive(Debug, Clone)]
pub struct IndexedInstance {
    pub study_uid: Uid,
    pub series_uid: Uid,
    pub sop_instance_uid: Uid,
    pub transfer_syntax_uid: String,
    pub study: StudyFields,
    pub series: SeriesFields,
    pub instance: InstanceFields,
}

/// Patient, General Study and Patient Study attributes kept at study level.
pub const STUDY_LEVEL: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_DESCRIPTION,
    tags::PROCEDURE_CODE_SEQUENCE,
    tags::PHYSICIANS_OF_RECORD,
    tags::NAME_OF_PHYSICIANS_READING_STUDY,
    tags::ADMITTING_DIAGNOSES_DESCRIPTION,
    tags::REFERENCED_STUDY_SEQUENCE,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::TYPE_OF_PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID_QUALIFIERS_SEQUENCE,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_BIRTH_TIME,
    tags::PATIENT_SEX,
    tags::OTHER_PATIENT_I_DS_SEQUENCE,
    tags::OTHER_PATIENT_NAMES,
    tags::PATIENT_AGE,
    tags::PATIENT_SIZE,
    tags::PATIENT_WEIGHT,
    tags::PATIENT_COMMENTS,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
];

/// General Series, General Equipment and Frame of Reference attributes kept at series level.
pub const SERIES_LEVEL: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::SERIES_DATE,
    tags::SERIES_TIME,
    tags::MODALITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::MANUFACTURER,
    tags::INSTITUTION_NAME,
    tags::STATION_NAME,
    tags::SERIES_DESCRIPTION,
    tags::INSTITUTIONAL_DEPARTMENT_NAME,
    tags::PERFORMING_PHYSICIAN_NAME,
    tags::OPERATORS_NAME,
    tags::MANUFACTURER_MODEL_NAME,
    tags::BODY_PART_EXAMINED,
    tags::PROTOCOL_NAME,
    tags::PATIENT_POSITION,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_NUMBER,
    tags::LATERALITY,
    tags::FRAME_OF_REFERENCE_UID,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    tags::PERFORMED_PROCEDURE_STEP_ID,
    tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION,
    tags::REQUEST_ATTRIBUTES_SEQUENCE,
];

/// Parse a stored Part 10 file (already durable) into index rows.
pub fn index_file(
    path: &Path,
    bulk_prefix_for: impl Fn(&Uid, &Uid, &Uid) -> String,
) -> Result<IndexedInstance, IngestError> {
    check_declared_lengths(path)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| IngestError::Parse(e.to_string()))?;
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let charset = character_set(&obj);
    let study_uid = Uid::parse("StudyInstanceUID", &raw_str(&obj, tags::STUDY_INSTANCE_UID))?;
    let series_uid = Uid::parse(
        "SeriesInstanceUID",
        &raw_str(&obj, tags::SERIES_INSTANCE_UID),
    )?;
    let sop_uid = Uid::parse("SOPInstanceUID", &raw_str(&obj, tags::SOP_INSTANCE_UID))?;

    let prefix = bulk_prefix_for(&study_uid, &series_uid, &sop_uid);
    let opts = JsonOptions {
        bulk_prefix: Some(&prefix),
        inline_limit: INLINE_BINARY_LIMIT,
    };
    let mut full = dataset_to_json(&obj, &charset, &opts);
    add_pixel_data_reference(path, &ts, &obj, &prefix, &mut full);

    let text = |tag| text_value(&obj, &charset, tag, false);
    let name = |tag| text_value(&obj, &charset, tag, true);
    let study = StudyFields {
        patient_id: text(tags::PATIENT_ID),
        issuer_of_patient_id: text(tags::ISSUER_OF_PATIENT_ID),
        patient_name: name(tags::PATIENT_NAME),
        patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
        patient_sex: text(tags::PATIENT_SEX),
        study_date: text(tags::STUDY_DATE),
        study_time: text(tags::STUDY_TIME),
        accession_number: text(tags::ACCESSION_NUMBER),
        study_id: text(tags::STUDY_ID),
        study_description: text(tags::STUDY_DESCRIPTION),
        referring_physician_name: name(tags::REFERRING_PHYSICIAN_NAME),
        meta_json: subset_json(&full, STUDY_LEVEL),
    };
    let series = SeriesFields {
        modality: text(tags::MODALITY),
        series_number: int_value(&obj, tags::SERIES_NUMBER),
        series_description: text(tags::SERIES_DESCRIPTION),
        series_date: text(tags::SERIES_DATE),
        series_time: text(tags::SERIES_TIME),
        body_part_examined: text(tags::BODY_PART_EXAMINED),
        pps_start_date: text(tags::PERFORMED_PROCEDURE_STEP_START_DATE),
        pps_start_time: text(tags::PERFORMED_PROCEDURE_STEP_START_TIME),
        meta_json: subset_json(&full, SERIES_LEVEL),
    };
    let instance = InstanceFields {
        sop_class_uid: raw_str(&obj, tags::SOP_CLASS_UID),
        instance_number: int_value(&obj, tags::INSTANCE_NUMBER),
        rows: int_value(&obj, tags::ROWS),
        columns: int_value(&obj, tags::COLUMNS),
        bits_allocated: int_value(&obj, tags::BITS_ALLOCATED),
        samples_per_pixel: int_value(&obj, tags::SAMPLES_PER_PIXEL),
        number_of_frames: int_value(&obj, tags::NUMBER_OF_FRAMES)
            .or_else(|| int_value(&obj, tags::ROWS).map(|_| 1)),
        meta_json: Json::Object(full).to_string(),
    };
    Ok(IndexedInstance {
        study_uid,
        series_uid,
        sop_instance_uid: sop_uid,
        transfer_syntax_uid: ts,
        study,
        series,
        instance,
    })
}

/// Refuse a file declaring values longer than itself before dicom-parser allocates them
/// (see `bounds`).
fn check_declared_lengths(path: &Path) -> Result<(), IngestError> {
    let parse = |e: String| IngestError::Parse(e);
    let mut file =
        std::io::BufReader::new(std::fs::File::open(path).map_err(|e| parse(e.to_string()))?);
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(128))
        .map_err(|e| parse(e.to_string()))?;
    let meta =
        dicom_object::meta::FileMetaTable::from_reader(file).map_err(|e| parse(e.to_string()))?;
    let ts = meta.transfer_syntax().trim_end_matches('\0');
    super::bounds::check_lengths(path, ts).map_err(|e| parse(e.to_string()))
}

/// The declared Specific Character Set of a data set.
pub fn character_set(obj: &InMemDicomObject) -> CharacterSet {
    match obj.element(tags::SPECIFIC_CHARACTER_SET) {
        Ok(e) => match e.to_multi_str() {
            Ok(terms) => CharacterSet::from_terms(terms.iter()),
            Err(_) => CharacterSet::default(),
        },
        Err(_) => CharacterSet::default(),
    }
}

/// Pixel Data is not parsed into memory; reference it by BulkDataURI when the file has it.
fn add_pixel_data_reference(
    path: &Path,
    ts: &str,
    obj: &InMemDicomObject,
    prefix: &str,
    json: &mut Map<String, Json>,
) {
    let vr = match layout::locate_pixel_data(path, ts) {
        Ok(PixelData::Native(_)) => {
            if int_value(obj, tags::BITS_ALLOCATED).unwrap_or(16) > 8 {
                "OW"
            } else {
                "OB"
            }
        }
        Ok(PixelData::Encapsulated { .. }) => "OB",
        // deflated or big-endian files: trust the header attributes
        Err(layout::LayoutError::Unsupported(_)) if obj.element(tags::ROWS).is_ok() => "OW",
        Err(_) => return,
    };
    let mut elem = Map::new();
    elem.insert("vr".into(), Json::String(vr.into()));
    elem.insert(
        "BulkDataURI".into(),
        Json::String(format!("{prefix}/bulk/{}", tag_key(tags::PIXEL_DATA))),
    );
    json.insert(tag_key(tags::PIXEL_DATA), Json::Object(elem));
}

fn subset_json(full: &Map<String, Json>, keep: &[Tag]) -> String {
    let mut keys: Vec<String> = keep.iter().map(|t| tag_key(*t)).collect();
    keys.sort();
    let mut out = Map::new();
    for k in keys {
        if let Some(v) = full.get(&k) {
            out.insert(k, v.clone());
        }
    }
    Json::Object(out).to_string()
}

/// A value in the default repertoire (UIDs, code strings), padding trimmed.
fn raw_str(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.element(tag)
        .ok()
        .and_then(|e| {
            e.to_str()
                .ok()
                .map(|s| s.trim_matches(['\0', ' ']).to_string())
        })
        .unwrap_or_default()
}

/// A text value decoded with the data set's character set; multiple values joined by '\'.
fn text_value(obj: &InMemDicomObject, charset: &CharacterSet, tag: Tag, is_pn: bool) -> String {
    let Ok(elem) = obj.element(tag) else {
        return String::new();
    };
    let Ok(values) = elem.to_multi_str() else {
        return String::new();
    };
    let joined = values.join("\\");
    let fixed = if is_pn {
        charset.fix_dicom_rs_pn(&joined)
    } else {
        charset.fix_dicom_rs_text(&joined)
    };
    fixed
        .split('\\')
        .map(|v| v.trim_matches(['\0', ' ']))
        .collect::<Vec<_>>()
        .join("\\")
}

fn int_value(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let e = obj.element(tag).ok()?;
    if let Ok(v) = e.to_int::<i64>() {
        return Some(v);
    }
    e.to_str().ok()?.trim().parse().ok()
}

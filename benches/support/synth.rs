//! Deterministic synthetic studies for the benches and the load script's cache filler.
//!
//! No randomness from the environment: every value comes from a splitmix64 stream seeded by
//! the study number, so two runs build the same index and the same files. Patients are a mix
//! of Japanese names (three PN component groups: romaji, kanji, kana) and Latin names, with a
//! few phantoms; study dates spread over 2017-2025; modalities weighted like a general
//! hospital's archive.
//!
//! Included with `#[path]` by `benches/qido.rs`, `benches/wado.rs` and
//! `examples/bench_fill_cache.rs`; not every user calls every function.
#![allow(dead_code)]

use std::path::Path;

use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use serde_json::{json, Map, Value as Json};
use tsunagi::store::ingest::{IndexedInstance, InstanceFields, SeriesFields, StudyFields};
use tsunagi::types::Uid;

pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

/// splitmix64: tiny, fast, good enough to spread synthetic values.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5453_554E_4147_4921)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A `2.25.` UID (at most 44 characters).
    pub fn uid(&mut self) -> String {
        let v = (u128::from(self.next()) << 64 | u128::from(self.next())) >> 1;
        format!("2.25.{v}")
    }
}

/// (romaji, kanji, kana)
const JP_FAMILY: &[(&str, &str, &str)] = &[
    ("Yamada", "山田", "やまだ"),
    ("Sato", "佐藤", "さとう"),
    ("Suzuki", "鈴木", "すずき"),
    ("Takahashi", "高橋", "たかはし"),
    ("Tanaka", "田中", "たなか"),
    ("Ito", "伊藤", "いとう"),
    ("Watanabe", "渡辺", "わたなべ"),
    ("Nakamura", "中村", "なかむら"),
    ("Kobayashi", "小林", "こばやし"),
    ("Kato", "加藤", "かとう"),
    ("Yoshida", "吉田", "よしだ"),
    ("Yamamoto", "山本", "やまもと"),
    ("Sasaki", "佐々木", "ささき"),
    ("Matsumoto", "松本", "まつもと"),
    ("Inoue", "井上", "いのうえ"),
    ("Kimura", "木村", "きむら"),
];
const JP_GIVEN: &[(&str, &str, &str)] = &[
    ("Tarou", "太郎", "たろう"),
    ("Hanako", "花子", "はなこ"),
    ("Ichirou", "一郎", "いちろう"),
    ("Keiko", "恵子", "けいこ"),
    ("Kenta", "健太", "けんた"),
    ("Misaki", "美咲", "みさき"),
    ("Shouta", "翔太", "しょうた"),
    ("Youko", "陽子", "ようこ"),
    ("Hiroshi", "博", "ひろし"),
    ("Yui", "結衣", "ゆい"),
];
const LATIN_FAMILY: &[&str] = &[
    "Smith", "Johnson", "Garcia", "Mueller", "Martin", "Rossi", "Dubois", "Silva", "Brown",
    "Nguyen", "Kowalski", "Jansen", "Novak", "OBrien", "Fischer", "Lopez",
];
const LATIN_GIVEN: &[&str] = &[
    "John", "Maria", "Anna", "Peter", "Lucas", "Sofia", "Emma", "Noah", "Olga", "Marc",
];
const PHANTOMS: &[&str] = &[
    "CT^PHANTOM",
    "ACR^PHANTOM",
    "WATER^PHANTOM",
    "QA^PHANTOM^CATPHAN",
];

/// (modality, weight, SOP class, study description, series description, body part)
const MODALITIES: &[(&str, u64, &str, &str, &str, &str)] = &[
    (
        "CT",
        30,
        uids::CT_IMAGE_STORAGE,
        "胸部CT",
        "Axial 1.25mm",
        "CHEST",
    ),
    (
        "MR",
        18,
        uids::MR_IMAGE_STORAGE,
        "MRI Brain w/o contrast",
        "T2 FLAIR",
        "HEAD",
    ),
    (
        "CR",
        15,
        uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
        "胸部単純X線",
        "PA",
        "CHEST",
    ),
    (
        "DX",
        10,
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        "XR Knee 2 views",
        "AP",
        "KNEE",
    ),
    (
        "US",
        10,
        uids::ULTRASOUND_IMAGE_STORAGE,
        "腹部エコー",
        "Liver",
        "ABDOMEN",
    ),
    (
        "MG",
        5,
        uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        "Screening mammography",
        "L CC",
        "BREAST",
    ),
    (
        "PT",
        4,
        uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
        "PET-CT whole body",
        "PET AC",
        "WHOLEBODY",
    ),
    (
        "NM",
        2,
        uids::NUCLEAR_MEDICINE_IMAGE_STORAGE,
        "骨シンチ",
        "Whole body",
        "WHOLEBODY",
    ),
    (
        "XA",
        3,
        uids::X_RAY_ANGIOGRAPHIC_IMAGE_STORAGE,
        "Coronary angiography",
        "LAO 30",
        "HEART",
    ),
    (
        "OT",
        3,
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        "Outside images",
        "Scanned",
        "",
    ),
];

/// Number of distinct patients for `n` studies (about 2.5 studies per patient).
pub fn patients_for(n: usize) -> u64 {
    (n as u64 * 2 / 5).max(1)
}

/// One synthetic study (1 series, 1 instance).
#[derive(Debug, Clone)]
pub struct StudySpec {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    pub frame_of_reference_uid: String,
    pub patient_id: String,
    /// Component groups: alphabetic, ideographic, phonetic (the last two empty for Latin names).
    pub name_groups: [String; 3],
    pub birth_date: String,
    pub sex: &'static str,
    pub study_date: String,
    pub study_time: String,
    pub accession: String,
    pub study_id: String,
    pub modality: &'static str,
    pub sop_class: &'static str,
    pub study_description: &'static str,
    pub series_description: &'static str,
    pub body_part: &'static str,
    pub referring: &'static str,
}

impl StudySpec {
    /// The whole PN value as the index stores it: groups joined by '=', trailing ones dropped.
    pub fn patient_name(&self) -> String {
        let mut groups: Vec<&str> = self.name_groups.iter().map(String::as_str).collect();
        while groups.last().is_some_and(|g| g.is_empty()) {
            groups.pop();
        }
        groups.join("=")
    }
}

/// Days since 1970-01-01 as a DICOM date (YYYYMMDD).
fn da(days: i64) -> String {
    tsunagi::clock::format_datetime(days * 86_400, 0)[..10].replace('-', "")
}

/// Study number `i` of a data set of `n` studies.
pub fn study_spec(i: usize, n: usize) -> StudySpec {
    let patient = Rng::new(i as u64).below(patients_for(n));
    let mut prng = Rng::new(0xA000_0000 + patient);
    let kind = prng.below(100);
    let name_groups = if kind < 1 {
        [
            prng.pick(PHANTOMS).to_string(),
            String::new(),
            String::new(),
        ]
    } else if kind < 61 {
        let (fr, fk, fh) = prng.pick(JP_FAMILY);
        let (gr, gk, gh) = prng.pick(JP_GIVEN);
        [
            format!("{fr}^{gr}"),
            format!("{fk}^{gk}"),
            format!("{fh}^{gh}"),
        ]
    } else {
        let f = prng.pick(LATIN_FAMILY);
        let g = prng.pick(LATIN_GIVEN);
        [format!("{f}^{g}"), String::new(), String::new()]
    };
    // born 1930-2015
    let birth = -14_610 + prng.below(85 * 365) as i64;
    let sex = if prng.below(2) == 0 { "M" } else { "F" };

    let mut rng = Rng::new(0xB000_0000 + i as u64);
    let total: u64 = MODALITIES.iter().map(|m| m.1).sum();
    let mut roll = rng.below(total);
    let m = MODALITIES
        .iter()
        .find(|m| {
            if roll < m.1 {
                true
            } else {
                roll -= m.1;
                false
            }
        })
        .unwrap_or(&MODALITIES[0]);
    // 2017-01-01 .. 2025-12-31
    let day = 17_167 + rng.below(9 * 365) as i64;
    let secs = 8 * 3600 + rng.below(10 * 3600);
    StudySpec {
        study_uid: rng.uid(),
        series_uid: rng.uid(),
        sop_uid: rng.uid(),
        frame_of_reference_uid: rng.uid(),
        patient_id: format!("{:08}", 1_000_000 + patient),
        name_groups,
        birth_date: da(birth),
        sex,
        study_date: da(day),
        study_time: format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60),
        accession: format!("ACC{:09}", 100_000 + i),
        study_id: format!("{}", 1 + i % 9999),
        modality: m.0,
        sop_class: m.2,
        study_description: m.3,
        series_description: m.4,
        body_part: m.5,
        referring: if i % 3 == 0 {
            "Tanaka^Ichirou=田中^一郎"
        } else {
            "Jones^Sarah"
        },
    }
}

// ------------------------------------------------------------------ index rows (QIDO bench)

fn s(vr: &str, v: &str) -> Json {
    if v.is_empty() {
        json!({ "vr": vr })
    } else {
        json!({ "vr": vr, "Value": [v] })
    }
}

fn pn(groups: &[&str]) -> Json {
    let keys = ["Alphabetic", "Ideographic", "Phonetic"];
    let mut o = Map::new();
    for (k, g) in keys.iter().zip(groups) {
        if !g.is_empty() {
            o.insert((*k).into(), Json::String((*g).into()));
        }
    }
    if o.is_empty() {
        json!({ "vr": "PN" })
    } else {
        json!({ "vr": "PN", "Value": [o] })
    }
}

fn obj(pairs: Vec<(Tag, Json)>) -> String {
    let mut m: Vec<(String, Json)> = pairs
        .into_iter()
        .map(|(t, v)| (format!("{:04X}{:04X}", t.group(), t.element()), v))
        .collect();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    Json::Object(m.into_iter().collect()).to_string()
}

/// Index rows of a study as ingest would produce them (DICOM JSON objects per level).
pub fn indexed_instance(spec: &StudySpec) -> IndexedInstance {
    let name: Vec<&str> = spec.name_groups.iter().map(String::as_str).collect();
    let referring: Vec<&str> = spec.referring.split('=').collect();
    let charset = "ISO_IR 192";
    let study_meta = obj(vec![
        (tags::SPECIFIC_CHARACTER_SET, s("CS", charset)),
        (tags::STUDY_DATE, s("DA", &spec.study_date)),
        (tags::STUDY_TIME, s("TM", &spec.study_time)),
        (tags::ACCESSION_NUMBER, s("SH", &spec.accession)),
        (tags::REFERRING_PHYSICIAN_NAME, pn(&referring)),
        (tags::STUDY_DESCRIPTION, s("LO", spec.study_description)),
        (tags::PATIENT_NAME, pn(&name)),
        (tags::PATIENT_ID, s("LO", &spec.patient_id)),
        (tags::PATIENT_BIRTH_DATE, s("DA", &spec.birth_date)),
        (tags::PATIENT_SEX, s("CS", spec.sex)),
        (tags::PATIENT_AGE, s("AS", "045Y")),
        (tags::STUDY_INSTANCE_UID, s("UI", &spec.study_uid)),
        (tags::STUDY_ID, s("SH", &spec.study_id)),
    ]);
    let series_meta = obj(vec![
        (tags::SPECIFIC_CHARACTER_SET, s("CS", charset)),
        (tags::SERIES_DATE, s("DA", &spec.study_date)),
        (tags::SERIES_TIME, s("TM", &spec.study_time)),
        (tags::MODALITY, s("CS", spec.modality)),
        (tags::MANUFACTURER, s("LO", "ACME Medical")),
        (tags::INSTITUTION_NAME, s("LO", "つなぎ総合病院")),
        (tags::SERIES_DESCRIPTION, s("LO", spec.series_description)),
        (tags::BODY_PART_EXAMINED, s("CS", spec.body_part)),
        (tags::SERIES_INSTANCE_UID, s("UI", &spec.series_uid)),
        (tags::SERIES_NUMBER, json!({"vr": "IS", "Value": [1]})),
        (
            tags::FRAME_OF_REFERENCE_UID,
            s("UI", &spec.frame_of_reference_uid),
        ),
    ]);
    let bulk = format!(
        "studies/{}/series/{}/instances/{}/bulk/7FE00010",
        spec.study_uid, spec.series_uid, spec.sop_uid
    );
    let instance_meta = obj(vec![
        (tags::SPECIFIC_CHARACTER_SET, s("CS", charset)),
        (
            tags::IMAGE_TYPE,
            json!({"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "AXIAL"]}),
        ),
        (tags::SOP_CLASS_UID, s("UI", spec.sop_class)),
        (tags::SOP_INSTANCE_UID, s("UI", &spec.sop_uid)),
        (tags::STUDY_DATE, s("DA", &spec.study_date)),
        (tags::MODALITY, s("CS", spec.modality)),
        (tags::PATIENT_NAME, pn(&name)),
        (tags::PATIENT_ID, s("LO", &spec.patient_id)),
        (tags::STUDY_INSTANCE_UID, s("UI", &spec.study_uid)),
        (tags::SERIES_INSTANCE_UID, s("UI", &spec.series_uid)),
        (tags::INSTANCE_NUMBER, json!({"vr": "IS", "Value": [1]})),
        (tags::ROWS, json!({"vr": "US", "Value": [512]})),
        (tags::COLUMNS, json!({"vr": "US", "Value": [512]})),
        (tags::BITS_ALLOCATED, json!({"vr": "US", "Value": [16]})),
        (tags::PIXEL_DATA, json!({"vr": "OW", "BulkDataURI": bulk})),
    ]);
    IndexedInstance {
        study_uid: Uid::parse("study", &spec.study_uid).expect("uid"),
        series_uid: Uid::parse("series", &spec.series_uid).expect("uid"),
        sop_instance_uid: Uid::parse("sop", &spec.sop_uid).expect("uid"),
        transfer_syntax_uid: EXPLICIT_VR_LE.into(),
        study: StudyFields {
            patient_id: spec.patient_id.clone(),
            issuer_of_patient_id: String::new(),
            patient_name: spec.patient_name(),
            patient_birth_date: spec.birth_date.clone(),
            patient_sex: spec.sex.into(),
            study_date: spec.study_date.clone(),
            study_time: spec.study_time.clone(),
            accession_number: spec.accession.clone(),
            study_id: spec.study_id.clone(),
            study_description: spec.study_description.into(),
            referring_physician_name: spec.referring.into(),
            meta_json: study_meta,
        },
        series: SeriesFields {
            modality: spec.modality.into(),
            series_number: Some(1),
            series_description: spec.series_description.into(),
            series_date: spec.study_date.clone(),
            series_time: spec.study_time.clone(),
            body_part_examined: spec.body_part.into(),
            pps_start_date: String::new(),
            pps_start_time: String::new(),
            meta_json: series_meta,
        },
        instance: InstanceFields {
            sop_class_uid: spec.sop_class.into(),
            instance_number: Some(1),
            rows: Some(512),
            columns: Some(512),
            bits_allocated: Some(16),
            samples_per_pixel: Some(1),
            number_of_frames: Some(1),
            meta_json: instance_meta,
        },
    }
}

// ------------------------------------------------------------------ Part 10 files

/// How the pixel data of a generated file looks.
pub enum Pixels {
    /// Native 16-bit signed samples, `frames` frames of rows x columns.
    Native16 {
        rows: u16,
        columns: u16,
        frames: u32,
    },
    /// Encapsulated (JPEG baseline transfer syntax, opaque fragment bytes): one fragment of
    /// `fragment_len` bytes per frame, with a Basic Offset Table.
    Encapsulated {
        rows: u16,
        columns: u16,
        frames: u32,
        fragment_len: usize,
    },
}

fn put_str(o: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

fn put_u16(o: &mut InMemDicomObject, tag: Tag, v: u16) {
    o.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
}

/// Write a Part 10 file for slice `slice` of `spec`'s series with a realistic CT-like header
/// (about 2 KB, with sequences) and the given pixel data.
pub fn write_instance(
    path: &Path,
    spec: &StudySpec,
    sop_uid: &str,
    slice: u32,
    pixels: &Pixels,
) -> std::io::Result<()> {
    let mut o = InMemDicomObject::new_empty();
    let (rows, columns, frames, ts) = match pixels {
        Pixels::Native16 {
            rows,
            columns,
            frames,
        } => (*rows, *columns, *frames, EXPLICIT_VR_LE),
        Pixels::Encapsulated {
            rows,
            columns,
            frames,
            ..
        } => (*rows, *columns, *frames, JPEG_BASELINE),
    };
    let z = format!("{:.2}", -100.0 + 1.25 * f64::from(slice));
    put_str(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put_str(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL");
    put_str(&mut o, tags::SOP_CLASS_UID, VR::UI, spec.sop_class);
    put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, sop_uid);
    for t in [
        tags::STUDY_DATE,
        tags::SERIES_DATE,
        tags::ACQUISITION_DATE,
        tags::CONTENT_DATE,
    ] {
        put_str(&mut o, t, VR::DA, &spec.study_date);
    }
    for t in [
        tags::STUDY_TIME,
        tags::SERIES_TIME,
        tags::ACQUISITION_TIME,
        tags::CONTENT_TIME,
    ] {
        put_str(&mut o, t, VR::TM, &spec.study_time);
    }
    put_str(&mut o, tags::ACCESSION_NUMBER, VR::SH, &spec.accession);
    put_str(&mut o, tags::MODALITY, VR::CS, spec.modality);
    put_str(&mut o, tags::MANUFACTURER, VR::LO, "ACME Medical");
    put_str(&mut o, tags::INSTITUTION_NAME, VR::LO, "つなぎ総合病院");
    put_str(
        &mut o,
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        spec.referring,
    );
    put_str(&mut o, tags::STATION_NAME, VR::SH, "CT01");
    put_str(
        &mut o,
        tags::STUDY_DESCRIPTION,
        VR::LO,
        spec.study_description,
    );
    let code = InMemDicomObject::from_element_iter([
        DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from("ZCT01")),
        DataElement::new(
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            PrimitiveValue::from("99LOCAL"),
        ),
        DataElement::new(
            tags::CODE_MEANING,
            VR::LO,
            PrimitiveValue::from(spec.study_description),
        ),
    ]);
    o.put(DataElement::new(
        tags::PROCEDURE_CODE_SEQUENCE,
        VR::SQ,
        Value::from(dicom_core::value::DataSetSequence::from(vec![code])),
    ));
    put_str(
        &mut o,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        spec.series_description,
    );
    put_str(
        &mut o,
        tags::MANUFACTURER_MODEL_NAME,
        VR::LO,
        "Tsunagi Synth 9000",
    );
    put_str(&mut o, tags::PATIENT_NAME, VR::PN, &spec.patient_name());
    put_str(&mut o, tags::PATIENT_ID, VR::LO, &spec.patient_id);
    put_str(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, &spec.birth_date);
    put_str(&mut o, tags::PATIENT_SEX, VR::CS, spec.sex);
    put_str(&mut o, tags::PATIENT_AGE, VR::AS, "045Y");
    put_str(&mut o, tags::BODY_PART_EXAMINED, VR::CS, spec.body_part);
    put_str(&mut o, tags::SLICE_THICKNESS, VR::DS, "1.25");
    put_str(&mut o, tags::KVP, VR::DS, "120");
    put_str(&mut o, tags::DATA_COLLECTION_DIAMETER, VR::DS, "500");
    put_str(&mut o, tags::SOFTWARE_VERSIONS, VR::LO, "synth-1.0");
    put_str(&mut o, tags::PROTOCOL_NAME, VR::LO, "CHEST ROUTINE");
    put_str(&mut o, tags::RECONSTRUCTION_DIAMETER, VR::DS, "350");
    put_str(&mut o, tags::GANTRY_DETECTOR_TILT, VR::DS, "0");
    put_str(&mut o, tags::TABLE_HEIGHT, VR::DS, "160");
    put_str(&mut o, tags::ROTATION_DIRECTION, VR::CS, "CW");
    put_str(&mut o, tags::EXPOSURE_TIME, VR::IS, "500");
    put_str(&mut o, tags::X_RAY_TUBE_CURRENT, VR::IS, "250");
    put_str(&mut o, tags::CONVOLUTION_KERNEL, VR::SH, "STANDARD");
    put_str(&mut o, tags::PATIENT_POSITION, VR::CS, "HFS");
    put_str(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, &spec.study_uid);
    put_str(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, &spec.series_uid);
    put_str(&mut o, tags::STUDY_ID, VR::SH, &spec.study_id);
    put_str(&mut o, tags::SERIES_NUMBER, VR::IS, "1");
    put_str(&mut o, tags::ACQUISITION_NUMBER, VR::IS, "1");
    put_str(
        &mut o,
        tags::INSTANCE_NUMBER,
        VR::IS,
        &(slice + 1).to_string(),
    );
    put_str(
        &mut o,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        &format!("-175\\-175\\{z}"),
    );
    put_str(
        &mut o,
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        "1\\0\\0\\0\\1\\0",
    );
    put_str(
        &mut o,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &spec.frame_of_reference_uid,
    );
    put_str(&mut o, tags::POSITION_REFERENCE_INDICATOR, VR::LO, "SN");
    put_str(&mut o, tags::SLICE_LOCATION, VR::DS, &z);
    put_u16(&mut o, tags::SAMPLES_PER_PIXEL, 1);
    put_str(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    if frames > 1 {
        put_str(&mut o, tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string());
    }
    put_u16(&mut o, tags::ROWS, rows);
    put_u16(&mut o, tags::COLUMNS, columns);
    put_str(&mut o, tags::PIXEL_SPACING, VR::DS, "0.683594\\0.683594");
    let encapsulated = matches!(pixels, Pixels::Encapsulated { .. });
    let bits: u16 = if encapsulated { 8 } else { 16 };
    put_u16(&mut o, tags::BITS_ALLOCATED, bits);
    put_u16(&mut o, tags::BITS_STORED, if encapsulated { 8 } else { 12 });
    put_u16(&mut o, tags::HIGH_BIT, if encapsulated { 7 } else { 11 });
    put_u16(&mut o, tags::PIXEL_REPRESENTATION, u16::from(!encapsulated));
    put_str(&mut o, tags::WINDOW_CENTER, VR::DS, "40\\-600");
    put_str(&mut o, tags::WINDOW_WIDTH, VR::DS, "400\\1500");
    put_str(&mut o, tags::RESCALE_INTERCEPT, VR::DS, "-1024");
    put_str(&mut o, tags::RESCALE_SLOPE, VR::DS, "1");
    put_str(&mut o, tags::RESCALE_TYPE, VR::LO, "HU");
    match pixels {
        Pixels::Native16 { .. } => {
            let n = rows as usize * columns as usize * frames as usize;
            let mut bytes = Vec::with_capacity(n * 2);
            let mut r = Rng::new(u64::from(slice));
            for k in 0..n {
                // air outside a disc, soft tissue with noise inside
                let (y, x) = ((k / columns as usize) % rows as usize, k % columns as usize);
                let (dy, dx) = (
                    y as i64 - i64::from(rows) / 2,
                    x as i64 - i64::from(columns) / 2,
                );
                let inside = dy * dy + dx * dx < i64::from(rows) * i64::from(rows) / 5;
                let v: i16 = if inside {
                    1024 + (r.below(64) as i16)
                } else {
                    24
                };
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            o.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::from(bytes),
            ));
        }
        Pixels::Encapsulated { fragment_len, .. } => {
            let mut r = Rng::new(u64::from(slice));
            let len = (*fragment_len + 1) & !1;
            let mut offsets = Vec::with_capacity(frames as usize);
            let mut fragments = Vec::with_capacity(frames as usize);
            for f in 0..frames {
                offsets.push(f * (len as u32 + 8));
                let mut frag: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
                frag[0] = 0xFF;
                frag[1] = 0xD8;
                fragments.push(frag);
            }
            o.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                Value::from(PixelFragmentSequence::new(offsets, fragments)),
            ));
        }
    }
    let file = o
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(ts)
                .media_storage_sop_class_uid(spec.sop_class)
                .media_storage_sop_instance_uid(sop_uid),
        )
        .map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    file.write_to_file(path).map_err(std::io::Error::other)
}

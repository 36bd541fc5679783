use rusqlite::{params, Connection};
use serde_json::{json, Map, Value};

use super::*;

const SCHEMA: &str = include_str!("../../store/schema.sql");
const BASE: &str = "https://gw.example/dicomweb";

const STUDY1_META: &str = r#"{"00080005":{"vr":"CS","Value":["ISO 2022 IR 87"]},"00101010":{"vr":"AS","Value":["045Y"]},"00081030":{"vr":"LO","Value":["胸部CT"]},"00080090":{"vr":"PN"}}"#;
const INSTANCE_META: &str = r#"{"00080008":{"vr":"CS","Value":["ORIGINAL","PRIMARY","AXIAL"]},"0008002A":{"vr":"DT","Value":["20240115101733.25"]},"00180050":{"vr":"DS","Value":[1.25]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"Yamada^Tarou"}]},"7FE00010":{"vr":"OW","BulkDataURI":"studies/1.2.3.1/series/1.2.3.1.1/instances/1.2.3.1.1.1/bulk/7FE00010"}}"#;

/// uid, patient id, name, date, time, accession, modalities, #series, #instances, meta_json
type StudyRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
    i64,
    &'static str,
);

const SERIES1_META: &str = r#"{"00080070":{"vr":"LO","Value":["ACME"]},"00081070":{"vr":"PN","Value":[{"Alphabetic":"Sato^Jiro","Ideographic":"佐藤^次郎"}]}}"#;

fn db() -> Connection {
    let conn = Connection::open_in_memory().expect("open");
    conn.execute_batch(SCHEMA).expect("schema");
    register_functions(&conn).expect("functions");
    let studies: [StudyRow; 3] = [
        (
            "1.2.3.1",
            "P001",
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            "20240115",
            "101500",
            "ACC001",
            "CT\\SR",
            2,
            3,
            STUDY1_META,
        ),
        (
            "1.2.3.2",
            "P002",
            "Smith^John",
            "20240201",
            "090000",
            "acc002",
            "MR",
            1,
            1,
            "{}",
        ),
        (
            "1.2.3.3",
            "P003",
            "Suzuki^Hanako=鈴木^花子=すずき^はなこ",
            "20231231",
            "",
            "",
            "CT",
            1,
            1,
            "{}",
        ),
    ];
    for (uid, pid, name, date, time, acc, mods, ns, ni, meta) in studies {
        conn.execute(
            "INSERT INTO study (study_uid, patient_id, patient_name, study_date, study_time, accession_number,
             modalities_in_study, num_series, num_instances, referring_physician_name, meta_json, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'Dr^Who', ?10, 0)",
            params![uid, pid, name, date, time, acc, mods, ns, ni, meta],
        )
        .expect("study");
    }
    let series: [(&str, &str, &str, Option<i64>, &str); 4] = [
        ("1.2.3.1.1", "1.2.3.1", "CT", Some(1), SERIES1_META),
        ("1.2.3.1.2", "1.2.3.1", "SR", Some(2), "{}"),
        ("1.2.3.2.1", "1.2.3.2", "MR", Some(1), "{}"),
        ("1.2.3.3.1", "1.2.3.3", "CT", None, "{}"),
    ];
    for (uid, study, modality, number, meta) in series {
        conn.execute(
            "INSERT INTO series (series_uid, study_uid, modality, series_number, series_time, meta_json, updated_at)
             VALUES (?1, ?2, ?3, ?4, '101530.5', ?5, 0)",
            params![uid, study, modality, number, meta],
        )
        .expect("series");
    }
    let instances: [(&str, &str, &str, i64, &str); 5] = [
        ("1.2.3.1.1.1", "1.2.3.1.1", "1.2.3.1", 1, INSTANCE_META),
        ("1.2.3.1.1.2", "1.2.3.1.1", "1.2.3.1", 2, "{}"),
        ("1.2.3.1.2.1", "1.2.3.1.2", "1.2.3.1", 1, "{}"),
        ("1.2.3.2.1.1", "1.2.3.2.1", "1.2.3.2", 1, "{}"),
        ("1.2.3.3.1.1", "1.2.3.3.1", "1.2.3.3", 1, "{}"),
    ];
    for (uid, series, study, number, meta) in instances {
        conn.execute(
            "INSERT INTO instance (sop_instance_uid, series_uid, study_uid, sop_class_uid, instance_number,
             transfer_syntax_uid, rows, columns, bits_allocated, file_path, file_size, sha256, meta_json, received_at)
             VALUES (?1, ?2, ?3, '1.2.840.10008.5.1.4.1.1.2', ?4, '1.2.840.10008.1.2.1', 512, 512, 16, 'f', 1, 'x', ?5, 0)",
            params![uid, series, study, number, meta],
        )
        .expect("instance");
    }
    conn
}

fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn search(
    conn: &Connection,
    level: QidoLevel,
    scope: QidoScope,
    params: &[(&str, &str)],
) -> QidoRows {
    let q = parse_query(level, scope, &pairs(params)).expect("valid query");
    run_query(conn, &q, BASE).expect("query runs")
}

fn studies(conn: &Connection, params: &[(&str, &str)]) -> Vec<Map<String, Value>> {
    search(conn, QidoLevel::Study, QidoScope::default(), params).rows
}

fn error(level: QidoLevel, params: &[(&str, &str)]) -> QidoError {
    parse_query(level, QidoScope::default(), &pairs(params)).expect_err("should be rejected")
}

fn first(row: &Map<String, Value>, tag: &str) -> Value {
    row[tag]["Value"][0].clone()
}

fn uids(rows: &[Map<String, Value>], tag: &str) -> Vec<String> {
    rows.iter()
        .map(|r| first(r, tag).as_str().unwrap_or_default().to_owned())
        .collect()
}

fn study_uids(conn: &Connection, params: &[(&str, &str)]) -> Vec<String> {
    uids(&studies(conn, params), "0020000D")
}

#[test]
fn all_studies_newest_first() {
    assert_eq!(study_uids(&db(), &[]), ["1.2.3.2", "1.2.3.1", "1.2.3.3"]);
}

#[test]
fn keyword_and_tag_are_equivalent() {
    let conn = db();
    assert_eq!(study_uids(&conn, &[("PatientID", "P001")]), ["1.2.3.1"]);
    assert_eq!(study_uids(&conn, &[("00100020", "P001")]), ["1.2.3.1"]);
    assert_eq!(study_uids(&conn, &[("0020000d", "1.2.3.2")]), ["1.2.3.2"]);
}

#[test]
fn single_value_is_case_sensitive_and_injection_safe() {
    let conn = db();
    assert_eq!(
        study_uids(&conn, &[("AccessionNumber", "ACC001")]),
        ["1.2.3.1"]
    );
    assert!(study_uids(&conn, &[("AccessionNumber", "acc001")]).is_empty());
    assert!(study_uids(&conn, &[("PatientID", "' OR 1=1 --")]).is_empty());
}

#[test]
fn wildcards() {
    let conn = db();
    assert_eq!(
        study_uids(&conn, &[("AccessionNumber", "ACC*")]),
        ["1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("AccessionNumber", "?cc002")]),
        ["1.2.3.2"]
    );
    assert_eq!(study_uids(&conn, &[("PatientID", "P00?")]).len(), 3);
    // SQL LIKE metacharacters are literals.
    assert!(study_uids(&conn, &[("AccessionNumber", "ACC%")]).is_empty());
    assert!(study_uids(&conn, &[("AccessionNumber", "ACC_01")]).is_empty());
    assert!(study_uids(&conn, &[("AccessionNumber", "[A]CC*")]).is_empty());
}

#[test]
fn uid_lists() {
    let conn = db();
    assert_eq!(
        study_uids(&conn, &[("StudyInstanceUID", "1.2.3.1,1.2.3.3")]),
        ["1.2.3.1", "1.2.3.3"]
    );
    assert_eq!(
        study_uids(&conn, &[("StudyInstanceUID", "1.2.3.1\\1.2.3.2")]),
        ["1.2.3.2", "1.2.3.1"]
    );
    let repeated = [
        ("StudyInstanceUID", "1.2.3.1"),
        ("StudyInstanceUID", "1.2.3.2"),
    ];
    assert_eq!(study_uids(&conn, &repeated).len(), 2);
    let e = error(QidoLevel::Study, &[("StudyInstanceUID", "1.2.3.1,1.2.x")]);
    assert!(e.is_client_error());
    assert_eq!(
        e.to_string(),
        "invalid value '1.2.3.1,1.2.x' for StudyInstanceUID (0020,000D) (parameter 'StudyInstanceUID'): \
         '1.2.x' is not a UID: only digits and '.' are allowed (wildcards are not)"
    );
    assert!(error(QidoLevel::Study, &[("StudyInstanceUID", "1.2.*")])
        .to_string()
        .contains("wildcards"));
    assert!(error(QidoLevel::Study, &[("StudyInstanceUID", "1..2")])
        .to_string()
        .contains("empty component"));
}

#[test]
fn universal_matching_returns_the_attribute() {
    let conn = db();
    let rows = studies(&conn, &[("IssuerOfPatientID", "")]);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["00100021"], json!({"vr": "LO"}));
    assert_eq!(study_uids(&conn, &[("PatientName", "*")]).len(), 3);
}

#[test]
fn date_and_time_ranges() {
    let conn = db();
    assert_eq!(
        study_uids(&conn, &[("StudyDate", "20240101-20240131")]),
        ["1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("StudyDate", "-20231231")]),
        ["1.2.3.3"]
    );
    assert_eq!(
        study_uids(&conn, &[("StudyDate", "20240115-")]),
        ["1.2.3.2", "1.2.3.1"]
    );
    assert_eq!(study_uids(&conn, &[("00080020", "20240201")]), ["1.2.3.2"]);
    assert_eq!(
        study_uids(&conn, &[("StudyDate", "20240101-"), ("StudyTime", "10-")]),
        ["1.2.3.1"]
    );
    // An hour-only upper bound covers the whole hour; empty times never match a range.
    assert_eq!(study_uids(&conn, &[("StudyTime", "09-09")]), ["1.2.3.2"]);
    assert_eq!(
        study_uids(&conn, &[("StudyTime", "-1015")]),
        ["1.2.3.2", "1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("StudyTime", "101501-")]),
        Vec::<String>::new()
    );
    let series = search(
        &conn,
        QidoLevel::Series,
        QidoScope::default(),
        &[("SeriesTime", "1015-101530")],
    );
    assert_eq!(series.rows.len(), 4);
}

#[test]
fn datetime_range_on_meta_json() {
    let conn = db();
    let scope = QidoScope::default();
    let hit = search(
        &conn,
        QidoLevel::Instance,
        scope.clone(),
        &[("AcquisitionDateTime", "2024011510-2024011511")],
    );
    assert_eq!(uids(&hit.rows, "00080018"), ["1.2.3.1.1.1"]);
    assert_eq!(first(&hit.rows[0], "0008002A"), json!("20240115101733.25"));
    let single = search(
        &conn,
        QidoLevel::Instance,
        scope.clone(),
        &[("AcquisitionDateTime", "202401151017+0900")],
    );
    assert_eq!(single.rows.len(), 1);
    let miss = search(
        &conn,
        QidoLevel::Instance,
        scope,
        &[("AcquisitionDateTime", "2023-2023")],
    );
    assert!(miss.rows.is_empty());
}

#[test]
fn bad_dates_are_rejected() {
    let e = error(QidoLevel::Study, &[("StudyDate", "2024-01-01")]);
    assert_eq!(
        e.to_string(),
        "invalid value '2024-01-01' for StudyDate (0008,0020) (parameter 'StudyDate'): a range has exactly one '-'"
    );
    let e = error(QidoLevel::Study, &[("StudyDate", "20241301-")]);
    assert!(
        e.to_string()
            .contains("'20241301' is not a valid DA value (YYYYMMDD)"),
        "{e}"
    );
    assert!(
        error(QidoLevel::Study, &[("StudyDate", "20240131-20240101")])
            .to_string()
            .contains("after its end")
    );
    assert!(error(QidoLevel::Study, &[("StudyDate", "-")])
        .to_string()
        .contains("at least one bound"));
    assert!(error(QidoLevel::Study, &[("StudyDate", "2024*")])
        .to_string()
        .contains("wildcards"));
    assert!(error(QidoLevel::Study, &[("StudyTime", "2500")])
        .to_string()
        .contains("not a valid TM"));
}

#[test]
fn person_names() {
    let conn = db();
    assert_eq!(
        study_uids(&conn, &[("PatientName", "yamada*")]),
        ["1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("PatientName", "YAMADA^TAROU")]),
        ["1.2.3.1"]
    );
    assert_eq!(study_uids(&conn, &[("PatientName", "山田*")]), ["1.2.3.1"]);
    assert_eq!(
        study_uids(&conn, &[("PatientName", "やまだ^たろう")]),
        ["1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("PatientName", "=鈴木^花子")]),
        ["1.2.3.3"]
    );
    assert_eq!(
        study_uids(
            &conn,
            &[("PatientName", "Yamada^Tarou=山田^太郎=やまだ^たろう")]
        ),
        ["1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("PatientName", "*^hanako*")]),
        ["1.2.3.3"]
    );
    assert_eq!(
        study_uids(&conn, &[("PatientName", "smith*\\suzuki*")]),
        ["1.2.3.2", "1.2.3.3"]
    );
    assert!(study_uids(&conn, &[("PatientName", "Tarou")]).is_empty());
    assert!(study_uids(&conn, &[("PatientName", "tar")]).is_empty());
}

#[test]
fn fuzzy_person_names() {
    let conn = db();
    let fuzzy = |name| study_uids(&conn, &[("PatientName", name), ("fuzzymatching", "true")]);
    assert_eq!(fuzzy("tar"), ["1.2.3.1"]);
    assert_eq!(fuzzy("花"), ["1.2.3.3"]);
    assert_eq!(fuzzy("yam^tar"), ["1.2.3.1"]);
    assert!(fuzzy("tar^yam").is_empty());
    assert!(fuzzy("arou").is_empty());
    assert_eq!(
        study_uids(&conn, &[("fuzzymatching", "false"), ("PatientName", "tar")]).len(),
        0
    );
    assert_eq!(
        study_uids(
            &conn,
            &[("ReferringPhysicianName", "who"), ("fuzzymatching", "TRUE")]
        )
        .len(),
        3
    );
}

#[test]
fn modalities_in_study() {
    let conn = db();
    assert_eq!(
        study_uids(&conn, &[("ModalitiesInStudy", "SR")]),
        ["1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("ModalitiesInStudy", "MR\\SR")]),
        ["1.2.3.2", "1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("ModalitiesInStudy", "MR,SR")]),
        ["1.2.3.2", "1.2.3.1"]
    );
    assert_eq!(
        study_uids(&conn, &[("ModalitiesInStudy", "C*")]),
        ["1.2.3.1", "1.2.3.3"]
    );
    assert!(study_uids(&conn, &[("ModalitiesInStudy", "ct")]).is_empty());
    let repeated = [("ModalitiesInStudy", "MR"), ("00080061", "SR")];
    assert_eq!(study_uids(&conn, &repeated), ["1.2.3.2", "1.2.3.1"]);
}

#[test]
fn matching_on_meta_json() {
    let conn = db();
    let rows = studies(&conn, &[("PatientAge", "045Y")]);
    assert_eq!(uids(&rows, "0020000D"), ["1.2.3.1"]);
    assert_eq!(rows[0]["00101010"], json!({"vr": "AS", "Value": ["045Y"]}));
    let series = search(
        &conn,
        QidoLevel::Series,
        QidoScope::default(),
        &[("Manufacturer", "AC*")],
    );
    assert_eq!(uids(&series.rows, "0020000E"), ["1.2.3.1.1"]);
    let scope = QidoScope::default();
    assert_eq!(
        search(
            &conn,
            QidoLevel::Instance,
            scope.clone(),
            &[("ImageType", "AXIAL")]
        )
        .rows
        .len(),
        1
    );
    assert_eq!(
        search(
            &conn,
            QidoLevel::Instance,
            scope.clone(),
            &[("SliceThickness", "1.250")]
        )
        .rows
        .len(),
        1
    );
    assert!(search(
        &conn,
        QidoLevel::Instance,
        scope.clone(),
        &[("SliceThickness", "1.3")]
    )
    .rows
    .is_empty());
    let series = search(
        &conn,
        QidoLevel::Series,
        QidoScope::default(),
        &[("OperatorsName", "佐藤*")],
    );
    assert_eq!(uids(&series.rows, "0020000E"), ["1.2.3.1.1"]);
    assert_eq!(
        series.rows[0]["00081070"]["Value"][0]["Ideographic"],
        json!("佐藤^次郎")
    );
    let scope = QidoScope::default();
    let fuzzy = [("OperatorsName", "jir"), ("fuzzymatching", "true")];
    assert_eq!(
        search(&conn, QidoLevel::Series, scope.clone(), &fuzzy)
            .rows
            .len(),
        1
    );
    // Study-level attribute matched from a series search.
    let series = search(&conn, QidoLevel::Series, scope, &[("PatientAge", "045Y")]);
    assert_eq!(series.rows.len(), 2);
}

#[test]
fn lower_level_attributes_are_rejected() {
    let e = error(QidoLevel::Study, &[("Modality", "CT")]);
    assert_eq!(
        e.to_string(),
        "invalid query parameter 'Modality': Modality (0008,0060) is held at series level and cannot be a \
         matching key when searching for studies (use ModalitiesInStudy)"
    );
    let e = error(QidoLevel::Series, &[("00080018", "1.2")]);
    assert!(
        e.to_string()
            .contains("SOPInstanceUID (0008,0018) is held at instance level"),
        "{e}"
    );
    assert!(error(QidoLevel::Study, &[("ImageType", "X")])
        .to_string()
        .contains("instance level"));
    // Patient attributes the store does not keep at study level are searchable on instances only.
    assert!(error(QidoLevel::Study, &[("EthnicGroup", "X")])
        .to_string()
        .contains("held at instance level"));
}

#[test]
fn bad_parameters() {
    let e = error(QidoLevel::Study, &[("PatientNmae", "x")]);
    assert!(e.is_client_error());
    assert!(
        e.to_string()
            .starts_with("unknown query parameter 'PatientNmae'"),
        "{e}"
    );
    let e = error(QidoLevel::Study, &[("includefield", "PatientName,Bogus")]);
    assert!(
        e.to_string()
            .starts_with("unknown attribute 'Bogus' in includefield"),
        "{e}"
    );
    let e = error(
        QidoLevel::Study,
        &[("ReferencedStudySequence.ReferencedSOPInstanceUID", "1.2")],
    );
    assert!(e.to_string().contains("sequence matching"), "{e}");
    assert!(error(QidoLevel::Study, &[("ReferencedStudySequence", "1")])
        .to_string()
        .contains("sequence matching"));
    assert!(error(QidoLevel::Study, &[("PatientID", "a\0b")])
        .to_string()
        .contains("NUL"));
    assert_eq!(
        error(QidoLevel::Study, &[("limit", "ten")]).to_string(),
        "invalid query parameter 'limit': 'ten' is not a non-negative integer"
    );
    assert!(error(QidoLevel::Study, &[("limit", "0")])
        .to_string()
        .contains("at least 1"));
    assert!(error(QidoLevel::Study, &[("offset", "-1")])
        .to_string()
        .contains("offset"));
    assert!(error(QidoLevel::Study, &[("limit", "1"), ("limit", "2")])
        .to_string()
        .contains("more than once"));
    assert!(error(QidoLevel::Study, &[("fuzzymatching", "yes")])
        .to_string()
        .contains("neither true nor false"));
    let e = error(QidoLevel::Study, &[("PatientName", "a"), ("00100010", "b")]);
    assert!(e.to_string().contains("given more than once"), "{e}");
    assert!(error(QidoLevel::Study, &[("RetrieveURL", "x")])
        .to_string()
        .contains("computed"));
    assert!(
        error(QidoLevel::Study, &[("NumberOfStudyRelatedSeries", "two")])
            .to_string()
            .contains("not an integer")
    );
    let scoped = parse_query(
        QidoLevel::Study,
        QidoScope {
            study_uid: Some("1.2".into()),
            series_uid: None,
        },
        &[],
    );
    assert!(matches!(scoped, Err(QidoError::InvalidParameter { .. })));
    let bad_path = parse_query(
        QidoLevel::Series,
        QidoScope {
            study_uid: Some("1.x".into()),
            series_uid: None,
        },
        &[],
    );
    assert!(bad_path
        .expect_err("bad uid")
        .to_string()
        .contains("StudyInstanceUID in the path"));
    assert!(parse_query(
        QidoLevel::Study,
        QidoScope::default(),
        &pairs(&[("orderby", "PatientName")])
    )
    .is_ok());
}

#[test]
fn limit_offset_remaining() {
    let conn = db();
    let page = search(
        &conn,
        QidoLevel::Study,
        QidoScope::default(),
        &[("limit", "1")],
    );
    assert_eq!(
        (uids(&page.rows, "0020000D"), page.remaining),
        (vec!["1.2.3.2".to_owned()], 2)
    );
    let page = search(
        &conn,
        QidoLevel::Study,
        QidoScope::default(),
        &[("limit", "1"), ("offset", "1")],
    );
    assert_eq!(
        (uids(&page.rows, "0020000D"), page.remaining),
        (vec!["1.2.3.1".to_owned()], 1)
    );
    let page = search(
        &conn,
        QidoLevel::Study,
        QidoScope::default(),
        &[("offset", "2"), ("limit", "5")],
    );
    assert_eq!((page.rows.len(), page.remaining), (1, 0));
    let page = search(
        &conn,
        QidoLevel::Study,
        QidoScope::default(),
        &[("offset", "99")],
    );
    assert_eq!((page.rows.len(), page.remaining), (0, 0));
    let page = search(
        &conn,
        QidoLevel::Instance,
        QidoScope::default(),
        &[("limit", "2"), ("PatientID", "P001")],
    );
    assert_eq!((page.rows.len(), page.remaining), (2, 1));
    let q = parse_query(
        QidoLevel::Study,
        QidoScope::default(),
        &pairs(&[("limit", "999999")]),
    )
    .expect("valid");
    assert_eq!((q.limit, q.offset), (MAX_LIMIT, 0));
    let mut q = parse_query(QidoLevel::Study, QidoScope::default(), &[]).expect("valid");
    assert_eq!(q.limit, DEFAULT_LIMIT);
    q.apply_limits(2, 50);
    assert_eq!(q.limit, 2);
    let page = run_query(&conn, &q, BASE).expect("runs");
    assert_eq!((page.rows.len(), page.remaining), (2, 1));
    let mut q = parse_query(
        QidoLevel::Study,
        QidoScope::default(),
        &pairs(&[("limit", "70")]),
    )
    .expect("valid");
    q.apply_limits(2, 50);
    assert_eq!(q.limit, 50);
}

#[test]
fn study_result_shape() {
    let conn = db();
    let rows = studies(&conn, &[("PatientID", "P001")]);
    let row = &rows[0];
    let keys: Vec<&String> = row.keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "keys in ascending tag order");
    let expected = [
        "00080005", "00080020", "00080030", "00080050", "00080056", "00080061", "00080090",
        "00081030", "00081190", "00100010", "00100020", "00100030", "00100040", "0020000D",
        "00200010", "00201206", "00201208",
    ];
    assert_eq!(keys, expected);
    assert_eq!(
        row["00080005"],
        json!({"vr": "CS", "Value": ["ISO_IR 192"]})
    );
    assert_eq!(
        row["00100010"],
        json!({"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}]})
    );
    assert_eq!(row["00080061"], json!({"vr": "CS", "Value": ["CT", "SR"]}));
    assert_eq!(row["00201206"], json!({"vr": "IS", "Value": [2]}));
    assert_eq!(row["00100030"], json!({"vr": "DA"}));
    assert_eq!(
        row["00081190"],
        json!({"vr": "UR", "Value": [format!("{BASE}/studies/1.2.3.1")]})
    );
    let smith = &studies(&conn, &[("PatientID", "P002")])[0];
    assert_eq!(
        smith["00100010"],
        json!({"vr": "PN", "Value": [{"Alphabetic": "Smith^John"}]})
    );
    let suzuki = &studies(&conn, &[("PatientID", "P003")])[0];
    assert_eq!(suzuki["00080050"], json!({"vr": "SH"}));
}

#[test]
fn includefield_list_repeated_and_tags() {
    let conn = db();
    let params = [
        ("PatientID", "P001"),
        ("includefield", "PatientAge,00081030"),
        ("includefield", "IssuerOfPatientID"),
    ];
    let row = &studies(&conn, &params)[0];
    assert_eq!(row["00101010"], json!({"vr": "AS", "Value": ["045Y"]}));
    assert_eq!(
        row["00081030"],
        json!({"vr": "LO"}),
        "the (empty) column wins over meta_json"
    );
    assert_eq!(row["00100021"], json!({"vr": "LO"}));
    // Absent study-level attribute: returned empty; lower-level attribute: ignored.
    let row = &studies(
        &conn,
        &[
            ("PatientID", "P002"),
            ("includefield", "PatientWeight,Rows,00080060"),
        ],
    )[0];
    assert_eq!(row["00101030"], json!({"vr": "DS"}));
    assert!(!row.contains_key("00280010") && !row.contains_key("00080060"));
}

#[test]
fn includefield_all() {
    let conn = db();
    let rows = search(
        &conn,
        QidoLevel::Instance,
        QidoScope::default(),
        &[("includefield", "all"), ("InstanceNumber", "1")],
    );
    let row = rows
        .rows
        .iter()
        .find(|r| first(r, "00080018") == json!("1.2.3.1.1.1"))
        .expect("instance");
    assert_eq!(
        row["00080005"],
        json!({"vr": "CS", "Value": ["ISO_IR 192"]}),
        "character set is always UTF-8"
    );
    assert_eq!(row["00180050"], json!({"vr": "DS", "Value": [1.25]}));
    assert_eq!(
        row["00080008"]["Value"],
        json!(["ORIGINAL", "PRIMARY", "AXIAL"])
    );
    assert_eq!(
        row["7FE00010"]["BulkDataURI"],
        json!(format!(
            "{BASE}/studies/1.2.3.1/series/1.2.3.1.1/instances/1.2.3.1.1.1/bulk/7FE00010"
        ))
    );
    assert_eq!(
        row["00080070"],
        json!({"vr": "LO", "Value": ["ACME"]}),
        "series meta_json merged"
    );
    assert_eq!(
        row["00101010"],
        json!({"vr": "AS", "Value": ["045Y"]}),
        "study meta_json merged"
    );
    assert_eq!(
        row["00100010"]["Value"][0]["Ideographic"],
        json!("山田^太郎"),
        "column wins"
    );
    assert_eq!(
        row["00100021"],
        json!({"vr": "LO"}),
        "all columns of the levels"
    );
    assert_eq!(row["00200013"], json!({"vr": "IS", "Value": [1]}));
    assert_eq!(row["00280010"], json!({"vr": "US", "Value": [512]}));
    assert_eq!(
        row["00280002"],
        json!({"vr": "US"}),
        "SamplesPerPixel column (NULL)"
    );
    let keys: Vec<&String> = row.keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn scoped_series_search() {
    let conn = db();
    let scope = QidoScope {
        study_uid: Some("1.2.3.1".into()),
        series_uid: None,
    };
    let rows = search(&conn, QidoLevel::Series, scope, &[]).rows;
    assert_eq!(uids(&rows, "0020000E"), ["1.2.3.1.1", "1.2.3.1.2"]);
    let row = &rows[0];
    assert!(
        !row.contains_key("00100010"),
        "study attributes left out when scoped by study"
    );
    assert_eq!(first(row, "0020000D"), json!("1.2.3.1"));
    assert_eq!(row["00200011"], json!({"vr": "IS", "Value": [1]}));
    assert_eq!(row["00201209"], json!({"vr": "IS", "Value": [0]}));
    assert_eq!(
        row["00081190"],
        json!({"vr": "UR", "Value": [format!("{BASE}/studies/1.2.3.1/series/1.2.3.1.1")]})
    );
}

#[test]
fn unscoped_series_search_includes_study_attributes() {
    let conn = db();
    let rows = search(
        &conn,
        QidoLevel::Series,
        QidoScope::default(),
        &[("Modality", "CT")],
    )
    .rows;
    assert_eq!(
        uids(&rows, "0020000E"),
        ["1.2.3.1.1", "1.2.3.3.1"],
        "null series numbers last"
    );
    assert_eq!(rows[1]["00200011"], json!({"vr": "IS"}));
    assert!(rows[0].contains_key("00100010") && rows[0].contains_key("00080061"));
    let rows = search(
        &conn,
        QidoLevel::Series,
        QidoScope::default(),
        &[("PatientName", "鈴木*")],
    )
    .rows;
    assert_eq!(uids(&rows, "0020000E"), ["1.2.3.3.1"]);
}

#[test]
fn scoped_instance_searches() {
    let conn = db();
    let study = QidoScope {
        study_uid: Some("1.2.3.1".into()),
        series_uid: None,
    };
    let rows = search(&conn, QidoLevel::Instance, study, &[]).rows;
    assert_eq!(rows.len(), 3);
    assert!(
        rows[0].contains_key("00080060"),
        "series attributes when not scoped by series"
    );
    assert!(!rows[0].contains_key("00100010"));
    let series = QidoScope {
        study_uid: Some("1.2.3.1".into()),
        series_uid: Some("1.2.3.1.1".into()),
    };
    let rows = search(&conn, QidoLevel::Instance, series, &[]).rows;
    assert_eq!(uids(&rows, "00080018"), ["1.2.3.1.1.1", "1.2.3.1.1.2"]);
    let row = &rows[0];
    assert!(!row.contains_key("00080060"));
    assert_eq!(first(row, "0020000E"), json!("1.2.3.1.1"));
    assert_eq!(first(row, "00083002"), json!("1.2.840.10008.1.2.1"));
    assert_eq!(row["00280008"], json!({"vr": "IS"}));
    assert!(
        !row.contains_key("00280002"),
        "SamplesPerPixel only on request"
    );
    assert_eq!(
        first(row, "00081190"),
        json!(format!(
            "{BASE}/studies/1.2.3.1/series/1.2.3.1.1/instances/1.2.3.1.1.1"
        ))
    );
    let all = search(&conn, QidoLevel::Instance, QidoScope::default(), &[]).rows;
    assert!(all[0].contains_key("00100010") && all[0].contains_key("00080060"));
}

#[test]
fn numeric_columns() {
    let conn = db();
    assert_eq!(
        study_uids(&conn, &[("NumberOfStudyRelatedSeries", "2")]),
        ["1.2.3.1"]
    );
    let series = search(
        &conn,
        QidoLevel::Series,
        QidoScope::default(),
        &[("SeriesNumber", "2\\7")],
    );
    assert_eq!(uids(&series.rows, "0020000E"), ["1.2.3.1.2"]);
    let e = error(QidoLevel::Series, &[("SeriesNumber", "1*")]);
    assert!(e.to_string().contains("'1*' is not an integer"), "{e}");
}

#[test]
fn wildcard_matcher() {
    use super::matching::wildcard_match as w;
    assert!(w("a*c", "abbbc") && w("a?c", "abc") && w("*", "") && w("**a", "ba"));
    assert!(!w("a?c", "ac") && !w("a*d", "abc") && !w("", "a"));
    assert!(w("山田*", "山田^太郎"));
}

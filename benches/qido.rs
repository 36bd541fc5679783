//! QIDO-RS in process, on an index of 10,000 studies (1 series, 1 instance each): the real
//! OHIF queries through the handler's own steps (query string decoding, `qido::parse_query`,
//! `Index::read_with(qido::run_query)`, `serde_json::to_vec` of the rows), without HTTP.
//!
//! Peer in the same run: `peer/*` runs the smallest hand-written SQL that returns the same
//! page of rows from the same index (no total count, no DICOM JSON), i.e. the floor SQLite
//! itself sets for that query. The ratio `qido/x : peer/x` is the cost of our generic query
//! engine over it.
//!
//! The index is built once before anything is timed and then checkpointed (WAL folded into the
//! database file, the state after a gateway restart); `cargo bench --bench qido`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tsunagi::store::Index;
use tsunagi::web::qido::{self, QidoLevel, QidoScope};
use tsunagi::web::search::parse_query_string;

#[path = "support/synth.rs"]
mod synth;

const STUDIES: usize = 10_000;
const BASE: &str = "http://127.0.0.1:8080/dicom-web";
/// OHIF's study list parameters (commas sent as %2C, exactly as OHIF does).
const LIST: &str =
    "limit=101&offset=0&fuzzymatching=true&includefield=00081030%2C00080060%2C00080090%2C00100030";

struct Fixture {
    _dir: tempfile::TempDir,
    index: Index,
    patient_id: String,
    study_uid: String,
    date_range: String,
}

fn build_index() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let index = Index::open(&dir.path().join("index.sqlite")).expect("open index");
    let started = Instant::now();
    for i in 0..STUDIES {
        let spec = synth::study_spec(i, STUDIES);
        let inst = synth::indexed_instance(&spec);
        let rel = std::path::PathBuf::from(format!(
            "files/{}/{}/{}.dcm",
            spec.study_uid, spec.series_uid, spec.sop_uid
        ));
        index
            .upsert(&inst, &rel, 600_000, "0".repeat(64).as_str(), 1_700_000_000)
            .expect("upsert");
    }
    // Steady state, as after a gateway restart: the WAL folded into the database file.
    rusqlite::Connection::open(dir.path().join("index.sqlite"))
        .and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
        .expect("checkpoint");
    let (st, se, ins) = index.counts().expect("counts");
    eprintln!(
        "qido bench: index of {st} studies / {se} series / {ins} instances built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(st as usize, STUDIES);
    let probe = synth::study_spec(4242, STUDIES);
    Fixture {
        _dir: dir,
        index,
        patient_id: probe.patient_id,
        study_uid: probe.study_uid,
        date_range: "20240101-20240131".into(),
    }
}

/// What `web::search::search` does between the query string and the response body.
fn handle(index: &Index, level: QidoLevel, scope: &QidoScope, raw: &str) -> (usize, usize) {
    let pairs = parse_query_string(raw).expect("query string");
    let query = qido::parse_query(level, scope.clone(), &pairs).expect("valid query");
    let rows = index
        .read_with(|c| qido::run_query(c, &query, BASE))
        .expect("query runs");
    let body = serde_json::to_vec(&rows.rows).expect("json");
    (rows.rows.len(), body.len())
}

fn bench_qido(c: &mut Criterion) {
    let fx = build_index();
    let study_scope = QidoScope::default();
    let series_scope = QidoScope {
        study_uid: Some(fx.study_uid.clone()),
        series_uid: None,
    };
    let cases: Vec<(&str, QidoLevel, &QidoScope, String)> = vec![
        (
            "study_list",
            QidoLevel::Study,
            &study_scope,
            LIST.to_string(),
        ),
        (
            "patient_name_*PHANT*",
            QidoLevel::Study,
            &study_scope,
            format!("PatientName=*PHANT*&{LIST}"),
        ),
        (
            "patient_name_山田*",
            QidoLevel::Study,
            &study_scope,
            format!("PatientName=%E5%B1%B1%E7%94%B0*&{LIST}"),
        ),
        (
            "patient_id_exact",
            QidoLevel::Study,
            &study_scope,
            format!("00100020={}&{LIST}", fx.patient_id),
        ),
        (
            "date_range_ct",
            QidoLevel::Study,
            &study_scope,
            format!("ModalitiesInStudy=CT&{LIST}&StudyDate={}", fx.date_range),
        ),
        (
            "study_uid",
            QidoLevel::Study,
            &study_scope,
            format!("{LIST}&StudyInstanceUID={}", fx.study_uid),
        ),
        (
            "series_of_study",
            QidoLevel::Series,
            &series_scope,
            "includefield=00080021%2C00080031%2C0008103E%2C00200011".to_string(),
        ),
    ];
    for (name, level, scope, raw) in &cases {
        let (n, bytes) = handle(&fx.index, *level, scope, raw);
        eprintln!("qido bench: {name}: {n} rows, {bytes} bytes of JSON");
    }

    let mut g = c.benchmark_group("qido_10k_studies");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, level, scope, raw) in &cases {
        g.bench_with_input(BenchmarkId::new("qido", name), raw, |b, raw| {
            b.iter(|| handle(&fx.index, *level, scope, raw))
        });
    }

    // Peers: the minimal SQL for the same pages.
    let page_cols =
        "study_uid, patient_id, patient_name, patient_birth_date, patient_sex, study_date, \
                     study_time, accession_number, study_id, study_description, \
                     referring_physician_name, modalities_in_study, num_series, num_instances";
    let peers: Vec<(&str, String, Vec<String>)> = vec![
        (
            "study_list",
            format!("SELECT {page_cols} FROM study ORDER BY study_date DESC, study_time DESC, study_uid LIMIT 101"),
            vec![],
        ),
        (
            "patient_id_exact",
            format!("SELECT {page_cols} FROM study WHERE patient_id = ?1 ORDER BY study_date DESC, study_time DESC, study_uid LIMIT 101"),
            vec![fx.patient_id.clone()],
        ),
        (
            "patient_name_*PHANT*",
            format!("SELECT {page_cols} FROM study WHERE upper(patient_name) GLOB '*PHANT*' ORDER BY study_date DESC, study_time DESC, study_uid LIMIT 101"),
            vec![],
        ),
        (
            "date_range_ct",
            format!("SELECT {page_cols} FROM study WHERE study_date BETWEEN '20240101' AND '20240131' \
                     AND ('\\' || modalities_in_study || '\\') LIKE '%\\CT\\%' \
                     ORDER BY study_date DESC, study_time DESC, study_uid LIMIT 101"),
            vec![],
        ),
    ];
    for (name, sql, params) in &peers {
        let plan = fx
            .index
            .read(|c| {
                let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = st.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    r.get::<_, String>(3)
                })?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .map(|v| v.join("; "))
            .unwrap_or_else(|e| e.to_string());
        eprintln!("qido bench: peer {name} plan: {plan}");
    }
    for (name, sql, params) in &peers {
        g.bench_function(BenchmarkId::new("peer", name), |b| {
            b.iter(|| {
                fx.index
                    .read(|c| {
                        let mut st = c.prepare_cached(sql)?;
                        let rows =
                            st.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                                let mut n = 0usize;
                                for k in 0..14 {
                                    if let Ok(rusqlite::types::ValueRef::Text(t)) = r.get_ref(k) {
                                        n += t.len();
                                    }
                                }
                                Ok(n)
                            })?;
                        rows.sum::<rusqlite::Result<usize>>()
                    })
                    .expect("peer query")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_qido);
criterion_main!(benches);

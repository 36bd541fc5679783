//! QIDO-RS query parameters at every level and scope: parsing either yields a query or a
//! `QidoError` (400), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi::web::qido::{parse_query, QidoLevel, QidoScope};

fuzz_target!(|input: (u8, Vec<(String, String)>)| {
    let (which, params) = input;
    let level = match which % 3 {
        0 => QidoLevel::Study,
        1 => QidoLevel::Series,
        _ => QidoLevel::Instance,
    };
    let scope = QidoScope {
        study_uid: (which & 4 != 0).then(|| "1.2.3".to_string()),
        series_uid: (which & 8 != 0).then(|| "1.2.3.4".to_string()),
    };
    let _ = parse_query(level, scope, &params);
});

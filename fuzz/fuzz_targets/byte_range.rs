//! `Range` headers: any text and length gives Whole, Unsatisfiable or spans inside the
//! representation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi::web::byte_range::{parse, Wanted};

fuzz_target!(|input: (u64, &str)| {
    let (total, header) = input;
    if let Wanted::Spans(spans) = parse(Some(header), total) {
        assert!(!spans.is_empty());
        for s in spans {
            assert!(
                s.first <= s.last && s.last < total,
                "{s:?} of {total} from {header:?}"
            );
        }
    }
});

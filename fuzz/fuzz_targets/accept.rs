//! `Accept` headers: parsing and choosing a representation (frames and whole instances,
//! as stored or converted) never panic on any header and stored transfer syntax.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi::web::negotiate::{choose_frames, choose_instance, parse_accept, preferred, Convert};

/// Claims it can convert anything, so every branch is reachable.
struct Everything;

impl Convert for Everything {
    fn can_convert(&self, _: &str, _: &str) -> bool {
        true
    }
}

const STORED: [&str; 4] = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.50",
];

fuzz_target!(|input: (u8, &str)| {
    let (which, header) = input;
    let stored = STORED[usize::from(which) % STORED.len()];
    let ranges = parse_accept(Some(header));
    let _ = preferred(&ranges);
    let _ = choose_frames(&ranges, stored, &Everything);
    let _ = choose_instance(&ranges, stored, &Everything);
    let _ = choose_frames(&ranges, stored, &tsunagi::web::negotiate::AsStoredOnly);
});

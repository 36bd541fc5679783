//! DIMSE command sets as they arrive from any peer: decoding never panics, and what decodes
//! re-encodes to something that decodes to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagi::dimse::Command;

fuzz_target!(|data: &[u8]| {
    let Ok(command) = Command::decode(data) else {
        return;
    };
    let _ = command.field();
    let _ = command.has_data_set();
    let _ = command.affected_sop_instance_uid();
    let again = Command::decode(&command.encode()).expect("our own encoding decodes");
    assert_eq!(again.field(), command.field());
});

//! Log record bodies: any bytes decode into an operation or are refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = storage::Operation::decode(data) {
        // What decodes re-encodes to what decodes the same.
        let again = storage::Operation::decode(&op.encode()).expect("re-encoded record decodes");
        assert_eq!(again.encode(), op.encode());
    }
});

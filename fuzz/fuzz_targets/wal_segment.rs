//! Log segment files as recovery finds them after a crash or damage: opening the log either
//! succeeds (a torn tail cut) or fails with a typed error; what opens replays without panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage::wal::{Wal, WalOptions};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("wal-00000000000000000001.log"), data).expect("write");
    if let Ok(wal) = Wal::open(dir.path(), WalOptions::default()) {
        let _ = wal.replay(0, |_, body| {
            let _ = storage::Operation::decode(body);
            Ok(())
        });
    }
});

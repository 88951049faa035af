//! Sealed bodies read back from storage: any bytes open only if they were sealed for that row
//! under a known key, and never panic.
#![no_main]

use ironchart_security::keyring::{Keyring, MasterKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|stored: &[u8]| {
    let master = MasterKey::generate();
    let ring = Keyring::new(&master, &[(1, "c2FsdA".into())], 1);
    assert!(
        ring.open(b"Patient/1/1", stored).is_err(),
        "forged bytes opened"
    );
    let sealed = ring.seal(b"Patient/1/1", stored);
    assert_eq!(ring.open(b"Patient/1/1", &sealed).expect("opens"), stored);
});

//! The system image embedded in the binary: the apps of `apps/` with their manifest, and the
//! test programs of `apps/tests/` (used by the integration tests, not started by the demo).

include!(concat!(env!("OUT_DIR"), "/image.rs"));

/// The wasm bytes of the app or test program `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    APPS.iter().chain(TEST_PROGRAMS).find(|(app, _)| *app == name).map(|(_, bytes)| *bytes)
}

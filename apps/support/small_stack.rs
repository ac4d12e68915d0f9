//! The build script of the demo's small apps: a 64 KiB wasm stack instead of the default 1 MiB,
//! so that each one's linear memory starts at 2 pages (128 KiB) rather than 17 (1.1 MiB). The
//! demo then boots on a 16 MiB machine (docs/metal.md); none of these apps recurses deeply.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_FAMILY")
        .is_ok_and(|family| family.split(',').any(|f| f == "wasm"))
    {
        println!("cargo::rustc-link-arg=-zstack-size=65536");
    }
}

//! A small stack: swarm runs a thousand workers at once, and the default wasm stack (1 MiB)
//! would make each one's linear memory 17 pages (1.1 MiB) instead of about 2.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_FAMILY")
        .is_ok_and(|family| family.split(',').any(|f| f == "wasm"))
    {
        println!("cargo::rustc-link-arg=-zstack-size=65536");
    }
}

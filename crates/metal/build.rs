//! Links with `link.ld` and checks that the static relocation model is in effect.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rerun-if-changed=link.ld");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if !flags.split('\x1f').any(|flag| flag.ends_with("relocation-model=static")) {
        panic!(
            "nebulet-metal needs `-C relocation-model=static`: build it from crates/metal (whose \
             .cargo/config.toml sets it), e.g. with `cargo xtask qemu`"
        );
    }
}

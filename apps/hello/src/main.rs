//! `hello`: prints a greeting with std's `println!` (WASI `fd_write`), one line through the
//! `debug_write` call, and its arguments. Exits 0.

fn main() {
    println!("hello from nebulet");
    if let Err(error) = sip::debug::write(b"hello: this line went through debug_write\n") {
        println!("hello: debug_write failed: {error}");
    }
    let args: Vec<String> = std::env::args().collect();
    println!("hello: args {args:?}");
}

//! `http-echo`: an HTTP handler for `nebulet serve` in the native convention (it reads its
//! bootstrap channel). It answers 200 with the request body, streamed back as it arrives, with
//! the request's Content-Type, and the request line in `X-Request-Line`.
//!
//! ```text
//! nebulet serve http-echo.wasm &
//! curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8080/ > copy.jpg
//! ```

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sip::http::Request { head, mut body, mut response } = sip::http::Request::from_bootstrap()?;
    let content_type = head.header("content-type").unwrap_or("application/octet-stream");
    let request_line = format!("{} {} {}", head.method(), head.target(), head.version());
    response.start(200, &[("Content-Type", content_type), ("X-Request-Line", &request_line)])?;
    std::io::copy(&mut body, &mut response)?;
    response.flush()?;
    Ok(())
}

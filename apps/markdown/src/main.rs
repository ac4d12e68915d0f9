//! `markdown`: an HTTP handler for `nebulet serve` in the WAGI convention (a plain WASI
//! program). POST Markdown, get HTML (CommonMark with tables, footnotes, strikethrough and task
//! lists); `?page` wraps it in a whole HTML page. Other methods get 405.
//!
//! ```text
//! nebulet serve markdown.wasm &
//! curl --data-binary @README.md 'http://127.0.0.1:8080/?page'
//! ```

use std::io::{Read, Write};

use pulldown_cmark::{Options, Parser, html};

fn main() {
    let method = std::env::var("REQUEST_METHOD").unwrap_or_default();
    if method != "POST" && method != "PUT" {
        print!("Status: 405 Method Not Allowed\nAllow: POST, PUT\nContent-Type: text/plain\n\n");
        println!("POST Markdown to get HTML");
        return;
    }
    let mut markdown = String::new();
    if std::io::stdin().read_to_string(&mut markdown).is_err() {
        print!("Status: 400 Bad Request\nContent-Type: text/plain\n\nThe body is not UTF-8\n");
        return;
    }
    let parser = Parser::new_ext(
        &markdown,
        Options::ENABLE_TABLES
            | Options::ENABLE_FOOTNOTES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_TASKLISTS,
    );
    let mut body = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut body, parser);
    let page = std::env::var("QUERY_STRING")
        .is_ok_and(|query| query.split('&').any(|item| item == "page"));
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "Content-Type: text/html; charset=utf-8\n\n");
    if page {
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{body}</body></html>\n"
        );
    } else {
        let _ = out.write_all(body.as_bytes());
    }
}

//! A wasi:http hello handler, the same answer as `nebulet serve` gives with the `wagi` test
//! program's `/hello`: 200, `Content-Type: text/plain`, `Hello, world!\n`.

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Hello);

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .expect("a valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body, once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("the body's stream, once");
        out.write_all(b"Hello, world!\n").expect("written");
        out.flush().expect("flushed");
        drop(out);
        OutgoingBody::finish(body, None).expect("finished");
    }
}

//! `json`: an HTTP handler for `nebulet serve` in the WAGI convention (a plain WASI program).
//! POST a JSON document; the answer is `{"value": ..., "counts": {...}, "depth": N}`: the
//! document with every object's keys sorted, how many values of each kind it holds, and how
//! deep it nests. Invalid JSON gets 400 with the parser's message.
//!
//! ```text
//! nebulet serve json.wasm &
//! curl -d '{"b": [1, 2, {"c": null}], "a": "x"}' http://127.0.0.1:8080/
//! ```

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{Value, json};

fn main() {
    let mut body = Vec::new();
    let parsed = std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|error| error.to_string())
        .and_then(|_| serde_json::from_slice::<Value>(&body).map_err(|error| error.to_string()));
    let value = match parsed {
        Ok(value) => value,
        Err(message) => {
            print!("Status: 400 Bad Request\nContent-Type: application/json\n\n");
            println!("{}", json!({ "error": message }));
            return;
        }
    };
    let mut counts = BTreeMap::new();
    let depth = count(&value, &mut counts);
    // serde_json's maps are sorted by key (no `preserve_order`): writing the value sorts it.
    let answer = json!({ "value": value, "counts": counts, "depth": depth });
    print!("Content-Type: application/json\n\n");
    println!("{answer}");
}

/// Counts the values of each kind in `value`; returns its depth (a scalar is 0 deep).
fn count(value: &Value, counts: &mut BTreeMap<&'static str, u64>) -> u64 {
    let (kind, children): (&'static str, Vec<&Value>) = match value {
        Value::Null => ("null", Vec::new()),
        Value::Bool(_) => ("boolean", Vec::new()),
        Value::Number(_) => ("number", Vec::new()),
        Value::String(_) => ("string", Vec::new()),
        Value::Array(items) => ("array", items.iter().collect()),
        Value::Object(fields) => ("object", fields.values().collect()),
    };
    *counts.entry(kind).or_default() += 1;
    let deepest = children.into_iter().map(|child| count(child, counts)).max();
    deepest.map_or(0, |depth| depth + 1)
}

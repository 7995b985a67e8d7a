//! The HTTP upgrade request: head parsing, the upgrade rules, the apikey query parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moose_proto::apikey;
use moose_proto::http::{Parse, Upgrade, accept_key, parse_request, query_param};

fuzz_target!(|data: &[u8]| {
    let Ok(Parse::Complete { value, head_len }) = parse_request(data) else {
        return;
    };
    assert!(head_len <= data.len());
    // The head alone parses to the same head: nothing after it was looked at.
    match parse_request(&data[..head_len]) {
        Ok(Parse::Complete {
            head_len: again, ..
        }) => assert_eq!(again, head_len),
        other => panic!("the head alone parses differently: {other:?}"),
    }
    if let Ok(Some(key)) = query_param(value.query, "apikey") {
        let _ = apikey::validate(key.as_bytes());
    }
    if let Upgrade::WebSocket { key } = value.upgrade {
        assert_eq!(accept_key(key).len(), 28);
    }
});

//! VoRS control messages (the plaintext of every transport message): decoding, and that a
//! decoded message re-encodes to a form that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::control::Control;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Control::decode(data) else {
        return;
    };
    let mut encoded = Vec::new();
    msg.encode(&mut encoded)
        .expect("a decoded message is within the limits");
    assert_eq!(Control::decode(&encoded), Ok(msg));
    assert_eq!(msg.to_owned().as_control(), msg);
});

//! The hot-path view alone (what the forwarder runs on every packet).
//!
//! * `MessageView::parse` never panics, whatever the bytes.
//! * On success: `qname_wire` fits in 255 octets (and is non-empty, ending in the root
//!   label, when there is a question), a message has the same question as itself, `end`
//!   lies within the input, the OPT record lies within `end`, `max_udp_response` is at
//!   least 512.
//! * `set_id` on a copy changes only the first two octets, and the view of the copy
//!   reports the new ID.
#![no_main]

use dnsfwd::wire::{set_id, MessageView, MAX_NAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // set_id never panics, whatever the length.
    let mut copy = data.to_vec();
    let id = !u16::from_be_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]);
    let changed = set_id(&mut copy, id);
    assert_eq!(changed, data.len() >= 2);
    if changed {
        assert_eq!(copy[..2], id.to_be_bytes());
    } else {
        assert_eq!(copy, data);
    }
    assert_eq!(copy.get(2..), data.get(2..), "set_id touched more than the ID");

    let Ok(view) = MessageView::parse(data) else {
        return;
    };
    assert!(view.end <= data.len());
    if let Some(opt) = view.opt {
        assert!(opt.offset + opt.len <= view.end);
    }
    assert!(view.max_udp_response() >= 512);

    let mut name = [0u8; MAX_NAME_LEN];
    let len = view.qname_wire(&mut name, false);
    assert!(len <= MAX_NAME_LEN);
    let mut lower = [0u8; MAX_NAME_LEN];
    assert_eq!(view.qname_wire(&mut lower, true), len);
    assert!(name[..len].eq_ignore_ascii_case(&lower[..len]));

    if view.qtype_qclass().is_some() {
        assert!(len >= 1, "a question whose name copies to nothing");
        assert_eq!(name[len - 1], 0, "qname_wire does not end in the root label");
        assert!(view.same_question(&view), "a question differs from itself");
    } else {
        assert_eq!(len, 0);
        assert!(!view.same_question(&view));
    }

    // The view of the re-IDed copy: same everything but the ID.
    let other = match MessageView::parse(&copy) {
        Ok(other) => other,
        Err(e) => panic!("set_id made a parsable message unparsable: {e}"),
    };
    assert_eq!(other.header.id, id);
    assert_eq!(other.end, view.end);
    assert_eq!(other.opt, view.opt);
    assert_eq!(
        view.same_question(&other),
        view.qtype_qclass().is_some(),
        "the re-IDed copy asks a different question"
    );
});

//! Whole-message parser and writer.
//!
//! * `parse_message` never panics, whatever the bytes.
//! * A message that parses re-encodes (`to_vec`) to bytes that parse to an equal message.
//! * `write(limit)` stays within `limit` (at least the 12-octet header) and its output parses.
//! * The hot-path `MessageView::parse` accepts everything `parse_message` accepts, with
//!   the same header and the first question's type and class; on input that
//!   `parse_message` rejects it may succeed or fail, but must not panic.
#![no_main]

use dnsfwd::wire::{parse_message, MessageView, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let view = MessageView::parse(data);
    let Ok(msg) = parse_message(data) else {
        return;
    };

    // Round trip through the unlimited encoder.
    let wire = msg.to_vec();
    let back = match parse_message(&wire) {
        Ok(back) => back,
        Err(e) => panic!("to_vec output does not parse: {e}\n in:  {data:02x?}\n out: {wire:02x?}"),
    };
    assert_eq!(back, msg, "to_vec round trip changed the message");

    // Limited encoding: within the limit, and still a message.
    let n = data.len();
    for limit in [0, HEADER_LEN, 512, 1232, n, n / 2, n.saturating_sub(1), n + 1] {
        let out = msg.write(limit);
        assert!(
            out.len() <= limit.max(HEADER_LEN),
            "write({limit}) gave {} octets",
            out.len()
        );
        let part = match parse_message(&out) {
            Ok(part) => part,
            Err(e) => panic!("write({limit}) output does not parse: {e}\n out: {out:02x?}"),
        };
        // Nothing beyond what was dropped changes: same ID, opcode, flags but TC.
        assert_eq!(part.header.id, msg.header.id);
        assert_eq!(part.header.opcode, msg.header.opcode);
        assert!(part.questions.len() <= msg.questions.len());
        assert!(part.answers.len() <= msg.answers.len());
        assert!(part.authority.len() <= msg.authority.len());
        assert!(part.additional.len() <= msg.additional.len());
        if limit >= wire.len() {
            assert_eq!(part, msg, "write({limit}) with room for everything changed the message");
        }
    }

    // The hot-path view agrees.
    let view = match view {
        Ok(view) => view,
        Err(e) => panic!("parse_message accepts but MessageView::parse fails: {e}"),
    };
    assert_eq!(view.header, msg.header);
    assert_eq!(view.end, data.len());
    assert_eq!(
        view.qtype_qclass(),
        msg.questions.first().map(|q| (q.qtype, q.qclass))
    );
    assert_eq!(view.opt.is_some(), msg.edns().is_some());
});

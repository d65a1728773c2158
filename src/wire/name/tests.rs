//! Tests of name parsing: one per error, and the offset walk held to the slice walk it
//! replaced (a model kept here) on chosen, cut and random input.
use super::*;
use crate::wire::ParseError;

fn parse_at(msg: &[u8], at: usize) -> Result<Name, ParseError> {
    parse_name(msg, &msg[at..])
        .map(|(_, n)| n)
        .map_err(|e| crate::wire::to_parse_error(msg, e))
}

#[rustfmt::skip]
const TWO_NAMES: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,        // header (zeroed)
    3, b'w', b'w', b'w',                        // 12: www
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // 16: example
    3, b'c', b'o', b'm', 0,                     // 24: com .
    3, b'f', b't', b'p', 0xC0, 16,              // 29: ftp -> example.com
];

#[test]
fn follows_backward_pointer() {
    let n = parse_at(TWO_NAMES, 29).unwrap();
    assert_eq!(n.to_string(), "ftp.example.com.");
    assert_eq!(n.wire_len(), 17);
    let (rest, _) = parse_name(TWO_NAMES, &TWO_NAMES[29..]).unwrap();
    assert!(rest.is_empty(), "rest starts right after the pointer");
}

#[test]
fn rejects_pointer_to_itself() {
    let msg = [&[0u8; 12][..], &[0xC0, 12]].concat();
    let e = parse_at(&msg, 12).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadPointer { target: 12 });
    assert_eq!(e.offset, 12);
}

#[test]
fn rejects_forward_pointer() {
    let msg = [&[0u8; 12][..], &[0xC0, 14, 1, b'a', 0]].concat();
    let e = parse_at(&msg, 12).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadPointer { target: 14 });
}

#[test]
fn rejects_pointer_cycle() {
    // 12: "a" -> 16; 16: "b" -> 12. The second jump is not below the first target.
    #[rustfmt::skip]
    let msg = [&[0u8; 12][..], &[
        1, b'a', 0xC0, 16,      // 12
        1, b'b', 0xC0, 12,      // 16
    ]].concat();
    let e = parse_at(&msg, 16).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadPointer { target: 16 });
    assert_eq!(e.offset, 14);
}

#[test]
fn rejects_pointer_into_own_run() {
    // "www" then a pointer back into the middle of the same name.
    let msg = [&[0u8; 12][..], &[3, b'w', b'w', b'w', 0xC0, 13]].concat();
    let e = parse_at(&msg, 12).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadPointer { target: 13 });
}

#[test]
fn rejects_reserved_label_types() {
    for t in [0x40u8, 0x80] {
        let msg = [&[0u8; 12][..], &[t | 1, b'a', 0]].concat();
        assert_eq!(
            parse_at(&msg, 12).unwrap_err().kind,
            ErrorKind::BadLabelType(t | 1)
        );
    }
}

#[test]
fn rejects_name_of_256_octets() {
    // 4 labels of 63 = 256 octets, then a 1-octet label: 256 + ... too long.
    let mut wire = Vec::new();
    for _ in 0..4 {
        wire.push(63);
        wire.extend_from_slice(&[b'a'; 63]);
    }
    wire.push(0); // 4*64 + 1 = 257
    let msg = [&[0u8; 12][..], &wire].concat();
    assert_eq!(parse_at(&msg, 12).unwrap_err().kind, ErrorKind::NameTooLong);
    // 3*64 + 62 + 1 = 255: the longest legal name.
    let mut wire = Vec::new();
    for _ in 0..3 {
        wire.push(63);
        wire.extend_from_slice(&[b'a'; 63]);
    }
    wire.push(61);
    wire.extend_from_slice(&[b'b'; 61]);
    wire.push(0);
    assert_eq!(wire.len(), 255);
    let msg = [&[0u8; 12][..], &wire].concat();
    assert_eq!(parse_at(&msg, 12).unwrap().wire_len(), 255);
}

#[test]
fn running_off_the_end_is_truncated() {
    // The name at 12 ends at 29; every shorter buffer cuts it.
    for n in 12..29 {
        let cut = &TWO_NAMES[..n];
        let e = parse_at(cut, 12).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Truncated, "cut at {n}");
    }
}

#[test]
fn equality_ignores_ascii_case_but_keeps_spelling() {
    let a = Name::from_ascii("WwW.Example.COM").unwrap();
    let b = Name::from_ascii("www.example.com.").unwrap();
    assert_eq!(a, b);
    assert!(!a.eq_exact(&b));
    assert_eq!(a.to_string(), "WwW.Example.COM.");
    use std::collections::hash_map::DefaultHasher;
    let h = |n: &Name| {
        let mut s = DefaultHasher::new();
        n.hash(&mut s);
        s.finish()
    };
    assert_eq!(h(&a), h(&b));
    // Only ASCII letters fold: 0xC4 and 0xE4 are different octets.
    let c = Name::from_labels([&[0xC4u8][..]]).unwrap();
    let d = Name::from_labels([&[0xE4u8][..]]).unwrap();
    assert_ne!(c, d);
}

#[test]
fn presentation_escapes_round_trip() {
    let n = Name::from_labels([&b"a.b"[..], &[0x01, b' ', b'\\'][..], b"x"]).unwrap();
    assert_eq!(n.to_string(), "a\\.b.\\001\\032\\\\.x.");
    assert!(Name::from_ascii(&n.to_string()).unwrap().eq_exact(&n));
    assert_eq!(Name::root().to_string(), ".");
    assert!(Name::from_ascii(".").unwrap().is_root());
    assert_eq!(Name::from_ascii("a..b"), Err(NameError::EmptyLabel));
    assert_eq!(
        Name::from_ascii(&"x".repeat(64)),
        Err(NameError::LabelTooLong)
    );
    assert_eq!(Name::from_ascii("\\25"), Err(NameError::BadEscape));
    assert_eq!(Name::from_ascii("\\256"), Err(NameError::BadEscape));
}

/// The walk as it was written before it moved to offsets (slices, one `split` per
/// field): the model [`walk`] must agree with, result for result and error for error.
fn model(
    msg: &[u8],
    at: usize,
    limit: usize,
    follow: bool,
) -> Result<(Walked, Vec<Vec<u8>>), ParseError> {
    let err = |i: &[u8], kind| Err(WireError::new(i, kind).at(msg));
    let mut labels = Vec::new();
    let Some(mut cur) = msg.get(at..limit) else {
        return Err(ParseError {
            offset: msg.len(),
            kind: ErrorKind::Truncated,
        });
    };
    let mut end: Option<&[u8]> = None;
    let mut run_start = at;
    let mut wire_len = 1;
    loop {
        let Some((&len, after)) = cur.split_first() else {
            return err(cur, ErrorKind::Truncated);
        };
        match len & 0xC0 {
            0x00 if len == 0 => {
                let end = offset_in(msg, end.unwrap_or(after));
                return Ok((Walked { end, wire_len }, labels));
            }
            0x00 => {
                let Some((label, after)) = after.split_at_checked(usize::from(len)) else {
                    return err(after, ErrorKind::Truncated);
                };
                wire_len += 1 + usize::from(len);
                if wire_len > MAX_NAME_LEN {
                    return err(cur, ErrorKind::NameTooLong);
                }
                labels.push(label.to_vec());
                cur = after;
            }
            0xC0 => {
                let Some((&low, after)) = after.split_first() else {
                    return err(after, ErrorKind::Truncated);
                };
                let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                if target >= run_start || target < HEADER_LEN {
                    let target = target as u16;
                    return err(cur, ErrorKind::BadPointer { target });
                }
                let rest = *end.get_or_insert(after);
                if !follow {
                    let end = offset_in(msg, rest);
                    return Ok((Walked { end, wire_len }, labels));
                }
                run_start = target;
                cur = &msg[target..];
            }
            _ => return err(cur, ErrorKind::BadLabelType(len)),
        }
    }
}

/// `walk` against the model, from every offset of `msg`, both ways, with the labels
/// in place confined to several limits (as in RDATA) or to the message; and through
/// `walk_name`, which takes the limit from its input slice.
fn agrees_everywhere(msg: &[u8]) {
    for at in 0..=msg.len() {
        let limits = [at, at + 1, at + 2, at + 5, msg.len()];
        for limit in limits.into_iter().filter(|&l| l <= msg.len()) {
            for follow in [false, true] {
                let mut labels = Vec::new();
                let ours = walk(msg, at, limit, follow, |l| labels.push(l.to_vec()));
                let ours = ours.map(|w| (w, labels));
                let theirs = model(msg, at, limit, follow);
                assert_eq!(ours, theirs, "{msg:?} at {at}..{limit} follow {follow}");
            }
            let i = &msg[at..limit];
            let ours = walk_name(msg, i, |_| ())
                .map(|(rest, len)| (offset_in(msg, rest), rest.len(), len));
            let ours = ours.map_err(|e| crate::wire::to_parse_error(msg, e));
            let theirs =
                model(msg, at, limit, true).map(|(w, _)| (w.end, limit - w.end, w.wire_len));
            assert_eq!(ours, theirs, "walk_name {msg:?} at {at}..{limit}");
        }
    }
    // Past the end: truncated, at the end.
    let e = walk(msg, msg.len() + 1, msg.len() + 1, true, |_| ()).unwrap_err();
    assert_eq!((e.offset, e.kind), (msg.len(), ErrorKind::Truncated));
}

#[test]
fn agrees_with_the_model_on_chosen_names() {
    agrees_everywhere(TWO_NAMES);
    for n in 0..TWO_NAMES.len() {
        agrees_everywhere(&TWO_NAMES[..n]);
    }
    let hdr = [0u8; 12];
    #[rustfmt::skip]
    let cases: &[&[u8]] = &[
        &[0xC0, 12],                        // pointer to itself
        &[0xC0, 14, 1, b'a', 0],            // forward pointer
        &[1, b'a', 0xC0, 16, 1, b'b', 0xC0, 12], // cycle
        &[0xC0, 3],                         // into the header
        &[0xC0],                            // cut pointer
        &[0x41, b'a', 0],                   // label type 01
        &[0x80, 0],                         // label type 10
        &[0xBF, 0],
        &[63],                              // label cut
        &[3, b'a', b'b'],
        &[0],
        &[],
    ];
    for case in cases {
        agrees_everywhere(&[&hdr[..], case].concat());
    }
}

#[test]
fn long_names_through_pointers() {
    // 12: 200 octets of labels (4 × 49 + 4) and the root; then 60 octets of labels
    // pointing at it: 261 octets followed, 61 in place.
    let mut msg = vec![0u8; 12];
    for _ in 0..4 {
        msg.push(49);
        msg.extend_from_slice(&[b'x'; 49]);
    }
    msg.extend_from_slice(&[3, b'a', b'b', b'c', 0]);
    let second = msg.len();
    msg.push(59);
    msg.extend_from_slice(&[b'y'; 59]);
    msg.extend_from_slice(&[0xC0, 12]);
    let skipped = walk(&msg, second, msg.len(), false, |_| ()).unwrap();
    assert_eq!(
        skipped,
        Walked {
            end: msg.len(),
            wire_len: 61
        }
    );
    let e = walk(&msg, second, msg.len(), true, |_| ()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NameTooLong);
    assert_eq!(e.offset, 12 + 3 * 50, "the label that crosses 255");
    agrees_everywhere(&msg);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn agrees_with_the_model_on_random_octets(
        body in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::Just(0u8), proptest::prelude::Just(1),
                proptest::prelude::Just(2), proptest::prelude::Just(63),
                proptest::prelude::Just(0x40), proptest::prelude::Just(0x80),
                proptest::prelude::Just(0xC0), proptest::prelude::Just(12),
                proptest::prelude::Just(b'a'), proptest::prelude::any::<u8>(),
            ],
            0..80,
        ),
    ) {
        agrees_everywhere(&[&[0u8; 12][..], &body].concat());
    }
}

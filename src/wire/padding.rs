//! EDNS(0) Padding (RFC 7830) with the block-length policy of RFC 8467 §4.1: over an
//! encrypted transport, queries are padded to a multiple of 128 octets and responses
//! (to padded queries only) to a multiple of 468, so that the length of a message says
//! little about the name in it.
//!
//! Padding is added to an OPT record that is the message's last record (ours always is:
//! [`super::push_opt`] appends it last); a message without one, or whose OPT is not last
//! (a TSIG after it), or that already carries padding, is left as it is.
use super::MessageView;

/// OPTION-CODE of Padding (RFC 7830 §4).
pub const PADDING: u16 = 12;
/// RFC 8467 §4.1: block length for queries.
pub const QUERY_BLOCK: usize = 128;
/// RFC 8467 §4.1: block length for responses.
pub const RESPONSE_BLOCK: usize = 468;

/// The OPT record's RDATA as (offset of RDLENGTH, options), when the OPT is the last
/// record and has a root owner.
fn last_opt(msg: &[u8]) -> Option<(usize, &[u8])> {
    let view = MessageView::parse(msg).ok()?;
    let opt = view.opt?;
    if opt.offset + opt.len != msg.len() || view.end != msg.len() {
        return None;
    }
    // Owner (root, one octet), TYPE, CLASS, TTL: RDLENGTH follows.
    if msg.get(opt.offset) != Some(&0) {
        return None;
    }
    let rdlen_at = opt.offset + 9;
    let rdata = msg.get(rdlen_at + 2..)?;
    Some((rdlen_at, rdata))
}

/// Whether the options in `rdata` include Padding.
fn has_padding_option(mut rdata: &[u8]) -> bool {
    while let Some(&[c0, c1, l0, l1]) = rdata.get(..4) {
        if u16::from_be_bytes([c0, c1]) == PADDING {
            return true;
        }
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        rdata = rdata.get(4 + len..).unwrap_or_default();
    }
    false
}

/// Whether `msg` has an OPT record with a Padding option (a client that pads).
pub fn is_padded(msg: &[u8]) -> bool {
    MessageView::parse(msg)
        .ok()
        .and_then(|v| v.opt)
        .is_some_and(|opt| {
            let owner = usize::from(msg.get(opt.offset) != Some(&0)) + 1;
            msg.get(opt.offset + owner + 10..opt.offset + opt.len)
                .is_some_and(has_padding_option)
        })
}

/// Pads `msg` to a multiple of `block` octets (see the module docs). Returns whether a
/// Padding option was added.
pub fn pad(msg: &mut Vec<u8>, block: usize) -> bool {
    pad_from(msg, 0, block)
}

/// [`pad`] for the message that is `buf[start..]` (a message written after a length
/// prefix, or after others in a write buffer): it grows in place, no copy is made.
/// Returns whether a Padding option was added; `buf` is unchanged if not.
pub fn pad_from(buf: &mut Vec<u8>, start: usize, block: usize) -> bool {
    let Some((rdlen_at, rdata)) = buf.get(start..).and_then(last_opt) else {
        return false;
    };
    if block == 0 || has_padding_option(rdata) {
        return false;
    }
    let rdlen = rdata.len();
    let with_header = buf.len() - start + 4;
    let fill = (block - with_header % block) % block;
    let (Ok(new_rdlen), Ok(fill16), true) = (
        u16::try_from(rdlen + 4 + fill),
        u16::try_from(fill),
        with_header + fill <= usize::from(u16::MAX),
    ) else {
        return false;
    };
    let at = start + rdlen_at;
    let Some(field) = buf.get_mut(at..at + 2) else {
        return false;
    };
    field.copy_from_slice(&new_rdlen.to_be_bytes());
    buf.extend_from_slice(&PADDING.to_be_bytes());
    buf.extend_from_slice(&fill16.to_be_bytes());
    buf.resize(buf.len() + fill, 0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_message;

    #[rustfmt::skip]
    const QUERY: [u8; 40] = [
        // header: ID 0x1234, RD, QDCOUNT 1, ARCOUNT 1
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1,
        // question: example.org. A IN
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'o', b'r', b'g', 0, 0, 1, 0, 1,
        // OPT: root, type 41, size 1232, TTL 0, RDLENGTH 0
        0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn pads_queries_to_128_and_responses_to_468() {
        for block in [QUERY_BLOCK, RESPONSE_BLOCK] {
            let mut m = QUERY.to_vec();
            assert!(!is_padded(&m));
            assert!(pad(&mut m, block));
            assert_eq!(m.len(), block, "{block}");
            assert!(is_padded(&m));
            let parsed = parse_message(&m).unwrap();
            assert_eq!(parsed.additional.len(), 1, "still one OPT record");
            assert!(!pad(&mut m, block), "padded once only");
        }
    }

    #[test]
    fn pads_a_message_after_others_in_place() {
        let mut buf = vec![0xAA, 0xBB, 0xCC];
        buf.extend_from_slice(&QUERY);
        assert!(pad_from(&mut buf, 3, RESPONSE_BLOCK));
        assert_eq!(buf[..3], [0xAA, 0xBB, 0xCC], "what was before is untouched");
        assert_eq!(buf.len() - 3, RESPONSE_BLOCK);
        let mut alone = QUERY.to_vec();
        assert!(pad(&mut alone, RESPONSE_BLOCK));
        assert_eq!(buf[3..], alone[..], "the same octets as pad()");
        let mut no_opt = vec![1, 2];
        no_opt.extend_from_slice(&QUERY[..29]);
        assert!(!pad_from(&mut no_opt, 2, RESPONSE_BLOCK));
        assert_eq!(no_opt.len(), 31);
        assert!(
            !pad_from(&mut no_opt, 40, RESPONSE_BLOCK),
            "start past the end"
        );
    }

    #[test]
    fn leaves_messages_without_a_last_opt_alone() {
        let mut no_opt = QUERY[..29].to_vec();
        no_opt[11] = 0; // ARCOUNT 0
        assert!(!pad(&mut no_opt, QUERY_BLOCK));
        assert_eq!(no_opt.len(), 29);
        let mut junk = QUERY.to_vec();
        junk.push(0); // trailing octet: the OPT is not last
        assert!(!pad(&mut junk, QUERY_BLOCK));
        assert_eq!(junk.len(), 41);
        for n in 0..QUERY.len() {
            let mut cut = QUERY[..n].to_vec();
            assert!(!pad(&mut cut, QUERY_BLOCK), "prefix of {n}");
        }
    }
}

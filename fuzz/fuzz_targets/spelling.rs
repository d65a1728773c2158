//! The letter case of question names (0x20, `forward::key::spelling`) against an
//! octet-at-a-time reference written here: the word-at-a-time code must agree with it
//! on every name length and octet value.
//!
//! Input: a control octet, 32 octets of random bits, then the name (any octets).
//!
//! * `Spelling::fold` (into a buffer of any length) copies the name with ASCII letters
//!   lower-cased, as far as the buffer holds, and notes exactly the upper-case octets
//!   it copied; `of_name` is `fold` into 255 octets.
//! * `random_case` marks exactly the letters (of the first 255 octets) whose random bit
//!   is set, and counts the letters; `copy_into` and `write` flip exactly the marked
//!   octets' 0x20 bit (`copy_into` as far as its buffer holds); `matches` is true
//!   exactly when the wire octets are the name with the marked octets flipped; a
//!   spelling read back from its own output is itself.
//! * `letters` counts the letters of a wire-form name's labels.
//! * On a wire-form name made from the input: `write_query` writes a query that the
//!   view reads back (`Key::with_spelling`) as the same key and spelling, and that
//!   `same_question_exact` accepts; on an answer made from it (QDCOUNT, name, type,
//!   class, any of them changed), `same_question_exact` and `same_question_folded` say
//!   what their docs say.
#![no_main]

use dnsfwd::forward::key::{
    letters, same_question_exact, same_question_folded, write_query, Key, Spelling,
};
use dnsfwd::wire::{MessageView, HEADER_LEN, MAX_NAME_LEN};
use libfuzzer_sys::fuzz_target;

/// Whether bit `i` of `bits` is set (bit `i % 8` of octet `i / 8`).
fn bit(bits: &[u8; 32], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)
}

/// The octets of a name that a spelling marks, read off its output for a name of 255
/// `a`s (0x61; 0x41 where marked).
fn marks(s: &Spelling) -> Vec<bool> {
    let mut out = [0u8; MAX_NAME_LEN];
    let n = s.copy_into(&[b'a'; MAX_NAME_LEN], &mut out);
    assert_eq!(n, MAX_NAME_LEN);
    out.iter().map(|&b| b == b'A').collect()
}

/// `name` with the octets marked in `marked` flipped by 0x20.
fn flipped(name: &[u8], marked: &[bool]) -> Vec<u8> {
    name.iter()
        .enumerate()
        .map(|(i, &b)| {
            b ^ if marked.get(i) == Some(&true) {
                0x20
            } else {
                0
            }
        })
        .collect()
}

/// Letters in the labels of a wire-form name, as `letters` documents it.
fn letters_ref(name: &[u8]) -> u32 {
    let (mut count, mut at) = (0, 0);
    while let Some(&n) = name.get(at) {
        if n == 0 {
            break;
        }
        let end = (at + 1 + usize::from(n)).min(name.len());
        count += name[at + 1..end]
            .iter()
            .filter(|b| b.is_ascii_alphabetic())
            .count() as u32;
        at = end;
    }
    count
}

/// A wire-form name from arbitrary octets: labels split at '.', each cut to 63 octets,
/// the whole cut to 255 with the root label.
fn wire_name(raw: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in raw.split(|&b| b == b'.').filter(|l| !l.is_empty()) {
        let label = &label[..label.len().min(63)];
        if wire.len() + 1 + label.len() + 1 > MAX_NAME_LEN {
            break;
        }
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    wire
}

fn spelling_ops(ctrl: u8, random: &[u8; 32], name: &[u8]) {
    // fold, into a buffer cut anywhere.
    let cut = match ctrl & 3 {
        0 => name.len(),
        1 => name.len() / 2,
        2 => name.len().saturating_sub(1),
        _ => MAX_NAME_LEN,
    };
    let mut out = vec![0xEEu8; cut];
    let s = Spelling::fold(name, &mut out);
    let n = name.len().min(cut);
    assert_eq!(out[..n], name[..n].to_ascii_lowercase()[..], "folded");
    assert!(
        out[n..].iter().all(|&b| b == 0xEE),
        "fold wrote past the name"
    );
    let m = marks(&s);
    for (i, &marked) in m.iter().enumerate() {
        let want = i < n && name[i].is_ascii_uppercase();
        assert_eq!(marked, want, "fold's bit {i} (copied {n})");
    }
    // 256 bits: an octet past the 255 that `marks` reads may be marked too.
    let any = name[..n.min(256)].iter().any(u8::is_ascii_uppercase);
    assert_eq!(s.is_lower(), !any);
    let short = &name[..name.len().min(MAX_NAME_LEN)];
    assert_eq!(
        Spelling::of_name(short),
        Spelling::fold(short, &mut [0; MAX_NAME_LEN])
    );

    // random_case on the folded name, and everything that spells it.
    let folded = short.to_ascii_lowercase();
    let (r, count) = Spelling::random_case(&folded, random);
    let m = marks(&r);
    for (i, &marked) in m.iter().enumerate() {
        let want = i < folded.len() && folded[i].is_ascii_alphabetic() && bit(random, i);
        assert_eq!(marked, want, "random_case's bit {i}");
    }
    let all = folded.iter().filter(|b| b.is_ascii_alphabetic()).count() as u32;
    assert_eq!(count, all, "letters counted");
    let spelled = flipped(&folded, &m);
    assert!(spelled.eq_ignore_ascii_case(&folded));
    let mut buf =
        vec![0xEEu8; [folded.len(), folded.len() / 3, MAX_NAME_LEN][usize::from(ctrl >> 2 & 1)]];
    let k = r.copy_into(&folded, &mut buf);
    assert_eq!(k, folded.len().min(buf.len()));
    assert_eq!(buf[..k], spelled[..k], "copy_into");
    assert!(
        buf[k..].iter().all(|&b| b == 0xEE),
        "copy_into wrote past the name"
    );
    let mut written = b"prefix".to_vec();
    r.write(&folded, &mut written);
    assert_eq!(written[6..], spelled[..], "write");
    assert!(r.matches(&folded, &spelled));
    assert_eq!(
        Spelling::of_name(&spelled),
        r,
        "read back from its own spelling"
    );

    // matches against the input as it came, and changed anywhere.
    let theirs = Spelling::of_name(short);
    assert!(
        theirs.matches(&folded, short),
        "a name matches its own spelling"
    );
    let mut other = spelled.clone();
    if !other.is_empty() {
        let at = usize::from(random[0]) % other.len();
        other[at] ^= [0x20, 0x01, 0x80, 0x00][usize::from(ctrl >> 3 & 3)];
    }
    let cut = match ctrl >> 5 & 3 {
        0 => other.len(),
        1 => other.len().saturating_sub(1),
        _ => other.len(),
    };
    let other = &other[..cut];
    assert_eq!(
        r.matches(&folded, other),
        other == &spelled[..],
        "matches {other:02x?}"
    );
    // A spelling of another name (bits past this one) does not change the verdict.
    let (wide, _) = Spelling::random_case(&[b'a'; MAX_NAME_LEN], random);
    let wm = marks(&wide);
    let spelled_wide = flipped(&folded, &wm);
    assert!(
        wide.matches(&folded, &spelled_wide),
        "bits past the name are ignored"
    );
    let mut w = Vec::new();
    wide.write(&folded, &mut w);
    assert_eq!(w, spelled_wide);

    assert_eq!(letters(name), letters_ref(name), "letters");
}

fn key_ops(ctrl: u8, random: &[u8; 32], raw: &[u8]) {
    let name = wire_name(raw);
    let folded = name.to_ascii_lowercase();
    let (qtype, qclass) = (u16::from(random[1]) << 8 | 1, 1u16);
    let flags = ctrl & 7;
    let key_bytes = [
        &folded[..],
        &qtype.to_be_bytes(),
        &qclass.to_be_bytes(),
        &[flags],
    ]
    .concat();
    let Some(key) = Key::from_bytes(&key_bytes) else {
        panic!("not a key: {key_bytes:02x?}");
    };
    assert_eq!(key.name(), &folded[..]);
    assert_eq!(letters(&name), letters_ref(&name));
    let (s, _) = Spelling::random_case(&folded, random);
    let spelled = flipped(&folded, &marks(&s));

    // Our query, read back as a client's.
    let mut query = Vec::new();
    write_query(&mut query, 0xABCD, &key, &s, 1232);
    assert_eq!(
        query.get(HEADER_LEN..HEADER_LEN + spelled.len()),
        Some(&spelled[..])
    );
    let view = match MessageView::parse(&query) {
        Ok(v) => v,
        Err(e) => panic!("our query does not parse ({e:?}): {query:02x?}"),
    };
    assert_eq!(view.end, query.len());
    let Some((k2, s2)) = Key::with_spelling(&view) else {
        panic!("our query has no key");
    };
    assert_eq!(k2, key, "the key read back");
    assert_eq!(s2, s, "the spelling read back");
    assert!(same_question_exact(&query, &s, &key));
    assert!(same_question_folded(&query, &key));

    // An answer to it, changed here or there.
    let mut answer = query.clone();
    answer[2] |= 0x80;
    let at = HEADER_LEN + spelled.len();
    match ctrl >> 3 & 7 {
        0 => {}
        1 => answer[5] = random[2], // QDCOUNT
        2 => {
            let i = HEADER_LEN + usize::from(random[3]) % spelled.len();
            answer[i] ^= random[4]; // the name
        }
        3 => answer[at + usize::from(random[5] & 3)] ^= random[6] | 1, // type, class
        4 => answer.truncate(at + usize::from(random[7] % 4)),
        5 => {
            // Another case of the letters.
            let (o, _) = Spelling::random_case(&folded, &[!random[8]; 32]);
            let again = flipped(&folded, &marks(&o));
            answer[HEADER_LEN..at].copy_from_slice(&again);
        }
        _ => answer[4] = random[9], // QDCOUNT's high octet
    }
    let one_question = answer.get(4..6) == Some(&[0, 1][..]);
    let type_class = answer.get(at..at + 4) == Some(&key_bytes[folded.len()..folded.len() + 4]);
    let wire = answer.get(HEADER_LEN..at);
    let exact = one_question && type_class && wire == Some(&spelled[..]);
    let folded_same =
        one_question && type_class && wire.is_some_and(|w| w.eq_ignore_ascii_case(&folded));
    assert_eq!(
        same_question_exact(&answer, &s, &key),
        exact,
        "exact: {answer:02x?}"
    );
    assert_eq!(
        same_question_folded(&answer, &key),
        folded_same,
        "folded: {answer:02x?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctrl, rest)) = data.split_first() else {
        return;
    };
    let Some((random, name)) = rest.split_first_chunk::<32>() else {
        return;
    };
    spelling_ops(ctrl, random, name);
    key_ops(ctrl, random, name);
});

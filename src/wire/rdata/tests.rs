use proptest::prelude::*;

use super::*;

/// `example.` in wire form.
const EXAMPLE: &[u8] = b"\x07example\x00";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// One well-formed RDATA per type (and shape); each must parse and write back as is.
fn valid() -> Vec<(RType, Vec<u8>)> {
    let digest32 = [0xAB; 32];
    vec![
        // flags 257, protocol 3, algorithm 13, key
        (RType::DNSKEY, cat(&[&[1, 1, 3, 13], &[9; 64]])),
        (RType::CDNSKEY, vec![0, 0, 3, 0, 0]),
        // type covered A, alg 13, labels 2, TTL 3600, expiration, inception, tag, signer, sig
        (
            RType::RRSIG,
            cat(&[
                &[0, 1, 13, 2, 0, 0, 0x0e, 0x10],
                &[0x69, 0x7e, 0x9a, 0x00, 0x69, 0x56, 0x00, 0x00, 0x30, 0x39],
                EXAMPLE,
                &[7; 64],
            ]),
        ),
        // key tag, alg 13, digest type 2, 32 octets
        (RType::DS, cat(&[&[0x30, 0x39, 13, 2], &digest32])),
        // CDS delete (RFC 8078 §4): 0 0 0 00
        (RType::CDS, vec![0, 0, 0, 0, 0]),
        // digest type 200: any length
        (RType::DS, vec![0, 1, 8, 200, 1, 2, 3]),
        // next name, window 0 with A (1) and NS (2), window 1 with CAA (257)
        (RType::NSEC, cat(&[EXAMPLE, &[0, 1, 0x60], &[1, 1, 0x40]])),
        (RType::NSEC, EXAMPLE.to_vec()),
        // alg 1, flags 1, 10 iterations, 2-octet salt, 20-octet hash, A RRSIG
        (
            RType::NSEC3,
            cat(&[
                &[1, 1, 0, 10, 2, 0xAA, 0xBB, 20],
                &[5; 20],
                &[0, 6, 0x40, 0, 0, 0, 0, 0x02],
            ]),
        ),
        (RType::NSEC3, cat(&[&[1, 0, 0, 0, 0, 1, 0xFF]])),
        (RType::NSEC3PARAM, vec![1, 0, 0, 0, 0]),
        // priority 1, target ".", alpn h2,h3; port 443; ipv4hint; ech; ipv6hint; key 65000
        (
            RType::HTTPS,
            cat(&[
                &[0, 1, 0],
                &[0, 0, 0, 4, 0, 1, 0, 3],
                &[0, 1, 0, 6, 2, b'h', b'2', 2, b'h', b'3'],
                &[0, 2, 0, 0],
                &[0, 3, 0, 2, 1, 0xbb],
                &[0, 4, 0, 4, 192, 0, 2, 1],
                &[0, 5, 0, 3, 1, 2, 3],
                &[0, 6, 0, 16],
                &[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                &[0, 7, 0, 3, b'/', b'q', b'{'],
                &[0xfd, 0xe8, 0, 0],
            ]),
        ),
        (RType::SVCB, cat(&[&[0, 0], EXAMPLE])),
        (RType::SSHFP, cat(&[&[4, 2], &digest32])),
        (RType::TLSA, cat(&[&[3, 1, 1], &digest32])),
        (RType::SMIMEA, vec![3, 0, 0, 0x30]),
        (RType::ZONEMD, cat(&[&[0, 0, 0, 1, 1, 1], &[0x11; 48]])),
        (RType::CSYNC, vec![0, 0, 0, 1, 0, 3, 0, 1, 0x60]),
        (RType::CSYNC, vec![0, 0, 0, 0, 0, 0]),
        // version 0, size 1 m, hp 10 km, vp 10 m, 52°22'23"N 4°53'32"E, -2 m
        (
            RType::LOC,
            vec![
                0, 0x12, 0x16, 0x13, 0x8b, 0x0d, 0x2c, 0x8c, 0x80, 0x10, 0xe3, 0x18, 0, 0x98, 0x93,
                0x58,
            ],
        ),
        (RType::URI, cat(&[&[0, 10, 0, 1], b"ftp://a/"])),
        (RType::CERT, vec![0, 3, 0, 0, 0, 1, 2, 3]),
        (RType::OPENPGPKEY, vec![1, 2, 3, 4, 5]),
        (RType::DHCID, vec![0, 1, 1, 9]),
        (RType::HINFO, cat(&[b"\x02PC", b"\x05Linux"])),
        (RType::X25, b"\x0c311061700956".to_vec()),
        (RType::ISDN, b"\x03150\x03004".to_vec()),
        (RType::ISDN, b"\x03150".to_vec()),
        (RType::SPF, b"\x0bv=spf1 -all".to_vec()),
        (RType::KX, cat(&[&[0, 10], EXAMPLE])),
        (RType::LP, cat(&[&[0, 10], EXAMPLE])),
        (
            RType::NID,
            vec![0, 10, 0, 0x14, 0x4f, 0xff, 0xff, 0x20, 0xee, 0x64],
        ),
        (
            RType::L64,
            vec![0, 10, 0x20, 1, 0x0d, 0xb8, 0x11, 0x40, 0x10, 0],
        ),
        (RType::L32, vec![0, 10, 10, 1, 2, 0]),
        (RType::EUI48, vec![0, 0, 0x5e, 0, 0x53, 0x2a]),
        (RType::EUI64, vec![0, 0, 0x5e, 0xef, 0x10, 0, 0, 0x2a]),
    ]
}

#[test]
fn writes_back_every_typed_rdata_it_reads() {
    for (rtype, rd) in valid() {
        let t = parse_typed(rtype, &rd)
            .unwrap_or_else(|| panic!("{} not typed", rtype.name()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.to_vec(), rd, "{} round trip", rtype.name());
    }
}

#[test]
fn every_prefix_of_a_typed_rdata_fails_cleanly_or_parses() {
    for (rtype, rd) in valid() {
        for n in 0..rd.len() {
            if let Some(Ok(t)) = parse_typed(rtype, &rd[..n]) {
                assert_eq!(t.to_vec(), &rd[..n], "{} prefix {n}", rtype.name());
            }
        }
    }
}

#[test]
fn leaves_other_types_alone() {
    for t in [RType::A, RType::TXT, RType::NULL, RType(65280), RType::OPT] {
        assert!(parse_typed(t, &[1, 2, 3, 4]).is_none(), "{}", t.name());
    }
}

/// Malformed RDATA of known types: each names the type and what is wrong.
#[test]
fn names_the_type_and_the_fault_of_malformed_rdata() {
    let mut svcb_dup = cat(&[&[0, 1, 0], &[0, 3, 0, 2, 1, 0xbb], &[0, 3, 0, 2, 1, 0xbb]]);
    let cases: Vec<(RType, Vec<u8>, &str)> = vec![
        (RType::DS, vec![0, 1, 8, 2, 1, 2, 3], "digest length"),
        (RType::DS, vec![0, 1, 8], "length"),
        (RType::DNSKEY, vec![1, 1, 3], "length"),
        (RType::RRSIG, cat(&[&[0; 18], EXAMPLE]), "empty signature"),
        (
            RType::RRSIG,
            cat(&[&[0; 18], &[0xc0, 0x0c], &[1]]),
            "compressed name",
        ),
        (
            RType::NSEC,
            cat(&[EXAMPLE, &[1, 1, 0x40], &[0, 1, 0x40]]),
            "out of order",
        ),
        (RType::NSEC, cat(&[EXAMPLE, &[0, 0]]), "empty type bitmap"),
        (RType::NSEC, cat(&[EXAMPLE, &[0, 2, 0x40, 0]]), "zero octet"),
        (RType::NSEC, cat(&[EXAMPLE, &[0, 33], &[1; 33]]), "over 32"),
        (RType::NSEC, cat(&[EXAMPLE, &[0, 3, 0x40]]), "length"),
        (RType::NSEC3, vec![1, 0, 0, 0, 0, 0], "empty next hashed"),
        (
            RType::HTTPS,
            std::mem::take(&mut svcb_dup),
            "duplicate SvcParamKey",
        ),
        (
            RType::HTTPS,
            cat(&[
                &[0, 1, 0],
                &[0, 3, 0, 2, 1, 0xbb],
                &[0, 1, 0, 3, 2, b'h', b'2'],
            ]),
            "out of order",
        ),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 1, 0, 0]]),
            "empty alpn",
        ),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 1, 0, 3, 0, 1, b'x']]),
            "empty alpn-id",
        ),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 1, 0, 2, 5, b'x']]),
            "alpn-id runs past",
        ),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 2, 0, 1, 0]]),
            "not empty",
        ),
        (RType::HTTPS, cat(&[&[0, 1, 0], &[0, 3, 0, 1, 0]]), "port"),
        (RType::HTTPS, cat(&[&[0, 1, 0], &[0, 4, 0, 0]]), "ipv4hint"),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 4, 0, 5, 1, 2, 3, 4, 5]]),
            "ipv4hint",
        ),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 6, 0, 4, 1, 2, 3, 4]]),
            "ipv6hint",
        ),
        (RType::HTTPS, cat(&[&[0, 1, 0], &[0, 5, 0, 0]]), "empty ech"),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 0, 0, 2, 0, 0]]),
            "lists itself",
        ),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 0, 0, 2, 0, 3]]),
            "not present",
        ),
        (
            RType::HTTPS,
            cat(&[
                &[0, 1, 0],
                &[0, 0, 0, 4, 0, 3, 0, 1],
                &[0, 1, 0, 3, 2, b'h', b'2'],
                &[0, 3, 0, 2, 1, 0xbb],
            ]),
            "mandatory keys out of order",
        ),
        (
            RType::HTTPS,
            cat(&[&[0, 1, 0], &[0, 0, 0, 1, 0]]),
            "mandatory",
        ),
        (RType::HTTPS, cat(&[&[0, 1, 0], &[0, 3, 0, 9]]), "length"),
        (
            RType::SVCB,
            cat(&[&[0, 1], &[0xc0, 0x0c]]),
            "compressed name",
        ),
        (RType::LOC, vec![1; 16], "version"),
        (
            RType::LOC,
            cat(&[
                &[0, 0xa0, 0, 0],
                &[0x80, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0],
            ]),
            "digit over 9",
        ),
        (
            RType::LOC,
            cat(&[&[0, 0, 0, 0], &[0xff, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0]]),
            "out of range",
        ),
        (RType::LOC, vec![0; 15], "length"),
        (
            RType::ZONEMD,
            cat(&[&[0, 0, 0, 1, 1, 1], &[0x11; 47]]),
            "digest length",
        ),
        (
            RType::ZONEMD,
            cat(&[&[0, 0, 0, 1, 1, 9], &[0x11; 11]]),
            "digest length",
        ),
        (RType::HINFO, b"\x02PC".to_vec(), "character-strings"),
        (RType::HINFO, b"\x02PC\x05Lin".to_vec(), "length"),
        (RType::X25, Vec::new(), "character-strings"),
        (RType::EUI48, vec![0; 7], "length"),
        (RType::L32, vec![0; 5], "length"),
        (RType::KX, cat(&[&[0, 1], &[0xc0, 0x0c]]), "compressed name"),
    ];
    for (rtype, rd, what) in cases {
        let e = parse_typed(rtype, &rd).unwrap().expect_err(what);
        let text = e.to_string();
        assert!(text.contains(&*rtype.name()), "{text}");
        assert!(text.contains(what), "{}: {text} lacks {what}", rtype.name());
    }
}

/// A type bitmap in wire form for a set of types (the test's own encoder).
fn bitmap_of(types: &std::collections::BTreeSet<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    for window in 0..=255u16 {
        let mut bits = [0u8; 32];
        for t in types.iter().filter(|t| *t >> 8 == window) {
            bits[usize::from(t & 0xFF) / 8] |= 0x80 >> (t & 7);
        }
        if let Some(last) = bits.iter().rposition(|&b| b != 0) {
            out.push(window as u8);
            out.push(last as u8 + 1);
            out.extend_from_slice(&bits[..=last]);
        }
    }
    out
}

proptest! {
    #[test]
    fn type_bitmaps_round_trip(types in proptest::collection::btree_set(any::<u16>(), 0..40)) {
        let rd = cat(&[EXAMPLE, &bitmap_of(&types)]);
        let t = parse_typed(RType::NSEC, &rd).unwrap().unwrap();
        let Typed::Nsec { types: got, .. } = &t else { panic!("not NSEC") };
        let got: Vec<u16> = got.types().iter().map(|t| t.0).collect();
        prop_assert_eq!(got, types.iter().copied().collect::<Vec<_>>());
        prop_assert_eq!(t.to_vec(), rd);
    }

    #[test]
    fn svcb_with_unknown_keys_round_trips(
        params in proptest::collection::btree_map(9u16.., proptest::collection::vec(any::<u8>(), 0..20), 0..8),
        priority in any::<u16>(),
    ) {
        let mut rd = cat(&[&priority.to_be_bytes(), EXAMPLE]);
        for (k, v) in &params {
            rd.extend_from_slice(&k.to_be_bytes());
            rd.extend_from_slice(&(v.len() as u16).to_be_bytes());
            rd.extend_from_slice(v);
        }
        let t = parse_typed(RType::SVCB, &rd).unwrap().unwrap();
        prop_assert_eq!(t.to_vec(), rd);
    }

    #[test]
    fn any_octets_of_any_typed_type_parse_or_fail_cleanly(
        rtype in proptest::sample::select(vec![
            RType::DNSKEY, RType::RRSIG, RType::DS, RType::NSEC, RType::NSEC3, RType::NSEC3PARAM,
            RType::HTTPS, RType::SSHFP, RType::TLSA, RType::ZONEMD, RType::CSYNC, RType::LOC,
            RType::URI, RType::CERT, RType::HINFO, RType::ISDN, RType::KX, RType::NID,
            RType::L32, RType::EUI48,
        ]),
        rd in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        if let Some(Ok(t)) = parse_typed(rtype, &rd) {
            prop_assert_eq!(t.to_vec(), rd);
        }
    }
}

/// Every nom parser on the forwarding path returns a `WireError` holding an `ErrorKind`:
/// a fault of the display-only types must not make it bigger (a `&str` in it slowed the
/// hot-path view by a third).
#[test]
fn error_kind_stays_small() {
    assert!(std::mem::size_of::<ErrorKind>() <= 4);
    assert!(std::mem::size_of::<crate::wire::WireError<'_>>() <= 24);
}

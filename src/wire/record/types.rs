//! TYPE and CLASS (RFC 1035 §3.2.2-§3.2.4): open 16-bit code points, with the
//! mnemonics we print and `TYPEnnn`/`CLASSnnn` for the rest (RFC 3597 §5).
/// TYPE: an open 16-bit code point (IANA "Resource Record (RR) TYPEs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RType(pub u16);

/// CLASS: an open 16-bit code point. For OPT it holds the UDP payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Class(pub u16);

/// Mnemonics of the types we print by name; everything else is `TYPEnnn` (RFC 3597 §5).
const RTYPE_NAMES: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (3, "MD"),
    (4, "MF"),
    (5, "CNAME"),
    (6, "SOA"),
    (7, "MB"),
    (8, "MG"),
    (9, "MR"),
    (10, "NULL"),
    (11, "WKS"),
    (12, "PTR"),
    (13, "HINFO"),
    (14, "MINFO"),
    (15, "MX"),
    (16, "TXT"),
    (17, "RP"),
    (18, "AFSDB"),
    (19, "X25"),
    (20, "ISDN"),
    (21, "RT"),
    (22, "NSAP"),
    (23, "NSAP-PTR"),
    (24, "SIG"),
    (25, "KEY"),
    (26, "PX"),
    (27, "GPOS"),
    (28, "AAAA"),
    (29, "LOC"),
    (30, "NXT"),
    (33, "SRV"),
    (35, "NAPTR"),
    (36, "KX"),
    (37, "CERT"),
    (38, "A6"),
    (39, "DNAME"),
    (41, "OPT"),
    (42, "APL"),
    (43, "DS"),
    (44, "SSHFP"),
    (45, "IPSECKEY"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (49, "DHCID"),
    (50, "NSEC3"),
    (51, "NSEC3PARAM"),
    (52, "TLSA"),
    (53, "SMIMEA"),
    (55, "HIP"),
    (59, "CDS"),
    (60, "CDNSKEY"),
    (61, "OPENPGPKEY"),
    (62, "CSYNC"),
    (63, "ZONEMD"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (99, "SPF"),
    (104, "NID"),
    (105, "L32"),
    (106, "L64"),
    (107, "LP"),
    (108, "EUI48"),
    (109, "EUI64"),
    (249, "TKEY"),
    (250, "TSIG"),
    (251, "IXFR"),
    (252, "AXFR"),
    (253, "MAILB"),
    (254, "MAILA"),
    (255, "ANY"),
    (256, "URI"),
    (257, "CAA"),
    (32768, "TA"),
    (32769, "DLV"),
];

impl RType {
    pub const A: RType = RType(1);
    pub const NS: RType = RType(2);
    pub const CNAME: RType = RType(5);
    pub const SOA: RType = RType(6);
    pub const MB: RType = RType(7);
    pub const MG: RType = RType(8);
    pub const MR: RType = RType(9);
    pub const NULL: RType = RType(10);
    pub const PTR: RType = RType(12);
    pub const HINFO: RType = RType(13);
    pub const MINFO: RType = RType(14);
    pub const MX: RType = RType(15);
    pub const TXT: RType = RType(16);
    pub const RP: RType = RType(17);
    pub const AFSDB: RType = RType(18);
    pub const X25: RType = RType(19);
    pub const ISDN: RType = RType(20);
    pub const RT: RType = RType(21);
    pub const PX: RType = RType(26);
    pub const AAAA: RType = RType(28);
    pub const LOC: RType = RType(29);
    pub const SRV: RType = RType(33);
    pub const NAPTR: RType = RType(35);
    pub const KX: RType = RType(36);
    pub const CERT: RType = RType(37);
    pub const DNAME: RType = RType(39);
    pub const OPT: RType = RType(41);
    pub const DS: RType = RType(43);
    pub const SSHFP: RType = RType(44);
    pub const RRSIG: RType = RType(46);
    pub const NSEC: RType = RType(47);
    pub const DNSKEY: RType = RType(48);
    pub const DHCID: RType = RType(49);
    pub const NSEC3: RType = RType(50);
    pub const NSEC3PARAM: RType = RType(51);
    pub const TLSA: RType = RType(52);
    pub const SMIMEA: RType = RType(53);
    pub const CDS: RType = RType(59);
    pub const CDNSKEY: RType = RType(60);
    pub const OPENPGPKEY: RType = RType(61);
    pub const CSYNC: RType = RType(62);
    pub const ZONEMD: RType = RType(63);
    pub const SVCB: RType = RType(64);
    pub const HTTPS: RType = RType(65);
    pub const SPF: RType = RType(99);
    pub const NID: RType = RType(104);
    pub const L32: RType = RType(105);
    pub const L64: RType = RType(106);
    pub const LP: RType = RType(107);
    pub const EUI48: RType = RType(108);
    pub const EUI64: RType = RType(109);
    pub const TSIG: RType = RType(250);
    pub const ANY: RType = RType(255);
    pub const URI: RType = RType(256);
    pub const CAA: RType = RType(257);

    /// The mnemonic, or `TYPEnnn` (RFC 3597 §5).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match RTYPE_NAMES.binary_search_by_key(&self.0, |&(n, _)| n) {
            Ok(at) => RTYPE_NAMES.get(at).map_or("", |&(_, s)| s).into(),
            Err(_) => format!("TYPE{}", self.0).into(),
        }
    }
}

impl Class {
    pub const IN: Class = Class(1);
    pub const CH: Class = Class(3);
    pub const HS: Class = Class(4);
    pub const NONE: Class = Class(254);
    pub const ANY: Class = Class(255);

    /// The mnemonic, or `CLASSnnn` (RFC 3597 §5).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self.0 {
            1 => "IN".into(),
            3 => "CH".into(),
            4 => "HS".into(),
            254 => "NONE".into(),
            255 => "ANY".into(),
            n => format!("CLASS{n}").into(),
        }
    }
}

//! IEEE 802.11 data frames, bare or behind a radio header (radiotap, Prism, AVS, PPI).
//!
//! Only data frames that are not protected carry IP in the clear: management, control,
//! "no data" subtypes and encrypted frames are "no IP packet". The 802.11 header is 24
//! bytes, plus the fourth address (to and from DS), QoS control and HT control when
//! present; LLC/SNAP follows. A trailing FCS needs no care: the IP and UDP length fields
//! bound the payload. No panic, only checked slicing.
use super::{be32, le16, le32, Next};

const TYPE_DATA: u8 = 2;
/// Frame control flags (second byte).
const FLAG_TO_DS: u8 = 0x01;
const FLAG_FROM_DS: u8 = 0x02;
const FLAG_PROTECTED: u8 = 0x40;
const FLAG_ORDER: u8 = 0x80;
/// Subtype bits: QoS data, and "no data" (null, CF-ack/poll only).
const SUBTYPE_QOS: u8 = 0x8;
const SUBTYPE_NO_DATA: u8 = 0x4;
/// AVS capture header versions 1 and 2 (big-endian), also seen under the Prism link type.
const AVS_MAGIC: [u32; 2] = [0x8021_1001, 0x8021_1002];

/// An 802.11 frame, from frame control.
pub(crate) fn dot11(f: &[u8]) -> Option<Next<'_>> {
    let fc0 = *f.first()?;
    let flags = *f.get(1)?;
    let subtype = fc0 >> 4;
    if (fc0 >> 2) & 3 != TYPE_DATA || subtype & SUBTYPE_NO_DATA != 0 {
        return None;
    }
    if flags & FLAG_PROTECTED != 0 {
        return None;
    }
    let mut len = 24;
    if flags & (FLAG_TO_DS | FLAG_FROM_DS) == FLAG_TO_DS | FLAG_FROM_DS {
        len += 6;
    }
    if subtype & SUBTYPE_QOS != 0 {
        len += 2;
        // HT control is present only in QoS frames with the Order bit.
        if flags & FLAG_ORDER != 0 {
            len += 4;
        }
    }
    Some(Next::Llc(f.get(len..)?))
}

/// Radiotap: version 0, pad, then the whole header's length (little-endian).
pub(crate) fn radiotap(f: &[u8]) -> Option<Next<'_>> {
    if *f.first()? != 0 {
        return None;
    }
    dot11(f.get(usize::from(le16(f, 2)?)..)?)
}

/// Prism monitor header: message code, then its length in the host's byte order (144 in
/// practice). An AVS header under this link type is recognised by its magic.
pub(crate) fn prism(f: &[u8]) -> Option<Next<'_>> {
    if AVS_MAGIC.contains(&be32(f, 0)?) {
        return avs(f);
    }
    let raw = le32(f, 4)?;
    let len = [raw, raw.swap_bytes()]
        .into_iter()
        .find(|&l| l >= 8 && usize::try_from(l).is_ok_and(|l| l <= f.len()))?;
    dot11(f.get(usize::try_from(len).ok()?..)?)
}

/// AVS: version magic and header length, both big-endian.
pub(crate) fn avs(f: &[u8]) -> Option<Next<'_>> {
    if !AVS_MAGIC.contains(&be32(f, 0)?) {
        return None;
    }
    let len = usize::try_from(be32(f, 4)?).ok()?;
    if len < 8 {
        return None;
    }
    dot11(f.get(len..)?)
}

/// PPI (Per-Packet Information): version 0, flags, header length and the link type of the
/// frame after it, little-endian. Returns that link type and frame.
pub(crate) fn ppi(f: &[u8]) -> Option<(u32, &[u8])> {
    if *f.first()? != 0 {
        return None;
    }
    let len = usize::from(le16(f, 2)?);
    if len < 8 {
        return None;
    }
    Some((le32(f, 4)?, f.get(len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data frame header with frame control `fc0`, `flags`, and `extra` header bytes.
    fn frame(fc0: u8, flags: u8, extra: usize) -> Vec<u8> {
        let mut f = vec![fc0, flags];
        f.extend_from_slice(&[0; 22]);
        f.extend_from_slice(&vec![0; extra]);
        f.extend_from_slice(&[0xaa, 0xaa, 0x03]);
        f
    }

    fn llc(f: &[u8]) -> Option<Next<'_>> {
        Some(Next::Llc(&f[f.len() - 3..]))
    }

    #[test]
    fn data_header_lengths() {
        let plain = frame(0x08, 0x01, 0);
        assert_eq!(dot11(&plain), llc(&plain));
        let wds = frame(0x08, 0x03, 6);
        assert_eq!(dot11(&wds), llc(&wds));
        let qos = frame(0x88, 0x02, 2);
        assert_eq!(dot11(&qos), llc(&qos));
        let qos_ht = frame(0x88, 0x82, 6);
        assert_eq!(dot11(&qos_ht), llc(&qos_ht));
    }

    #[test]
    fn no_ip_in_other_frames() {
        assert_eq!(dot11(&frame(0x80, 0, 0)), None); // beacon
        assert_eq!(dot11(&frame(0x48, 0x01, 0)), None); // null data
        assert_eq!(dot11(&frame(0x08, 0x41, 0)), None); // protected
        assert_eq!(dot11(&[0x08]), None);
    }

    #[test]
    fn radio_headers_and_their_lengths() {
        let inner = frame(0x08, 0x01, 0);
        let mut rt = vec![0, 0, 8, 0, 0, 0, 0, 0];
        rt.extend_from_slice(&inner);
        assert!(radiotap(&rt).is_some());
        rt[2] = 0xff;
        assert_eq!(radiotap(&rt), None);
        let mut avs_hdr = 0x8021_1001u32.to_be_bytes().to_vec();
        avs_hdr.extend_from_slice(&8u32.to_be_bytes());
        avs_hdr.extend_from_slice(&inner);
        assert!(avs(&avs_hdr).is_some());
        assert!(prism(&avs_hdr).is_some());
        let mut short = avs_hdr.clone();
        short[7] = 4;
        assert_eq!(avs(&short), None);
        let mut p = vec![0x41, 0, 0, 0, 8, 0, 0, 0];
        p.extend_from_slice(&inner);
        assert!(prism(&p).is_some());
        assert_eq!(ppi(&[0, 0, 8, 0, 105, 0, 0, 0]), Some((105, &[][..])));
        assert_eq!(ppi(&[0, 0, 4, 0, 105, 0, 0, 0]), None);
    }
}

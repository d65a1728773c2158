//! LOC RDATA (RFC 1876 §2): a position on the WGS 84 ellipsoid with its precision.
use nom::number::complete::{be_u32, u8 as octet};

use super::{fail, ErrorKind, Fault, PResult, Typed, Writer};

/// The equator and the prime meridian: latitude and longitude are thousandths of an
/// arc second, offset by 2^31 (RFC 1876 §2).
pub const LOC_EQUATOR: u32 = 1 << 31;
/// 90° and 180° in thousandths of an arc second.
const DEG_90: u32 = 90 * 3_600_000;
const DEG_180: u32 = 180 * 3_600_000;

/// RFC 1876 §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// Valid values: 0 (the only version RFC 1876 defines).
    pub version: u8,
    /// Diameter of the sphere, and horizontal and vertical precision, in centimetres
    /// as mantissa (high nibble) × 10^exponent (low nibble). Valid values: both nibbles
    /// 0..=9.
    pub size: u8,
    pub horiz_pre: u8,
    pub vert_pre: u8,
    /// Valid values: 2^31 ± 90° (in thousandths of an arc second).
    pub latitude: u32,
    /// Valid values: 2^31 ± 180°.
    pub longitude: u32,
    /// Centimetres above a base 100,000 m below the WGS 84 reference spheroid.
    pub altitude: u32,
}

pub(crate) fn parse_loc(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let start = i;
    let (i, version) = octet(i)?;
    if version != 0 {
        return fail(start, ErrorKind::BadField(Fault::LocVersion));
    }
    let at_sizes = i;
    let (i, size) = octet(i)?;
    let (i, horiz_pre) = octet(i)?;
    let (i, vert_pre) = octet(i)?;
    if [size, horiz_pre, vert_pre]
        .iter()
        .any(|&p| p >> 4 > 9 || p & 0x0F > 9)
    {
        return fail(at_sizes, ErrorKind::BadField(Fault::LocPrecision));
    }
    let at_position = i;
    let (i, latitude) = be_u32(i)?;
    let (i, longitude) = be_u32(i)?;
    let (i, altitude) = be_u32(i)?;
    if latitude.abs_diff(LOC_EQUATOR) > DEG_90 || longitude.abs_diff(LOC_EQUATOR) > DEG_180 {
        return fail(at_position, ErrorKind::BadField(Fault::LocRange));
    }
    let loc = Loc {
        version,
        size,
        horiz_pre,
        vert_pre,
        latitude,
        longitude,
        altitude,
    };
    Ok((i, Typed::Loc(loc)))
}

impl Loc {
    pub(crate) fn write(&self, w: &mut Writer) -> bool {
        w.u8(self.version)
            && w.u8(self.size)
            && w.u8(self.horiz_pre)
            && w.u8(self.vert_pre)
            && w.u32(self.latitude)
            && w.u32(self.longitude)
            && w.u32(self.altitude)
    }
}

//! Typed RDATA decoded for display, and the presenter.
//!
//! * The first two octets choose a type, the rest is its RDATA: `parse_typed` never
//!   panics, and what it accepts writes back to the same octets.
//! * Whatever `parse_message` accepts, `dig_text` prints without panicking (malformed
//!   typed RDATA and EDNS options included).
#![no_main]

use dnsfwd::present::dig_text;
use dnsfwd::wire::{parse_message, parse_typed, RType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&[hi, lo], rd)) = data.split_first_chunk::<2>() {
        if let Some(Ok(t)) = parse_typed(RType(u16::from_be_bytes([hi, lo])), rd) {
            assert_eq!(t.to_vec(), rd, "typed RDATA round trip");
        }
    }
    if let Ok(m) = parse_message(data) {
        let _ = dig_text(&m);
    }
});

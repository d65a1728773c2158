//! Link-type numbers (the LINKTYPE_ values of the pcap and pcapng formats, from
//! tcpdump.org's list), which of them `capture` decodes, and their names for messages.

pub(crate) const LINKTYPE_NULL: u32 = 0;
pub(crate) const LINKTYPE_ETHERNET: u32 = 1;
pub(crate) const LINKTYPE_IEEE802_5: u32 = 6;
pub(crate) const LINKTYPE_ARCNET_BSD: u32 = 7;
pub(crate) const LINKTYPE_PPP: u32 = 9;
pub(crate) const LINKTYPE_FDDI: u32 = 10;
/// DLT_RAW on most BSDs; written as link type 12 by some old captures.
pub(crate) const LINKTYPE_RAW_12: u32 = 12;
/// DLT_RAW on OpenBSD.
pub(crate) const LINKTYPE_RAW_14: u32 = 14;
pub(crate) const LINKTYPE_PPP_HDLC: u32 = 50;
pub(crate) const LINKTYPE_PPP_ETHER: u32 = 51;
pub(crate) const LINKTYPE_ATM_RFC1483: u32 = 100;
pub(crate) const LINKTYPE_RAW: u32 = 101;
pub(crate) const LINKTYPE_C_HDLC: u32 = 104;
pub(crate) const LINKTYPE_IEEE802_11: u32 = 105;
pub(crate) const LINKTYPE_FRELAY: u32 = 107;
pub(crate) const LINKTYPE_LOOP: u32 = 108;
pub(crate) const LINKTYPE_ENC: u32 = 109;
pub(crate) const LINKTYPE_LINUX_SLL: u32 = 113;
pub(crate) const LINKTYPE_PFLOG: u32 = 117;
pub(crate) const LINKTYPE_IEEE802_11_PRISM: u32 = 119;
pub(crate) const LINKTYPE_SUNATM: u32 = 123;
pub(crate) const LINKTYPE_IEEE802_11_RADIOTAP: u32 = 127;
pub(crate) const LINKTYPE_ARCNET_LINUX: u32 = 129;
pub(crate) const LINKTYPE_IEEE802_11_AVS: u32 = 163;
pub(crate) const LINKTYPE_PPI: u32 = 192;
pub(crate) const LINKTYPE_PPP_WITH_DIR: u32 = 204;
pub(crate) const LINKTYPE_C_HDLC_WITH_DIR: u32 = 205;
pub(crate) const LINKTYPE_FRELAY_WITH_DIR: u32 = 206;
pub(crate) const LINKTYPE_MPLS: u32 = 219;
pub(crate) const LINKTYPE_IPV4: u32 = 228;
pub(crate) const LINKTYPE_IPV6: u32 = 229;
pub(crate) const LINKTYPE_NFLOG: u32 = 239;
pub(crate) const LINKTYPE_IPOIB: u32 = 242;
pub(crate) const LINKTYPE_PKTAP: u32 = 258;
pub(crate) const LINKTYPE_LINUX_SLL2: u32 = 276;

/// The link types in which [`super::decode`] looks for IP; packets of any other are
/// skipped and counted.
pub(crate) fn is_supported(link_type: u32) -> bool {
    matches!(
        link_type,
        LINKTYPE_NULL
            | LINKTYPE_ETHERNET
            | LINKTYPE_IEEE802_5
            | LINKTYPE_ARCNET_BSD
            | LINKTYPE_PPP
            | LINKTYPE_FDDI
            | LINKTYPE_RAW_12
            | LINKTYPE_RAW_14
            | LINKTYPE_PPP_HDLC
            | LINKTYPE_PPP_ETHER
            | LINKTYPE_ATM_RFC1483
            | LINKTYPE_RAW
            | LINKTYPE_C_HDLC
            | LINKTYPE_IEEE802_11
            | LINKTYPE_FRELAY
            | LINKTYPE_LOOP
            | LINKTYPE_ENC
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_PFLOG
            | LINKTYPE_IEEE802_11_PRISM
            | LINKTYPE_SUNATM
            | LINKTYPE_IEEE802_11_RADIOTAP
            | LINKTYPE_ARCNET_LINUX
            | LINKTYPE_IEEE802_11_AVS
            | LINKTYPE_PPI
            | LINKTYPE_PPP_WITH_DIR
            | LINKTYPE_C_HDLC_WITH_DIR
            | LINKTYPE_FRELAY_WITH_DIR
            | LINKTYPE_MPLS
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
            | LINKTYPE_NFLOG
            | LINKTYPE_IPOIB
            | LINKTYPE_PKTAP
            | LINKTYPE_LINUX_SLL2
    )
}

/// The libpcap name of a link type: every one decoded here, and common ones that are not.
pub(crate) fn name(link_type: u32) -> Option<&'static str> {
    Some(match link_type {
        LINKTYPE_NULL => "NULL",
        LINKTYPE_ETHERNET => "ETHERNET",
        LINKTYPE_IEEE802_5 => "IEEE802_5",
        LINKTYPE_ARCNET_BSD => "ARCNET_BSD",
        LINKTYPE_PPP => "PPP",
        LINKTYPE_FDDI => "FDDI",
        LINKTYPE_RAW_12 | LINKTYPE_RAW_14 | LINKTYPE_RAW => "RAW",
        LINKTYPE_PPP_HDLC => "PPP_HDLC",
        LINKTYPE_PPP_ETHER => "PPP_ETHER",
        LINKTYPE_ATM_RFC1483 => "ATM_RFC1483",
        LINKTYPE_C_HDLC => "C_HDLC",
        LINKTYPE_IEEE802_11 => "IEEE802_11",
        LINKTYPE_FRELAY => "FRELAY",
        LINKTYPE_LOOP => "LOOP",
        LINKTYPE_ENC => "ENC",
        LINKTYPE_LINUX_SLL => "LINUX_SLL",
        LINKTYPE_PFLOG => "PFLOG",
        LINKTYPE_IEEE802_11_PRISM => "IEEE802_11_PRISM",
        LINKTYPE_SUNATM => "SUNATM",
        LINKTYPE_IEEE802_11_RADIOTAP => "IEEE802_11_RADIOTAP",
        LINKTYPE_ARCNET_LINUX => "ARCNET_LINUX",
        LINKTYPE_IEEE802_11_AVS => "IEEE802_11_AVS",
        LINKTYPE_PPI => "PPI",
        LINKTYPE_PPP_WITH_DIR => "PPP_WITH_DIR",
        LINKTYPE_C_HDLC_WITH_DIR => "C_HDLC_WITH_DIR",
        LINKTYPE_FRELAY_WITH_DIR => "FRELAY_WITH_DIR",
        LINKTYPE_MPLS => "MPLS",
        LINKTYPE_IPV4 => "IPV4",
        LINKTYPE_IPV6 => "IPV6",
        LINKTYPE_NFLOG => "NFLOG",
        LINKTYPE_IPOIB => "IPOIB",
        LINKTYPE_PKTAP => "PKTAP",
        LINKTYPE_LINUX_SLL2 => "LINUX_SLL2",
        // Not decoded: they carry no IP, or none we read.
        147..=162 => "USER",
        187 => "BLUETOOTH_HCI_H4",
        189 => "USB_LINUX",
        195 => "IEEE802_15_4_WITHFCS",
        201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
        220 => "USB_LINUX_MMAPPED",
        227 => "CAN_SOCKETCAN",
        249 => "USBPCAP",
        253 => "NETLINK",
        _ => return None,
    })
}

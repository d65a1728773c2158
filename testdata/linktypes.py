#!/usr/bin/env python3
"""Builds the link-type and tunnel fixtures in testdata/linktypes/ from real DNS messages.

Usage: python3 testdata/linktypes.py [--check]   (stdlib only; no root, no network)
       --check: then decode every file with tshark and require it to reach the same DNS
       messages (tshark must be installed).

The DNS messages are the first query and the first response of testdata/auth-udp.pcap
(captured by regen.sh from dig and knotd). Each is put in a fresh IPv4 or IPv6 UDP
datagram (query 192.0.2.1:40000 -> 192.0.2.53:53, response 2001:db8::53:53 ->
2001:db8::1:40000; Teredo carries both over IPv6), and that packet is wrapped in the
encapsulation named by the file, by hand, byte by byte, as the specifications lay it out.
Every file holds the query then the response, one packet each, unless said otherwise in
FILES below. Checksums are zero (decoders do not check them). Timestamps are fixed, so a
run writes the same bytes every time; tests/capture_linktypes.rs reads these files and
checks that exactly these two messages come out, with the expected tunnel path.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "linktypes")


# ------------------------------------------------------------------ reading the source
def read_pcap(path):
    data = open(path, "rb").read()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1" or magic == b"\x4d\x3c\xb2\xa1":
        e = "<"
    elif magic == b"\xa1\xb2\xc3\xd4" or magic == b"\xa1\xb2\x3c\x4d":
        e = ">"
    else:
        sys.exit(f"{path}: not a pcap")
    (linktype,) = struct.unpack(e + "I", data[20:24])
    if linktype != 1:
        sys.exit(f"{path}: link type {linktype}, expected Ethernet")
    off = 24
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(e + "IIII", data[off : off + 16])
        yield data[off + 16 : off + 16 + caplen]
        off += 16 + caplen


def first_query_and_response(path):
    """The payloads of the first UDP port-53 query and response (IPv4 or IPv6)."""
    query = response = None
    for frame in read_pcap(path):
        ethertype = struct.unpack(">H", frame[12:14])[0]
        ip = frame[14:]
        if ethertype == 0x0800:
            proto, body = ip[9], ip[(ip[0] & 0xF) * 4 :]
        elif ethertype == 0x86DD:
            proto, body = ip[6], ip[40:]
        else:
            continue
        if proto != 17:
            continue
        sport, dport, length = struct.unpack(">HHH", body[:6])
        payload = body[8:length]
        if len(payload) < 12 or 53 not in (sport, dport):
            continue
        is_response = payload[2] & 0x80
        if is_response and query is not None and response is None:
            response = payload
        elif not is_response and query is None:
            query = payload
        if query and response:
            return query, response
    sys.exit(f"{path}: no UDP query and response found")


QUERY, RESPONSE = first_query_and_response(os.path.join(HERE, "auth-udp.pcap"))


# ------------------------------------------------------------------ building packets
def udp(sport, dport, payload):
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport, dport, seq, flags, payload):
    return struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 0xFFFF, 0, 0) + payload


def ipv4(src, dst, proto, payload):
    return (
        struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0)
        + bytes(src)
        + bytes(dst)
        + payload
    )


def ipv6(src, dst, nh, payload):
    return struct.pack(">IHBB", 0x60000000, len(payload), nh, 64) + bytes(src) + bytes(dst) + payload


C4, S4 = [192, 0, 2, 1], [192, 0, 2, 53]
C6 = [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [1]
S6 = [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [0x53]
Q4 = ipv4(C4, S4, 17, udp(40000, 53, QUERY))
R6 = ipv6(S6, C6, 17, udp(53, 40000, RESPONSE))
Q6 = ipv6(C6, S6, 17, udp(40000, 53, QUERY))
R4 = ipv4(S4, C4, 17, udp(53, 40000, RESPONSE))
PAIR = [(4, Q4), (6, R6)]

MAC_A, MAC_B = bytes([2, 0, 0, 0, 0, 1]), bytes([2, 0, 0, 0, 0, 2])
ETHERTYPE = {4: 0x0800, 6: 0x86DD}


def ether(ethertype, payload):
    return MAC_B + MAC_A + struct.pack(">H", ethertype) + payload


def ether_ip(v, pkt):
    return ether(ETHERTYPE[v], pkt)


def snap(v, pkt):
    """802.2 LLC + SNAP, OUI 00-00-00, with the EtherType of IP version v."""
    return bytes([0xAA, 0xAA, 0x03, 0, 0, 0]) + struct.pack(">H", ETHERTYPE[v]) + pkt


OUTER_A, OUTER_B = [10, 0, 0, 1], [10, 0, 0, 2]
OUTER6_A = [0xFD, 0] + [0] * 13 + [1]
OUTER6_B = [0xFD, 0] + [0] * 13 + [2]


def outer4(proto, payload):
    return ether(0x0800, ipv4(OUTER_A, OUTER_B, proto, payload))


def outer_udp(sport, dport, payload):
    return outer4(17, udp(sport, dport, payload))


# ------------------------------------------------------------------ link types
def dot11(v, pkt, qos=False):
    fc = bytes([0x88, 0x02]) if qos else bytes([0x08, 0x01])  # QoS data from DS / data to DS
    hdr = fc + b"\x00\x00" + MAC_B + MAC_A + MAC_B + b"\x10\x00"
    if qos:
        hdr += b"\x00\x00"
    return hdr + snap(v, pkt)


def pflog(v, pkt):
    hdr = bytes([61, 2 if v == 4 else 24]) + bytes(59)  # 61 bytes, padded to 64
    return hdr + bytes(3) + pkt


def nflog(v, pkt):
    def tlv(ty, value):
        t = struct.pack("<HH", 4 + len(value), ty) + value
        return t + bytes(-len(t) % 4)

    hdr = bytes([2 if v == 4 else 10, 0, 0, 0])
    return hdr + tlv(1, struct.pack(">HBB", ETHERTYPE[v], 3, 0)) + tlv(9, pkt)


def pktap(v, pkt):
    hdr = struct.pack("<III", 108, 1, 1) + b"en0".ljust(24, b"\0")
    return hdr + bytes(108 - len(hdr)) + ether_ip(v, pkt)


def arcnet(v, pkt, linux):
    proto = 0xD4 if v == 4 else 0xC4
    head = bytes([0x01, 0x02]) + (b"\x00\x00" if linux else b"")
    return head + bytes([proto, 0, 0, 1]) + pkt


def token_ring(v, pkt):
    if v == 4:  # source route bit set, 2 bytes of routing information
        return bytes([0x10, 0x40]) + MAC_B + bytes([0x82]) + MAC_A[1:] + b"\x02\x00" + snap(v, pkt)
    return bytes([0x10, 0x40]) + MAC_B + MAC_A + snap(v, pkt)


def mpls_label(label, bottom, ttl=64):
    return struct.pack(">I", label << 12 | (0x100 if bottom else 0) | ttl)


def pppoe(v, pkt):
    body = struct.pack(">H", 0x21 if v == 4 else 0x57) + pkt
    return struct.pack(">BBHH", 0x11, 0, 0x1234, len(body)) + body


def ppp(v, pkt):
    return b"\xff\x03" + struct.pack(">H", 0x21 if v == 4 else 0x57) + pkt


# (file, link type, function of (version, packet) -> frame)
LINKS = [
    ("vlan", 1, lambda v, p: ether(0x8100, b"\x00\x64" + struct.pack(">H", ETHERTYPE[v]) + p)),
    (
        "qinq",
        1,
        lambda v, p: ether(0x88A8, b"\x00\x0a\x81\x00\x00\x14" + struct.pack(">H", ETHERTYPE[v]) + p),
    ),
    ("mpls-ether", 1, lambda v, p: ether(0x8847, mpls_label(100, False) + mpls_label(200, True) + p)),
    ("mpls-raw", 219, lambda v, p: mpls_label(300, True) + p),
    ("pppoe", 1, lambda v, p: ether(0x8864, pppoe(v, p))),
    ("ppp", 9, ppp),
    ("ppp-hdlc", 50, ppp),
    ("ppp-ether", 51, pppoe),
    ("ppp-with-dir", 204, lambda v, p: b"\x01" + ppp(v, p)),
    ("llc-8023", 1, lambda v, p: MAC_B + MAC_A + struct.pack(">H", len(snap(v, p))) + snap(v, p)),
    ("linux-sll", 113, lambda v, p: struct.pack(">HHH", 0, 1, 6) + MAC_A + b"\0\0" + struct.pack(">H", ETHERTYPE[v]) + p),
    (
        "linux-sll2",
        276,
        lambda v, p: struct.pack(">HHIHBB", ETHERTYPE[v], 0, 2, 1, 0, 6) + MAC_A + b"\0\0" + p,
    ),
    ("null", 0, lambda v, p: struct.pack("<I", 2 if v == 4 else 30) + p),
    ("loop", 108, lambda v, p: struct.pack(">I", 2 if v == 4 else 24) + p),
    ("pflog", 117, pflog),
    ("enc", 109, lambda v, p: struct.pack("<III", 2 if v == 4 else 24, 0x1000, 0) + p),
    ("nflog", 239, nflog),
    ("pktap", 258, pktap),
    ("ieee802-11", 105, lambda v, p: dot11(v, p, qos=(v == 6))),
    (
        "radiotap",
        127,
        # version, pad, length 9, present: flags; flags: FCS at end; then 4 FCS bytes.
        lambda v, p: struct.pack("<BBHIB", 0, 0, 9, 0x2, 0x10) + dot11(v, p, qos=(v == 6)) + b"\xde\xad\xbe\xef",
    ),
    ("prism", 119, lambda v, p: struct.pack("<II", 0x41, 144) + bytes(136) + dot11(v, p)),
    ("avs", 163, lambda v, p: struct.pack(">II", 0x80211001, 64) + bytes(56) + dot11(v, p)),
    ("ppi", 192, lambda v, p: struct.pack("<BBHI", 0, 0, 8, 105) + dot11(v, p)),
    ("c-hdlc", 104, lambda v, p: b"\x0f\x00" + struct.pack(">H", ETHERTYPE[v]) + p),
    ("frelay", 107, lambda v, p: b"\x18\x41\x03" + (b"\xcc" if v == 4 else b"\x8e") + p),
    ("atm-rfc1483", 100, snap),
    # Linux pseudo-header: 20 zero bytes (no GRH) and the destination (QPN, GID); then
    # the RFC 4391 header.
    ("ipoib", 242, lambda v, p: bytes(20) + struct.pack(">I", 0x48) + bytes(S6) + struct.pack(">HH", ETHERTYPE[v], 0) + p),
    ("fddi", 10, lambda v, p: b"\x50" + MAC_B + MAC_A + snap(v, p)),
    ("token-ring", 6, token_ring),
    ("arcnet-bsd", 7, lambda v, p: arcnet(v, p, False)),
    ("arcnet-linux", 129, lambda v, p: arcnet(v, p, True)),
]


# ------------------------------------------------------------------ tunnels
def gre(proto, payload, key=None, seq=None):
    flags = (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    hdr = struct.pack(">HH", flags, proto)
    if key is not None:
        hdr += struct.pack(">I", key)
    if seq is not None:
        hdr += struct.pack(">I", seq)
    return hdr + payload


def erspan2(frame):
    # version 1, VLAN 0, COS/En/T, session 7, reserved, index
    return gre(0x88BE, struct.pack(">HHI", 0x1000, 0x0007, 0) + frame, seq=1)


def erspan3(frame):
    # version 2, VLAN, COS/BSO/T/session, timestamp, SGT, P/FT/HW ID/D/Gra/O (O set),
    # then the 8-byte platform-specific subheader.
    hdr = struct.pack(">HHIHH", 0x2000, 0x0007, 0x12345678, 0, 0x0001) + bytes(8)
    return gre(0x22EB, hdr + frame, seq=2)


def pptp(ppp_frame):
    # flags: K, S, A, version 1; protocol PPP; payload length; call ID; seq; ack
    return struct.pack(">HHHHII", 0x3081, 0x880B, len(ppp_frame), 0x4000, 5, 4) + ppp_frame


def vxlan(frame):
    return struct.pack(">BBHI", 0x08, 0, 0, 0x00123400) + frame


def geneve(proto, payload):
    option = struct.pack(">HBB", 0x0102, 0x80, 1) + b"\x01\x02\x03\x04"  # class, type, 1 word
    return struct.pack(">BBHI", len(option) // 4, 0, proto, 0x00ABCD00) + option + payload


def gtpu(ip_pkt, extension):
    if extension:
        # E flag; seq, N-PDU, next = PDU session container (0x85), 1 word, then none.
        body = struct.pack(">HBB", 0, 0, 0x85) + bytes([1, 0x10, 0x09, 0x00]) + ip_pkt
        return struct.pack(">BBHI", 0x34, 0xFF, len(body), 0x1234) + body
    return struct.pack(">BBHI", 0x30, 0xFF, len(ip_pkt), 0x1234) + ip_pkt


def teredo(ip6_pkt, origin):
    if origin:
        # origin indication: type 0, obfuscated port and address
        return struct.pack(">HH", 0, 0xFFFF ^ 40000) + bytes([0xFF ^ b for b in (198, 51, 100, 7)]) + ip6_pkt
    return ip6_pkt


def l2tpv2(ppp_frame):
    # flags: L (length present), version 2; length (whole message), tunnel ID, session ID
    return struct.pack(">HHHH", 0x4002, 8 + len(ppp_frame), 0x1234, 0x0001) + ppp_frame


def l2tpv3_ip(frame):
    return struct.pack(">I", 0x00001234) + b"\xc0\x0c\x1e\x00" + frame  # session, 4-byte cookie


def nest_ipip(pkt, depth):
    for _ in range(depth):
        pkt = ipv4(OUTER_A, OUTER_B, 4, pkt)
    return ether(0x0800, pkt)


TUNNELS = [
    ("gre", [outer4(47, gre(0x0800, Q4)), outer4(47, gre(0x86DD, R6, key=7, seq=9))]),
    ("gre-teb", [outer4(47, gre(0x6558, ether_ip(4, Q4))), outer4(47, gre(0x6558, ether_ip(6, R6), key=1))]),
    ("erspan", [outer4(47, erspan2(ether_ip(4, Q4))), outer4(47, erspan3(ether_ip(6, R6)))]),
    ("pptp", [outer4(47, pptp(ppp(4, Q4))), outer4(47, pptp(b"\x57" + R6))]),
    ("vxlan", [outer_udp(51234, 4789, vxlan(ether_ip(4, Q4))), outer_udp(51235, 4789, vxlan(ether_ip(6, R6)))]),
    (
        "geneve",
        [outer_udp(51234, 6081, geneve(0x6558, ether_ip(4, Q4))), outer_udp(51235, 6081, geneve(0x86DD, R6))],
    ),
    (
        "gtpu",
        [
            outer_udp(2152, 2152, gtpu(Q4, True)),
            ether(0x86DD, ipv6(OUTER6_A, OUTER6_B, 17, udp(2152, 2152, gtpu(R6, False)))),
        ],
    ),
    ("ipip", [outer4(4, Q4), outer4(41, R6)]),
    ("teredo", [outer_udp(40001, 3544, teredo(Q6, True)), outer_udp(3544, 40001, teredo(R6, False))]),
    ("l2tp", [outer_udp(1701, 1701, l2tpv2(ppp(4, Q4))), outer4(115, l2tpv3_ip(ether_ip(6, R6)))]),
    # IP-in-IP around GRE around VXLAN: three tunnels; then the response (IPv4) inside
    # five IP-in-IP headers, one too many (skipped), and inside four (found).
    (
        "nested",
        [
            ether(
                0x0800,
                ipv4(OUTER_A, OUTER_B, 4, ipv4(OUTER_A, OUTER_B, 47, gre(0x0800, ipv4(OUTER_A, OUTER_B, 17, udp(5, 4789, vxlan(ether_ip(4, Q4))))))),
            ),
            nest_ipip(R4, 5),
            nest_ipip(R4, 4),
        ],
    ),
]


# ------------------------------------------------------------------ --any-port
def anyport_frames():
    a = ether_ip(4, ipv4(C4, S4, 17, udp(40000, 5300, QUERY)))
    b = ether_ip(4, ipv4(S4, C4, 17, udp(5300, 40000, RESPONSE)))
    noise = ether_ip(4, ipv4(C4, S4, 17, udp(40001, 8080, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")))
    lq = struct.pack(">H", len(QUERY)) + QUERY
    lr = struct.pack(">H", len(RESPONSE)) + RESPONSE
    t = lambda src, dst, sp, dp, seq, fl, pl: ether_ip(4, ipv4(src, dst, 6, tcp(sp, dp, seq, fl, pl)))
    return [
        a,
        noise,
        b,
        t(C4, S4, 40002, 1053, 1000, 0x02, b""),
        t(S4, C4, 1053, 40002, 5000, 0x12, b""),
        t(C4, S4, 40002, 1053, 1001, 0x18, lq),
        t(S4, C4, 1053, 40002, 5001, 0x18, lr),
    ]


# ------------------------------------------------------------------ writing
def write_pcap(name, linktype, frames):
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f
    with open(os.path.join(OUT, name + ".pcap"), "wb") as fh:
        fh.write(out)


# Frames tshark (4.0) cannot take to DNS on its own: it has no pcap link type 219, and
# it decodes L2TPv3 payloads only once it has seen the session set up.
TSHARK_BLIND = {("mpls-raw", 1), ("mpls-raw", 2), ("tunnel-l2tp", 2)}


def check_with_tshark():
    """Cross-checks the files with an independent decoder: every frame that carries a
    message must reach DNS in tshark, with the message's ID."""
    import subprocess

    want_id = "0x%04x" % struct.unpack(">H", QUERY[:2])[0]
    bad = []
    for name in sorted(f[:-5] for f in os.listdir(OUT) if f.endswith(".pcap")):
        if name == "anyport":
            continue
        out = subprocess.run(
            ["tshark", "-r", os.path.join(OUT, name + ".pcap"), "-T", "fields", "-e", "frame.protocols", "-e", "dns.id"],
            capture_output=True,
            text=True,
        ).stdout
        for n, line in enumerate(out.splitlines(), 1):
            reached = line.split("\t")[0].endswith(":dns") and want_id in line
            if not reached and (name, n) not in TSHARK_BLIND:
                bad.append(f"{name} frame {n}: {line}")
    if bad:
        sys.exit("linktypes.py: tshark disagrees:\n  " + "\n  ".join(bad))
    print("linktypes.py: tshark reaches DNS in every frame it can decode")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, linktype, wrap in LINKS:
        write_pcap(name, linktype, [wrap(v, p) for v, p in PAIR])
    for name, frames in TUNNELS:
        write_pcap("tunnel-" + name, 1, frames)
    write_pcap("anyport", 1, anyport_frames())
    print(f"linktypes.py: wrote {len(LINKS) + len(TUNNELS) + 1} captures to {OUT}")
    if "--check" in sys.argv:
        check_with_tshark()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write FILE.expect.jsonl for FILE.pcap from tshark's decoding.

usage: expect.py FILE.pcap [FILE.pcap ...]

One JSON object per DNS message, in capture order; the format is described
in testdata/README.md.  The decoding comes from tshark (-T json).  As a
safety net the same pcap is also parsed by a small stdlib-only reader in this
file (pcap + IPv4/IPv6 + UDP/TCP reassembly + DNS wire format); if the two
disagree on the list of messages, a header field, a record's name, type,
class or TTL, an EDNS option, or the rdata of the types that have a canonical
form, the script fails instead of writing a doubtful file.

Python 3 stdlib only.
"""
import ipaddress
import json
import os
import struct
import subprocess
import sys

TSHARK_ARGS = [
    "-T", "json",
    "-o", "tcp.desegment_tcp_streams:TRUE",
    "-o", "tcp.analyze_sequence_numbers:TRUE",
    "-d", "udp.port==53,dns",
    "-d", "tcp.port==53,dns",
]

SECTIONS = (
    ("answers", "Answers"),
    ("authority", "Authoritative nameservers"),
    ("additional", "Additional records"),
)

T_A, T_NS, T_CNAME, T_SOA, T_PTR, T_MX, T_TXT = 1, 2, 5, 6, 12, 15, 16
T_AAAA, T_SRV, T_DNAME, T_OPT, T_CAA = 28, 33, 39, 41, 257


# --------------------------------------------------------------------------
# tshark side
# --------------------------------------------------------------------------
class Obj(list):
    """A JSON object kept as an ordered list of (key, value) pairs, so that
    duplicate keys (tshark repeats e.g. "dns" and "dns.txt") survive."""

    def all(self, key):
        return [v for k, v in self if k == key]

    def first(self, key, default=None):
        for k, v in self:
            if k == key:
                return v
        return default

    def find(self, key):
        """First value of key anywhere in this subtree (depth first)."""
        for k, v in self:
            if k == key:
                return v
            if isinstance(v, Obj):
                r = v.find(key)
                if r is not None:
                    return r
        return None


def norm_name(s):
    if s is None:
        return None
    if s in ("<Root>", ".", ""):
        return "."
    s = s.lower()
    return s if s.endswith(".") else s + "."


def hexstr(colon_hex):
    return (colon_hex or "").replace(":", "").lower()


def ts_rdata(t, rr):
    g = rr.first
    if t == T_A:
        return g("dns.a")
    if t == T_AAAA:
        return ipaddress.IPv6Address(g("dns.aaaa")).compressed
    if t == T_NS:
        return norm_name(g("dns.ns"))
    if t == T_CNAME:
        return norm_name(g("dns.cname"))
    if t == T_PTR:
        return norm_name(g("dns.ptr.domain_name"))
    if t == T_DNAME:
        return norm_name(g("dns.dname"))
    if t == T_MX:
        return "%d %s" % (int(g("dns.mx.preference")), norm_name(g("dns.mx.mail_exchange")))
    if t == T_SRV:
        return "%d %d %d %s" % (int(g("dns.srv.priority")), int(g("dns.srv.weight")),
                                int(g("dns.srv.port")), norm_name(g("dns.srv.target")))
    if t == T_SOA:
        return "%s %s %d %d %d %d %d" % (
            norm_name(g("dns.soa.mname")), norm_name(g("dns.soa.rname")),
            int(g("dns.soa.serial_number")), int(g("dns.soa.refresh_interval")),
            int(g("dns.soa.retry_interval")), int(g("dns.soa.expire_limit")),
            int(g("dns.soa.minimum_ttl")))
    if t == T_TXT:
        return list(rr.all("dns.txt"))
    if t == T_CAA:
        return "%d %s %s" % (int(g("dns.caa.flags"), 0), rr.find("dns.caa.tag"),
                             rr.find("dns.caa.value"))
    return None


def summary_name(summary):
    # "<owner>: type X, class Y..." -- used when tshark splits the owner
    # (SRV: dns.srv.service/proto/name) or omits dns.resp.name.
    i = summary.find(": type ")
    return summary[:i] if i >= 0 else None


def ts_rr(summary, rr):
    t = int(rr.first("dns.resp.type"))  # first: NSEC bitmaps repeat dns.resp.type
    name = rr.first("dns.resp.name")
    if name is None:
        name = summary_name(summary)
    name = norm_name(name)
    if t == T_OPT:
        udp = int(rr.first("dns.rr.udp_payload_size"))
        ext = int(rr.first("dns.resp.ext_rcode"), 0)
        ver = int(rr.first("dns.resp.edns0_version"))
        z = int(rr.first("dns.resp.z"), 0)  # 16 bits: DO flag + the rest of Z
        ttl = (ext << 24) | (ver << 16) | z
        opts = []
        for o in rr.all("dns.opt"):
            opts.append([int(o.first("dns.opt.code")), hexstr(o.first("dns.opt.data"))])
        edns = {"udp_size": udp, "ext_rcode": ext, "version": ver,
                "do": (z >> 15) & 1, "options": opts}
        return [name, ttl, t, udp, None], edns
    cls = int(rr.first("dns.resp.class"), 0)
    ttl = int(rr.first("dns.resp.ttl"))
    return [name, ttl, t, cls, ts_rdata(t, rr)], None


def ts_message(frame, transport, dns):
    obj = {
        "frame": frame,
        "transport": transport,
        "id": int(dns.first("dns.id"), 16),
        "flags": int(dns.first("dns.flags"), 16),
        "qdcount": int(dns.first("dns.count.queries")),
        "ancount": int(dns.first("dns.count.answers")),
        "nscount": int(dns.first("dns.count.auth_rr")),
        "arcount": int(dns.first("dns.count.add_rr")),
        "questions": [],
        "answers": [],
        "authority": [],
        "additional": [],
        "edns": None,
    }
    for qs in dns.all("Queries"):
        for _summary, q in qs:
            obj["questions"].append([norm_name(q.first("dns.qry.name")),
                                     int(q.first("dns.qry.type")),
                                     int(q.first("dns.qry.class"), 0)])
    for key, label in SECTIONS:
        for sec in dns.all(label):
            for summary, rr in sec:
                rec, edns = ts_rr(summary, rr)
                obj[key].append(rec)
                if edns is not None and obj["edns"] is None and key == "additional":
                    obj["edns"] = edns
    return obj


def from_tshark(path):
    out = subprocess.run(["tshark", "-r", path] + TSHARK_ARGS, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    packets = json.loads(out, object_pairs_hook=Obj)
    msgs = []
    for pkt in packets:
        layers = pkt.first("_source").first("layers")
        frame = int(layers.first("frame").first("frame.number"))
        keys = [k for k, _ in layers]
        transport = "tcp" if "tcp" in keys else "udp" if "udp" in keys else None
        dns_layers = []
        for v in layers.all("dns"):
            # tshark repeats the "dns" key per message; with
            # --no-duplicate-keys it would be a list instead.  Accept both.
            if isinstance(v, Obj):
                dns_layers.append(v)
            else:
                dns_layers.extend(v)
        for dns in dns_layers:
            msgs.append(ts_message(frame, transport, dns))
    return msgs


# --------------------------------------------------------------------------
# independent stdlib reader (cross-check only)
# --------------------------------------------------------------------------
def pcap_frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError("not a classic pcap file")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    off, n = 24, 0
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        n += 1
        yield n, linktype, data[off:off + incl]
        off += incl


def l3(linktype, pkt):
    if linktype == 1:  # Ethernet
        etype = struct.unpack("!H", pkt[12:14])[0]
        pkt = pkt[14:]
    elif linktype == 113:  # Linux cooked
        etype = struct.unpack("!H", pkt[14:16])[0]
        pkt = pkt[16:]
    elif linktype == 0:  # BSD loopback
        etype = {2: 0x0800}.get(struct.unpack("=I", pkt[:4])[0], 0x86DD)
        pkt = pkt[4:]
    else:
        raise ValueError("unsupported link type %d" % linktype)
    if etype == 0x0800:
        ihl = (pkt[0] & 15) * 4
        total = struct.unpack("!H", pkt[2:4])[0]
        return pkt[9], pkt[12:16], pkt[16:20], pkt[ihl:total]
    if etype == 0x86DD:
        plen = struct.unpack("!H", pkt[4:6])[0]
        return pkt[6], pkt[8:24], pkt[24:40], pkt[40:40 + plen]
    return None


def raw_messages(path):
    """[(frame, transport, bytes)] for every DNS message, TCP messages at the
    frame that carried their last byte."""
    out = []
    streams = {}  # (src, sport, dst, dport) -> [next_seq, buffer]
    for n, lt, pkt in pcap_frames(path):
        r = l3(lt, pkt)
        if r is None:
            continue
        proto, src, dst, seg = r
        if proto == 17:
            sport, dport = struct.unpack("!HH", seg[:4])
            if 53 in (sport, dport):
                out.append((n, "udp", seg[8:]))
        elif proto == 6:
            sport, dport, seq = struct.unpack("!HHI", seg[:8])
            if 53 not in (sport, dport):
                continue
            doff = (seg[12] >> 4) * 4
            flags = seg[13]
            payload = seg[doff:]
            key = (src, sport, dst, dport)
            if flags & 0x02:  # SYN
                streams[key] = [(seq + 1) & 0xFFFFFFFF, b""]
                continue
            st = streams.get(key)
            if st is None or not payload:
                continue
            rel = (seq - st[0]) & 0xFFFFFFFF
            if rel >= 0x80000000:  # (partial) retransmission
                skip = (st[0] - seq) & 0xFFFFFFFF
                if skip >= len(payload):
                    continue
                payload, rel = payload[skip:], 0
            if rel != 0:
                raise ValueError("frame %d: out-of-order TCP segment, not handled" % n)
            st[0] = (st[0] + len(payload)) & 0xFFFFFFFF
            st[1] += payload
            while len(st[1]) >= 2:
                ln = struct.unpack("!H", st[1][:2])[0]
                if len(st[1]) < 2 + ln:
                    break
                out.append((n, "tcp", st[1][2:2 + ln]))
                st[1] = st[1][2 + ln:]
    return out


def wire_name(msg, off):
    labels, jumps, end = [], 0, None
    while True:
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((ln & 0x3F) << 8) | msg[off + 1]
            jumps += 1
            if jumps > 64:
                raise ValueError("compression loop")
            continue
        off += 1
        if ln == 0:
            break
        labels.append(msg[off:off + ln].decode("ascii").lower())
        off += ln
    return (".".join(labels) + ".") if labels else ".", (end if end is not None else off)


def raw_rdata(msg, t, off, rdlen):
    rd = msg[off:off + rdlen]
    if t == T_A:
        return str(ipaddress.IPv4Address(rd))
    if t == T_AAAA:
        return ipaddress.IPv6Address(rd).compressed
    if t in (T_NS, T_CNAME, T_PTR, T_DNAME):
        return wire_name(msg, off)[0]
    if t == T_MX:
        return "%d %s" % (struct.unpack("!H", rd[:2])[0], wire_name(msg, off + 2)[0])
    if t == T_SRV:
        p, w, port = struct.unpack("!HHH", rd[:6])
        return "%d %d %d %s" % (p, w, port, wire_name(msg, off + 6)[0])
    if t == T_SOA:
        m, o = wire_name(msg, off)
        rn, o = wire_name(msg, o)
        return "%s %s %d %d %d %d %d" % ((m, rn) + struct.unpack("!IIIII", msg[o:o + 20]))
    if t == T_TXT:
        strings, i = [], 0
        while i < len(rd):
            strings.append(rd[i + 1:i + 1 + rd[i]].decode("ascii"))
            i += 1 + rd[i]
        return strings
    if t == T_CAA:
        tl = rd[1]
        return "%d %s %s" % (rd[0], rd[2:2 + tl].decode("ascii"), rd[2 + tl:].decode("ascii"))
    return None


def raw_parse(frame, transport, msg):
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    obj = {"frame": frame, "transport": transport, "id": qid, "flags": flags,
           "qdcount": qd, "ancount": an, "nscount": ns, "arcount": ar,
           "questions": [], "answers": [], "authority": [], "additional": [],
           "edns": None}
    off = 12
    for _ in range(qd):
        name, off = wire_name(msg, off)
        t, c = struct.unpack("!HH", msg[off:off + 4])
        off += 4
        obj["questions"].append([name, t, c])
    for key, count in (("answers", an), ("authority", ns), ("additional", ar)):
        for _ in range(count):
            name, off = wire_name(msg, off)
            t, c, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            if t == T_OPT:
                obj[key].append([name, ttl, t, c, None])
                opts, i = [], off
                while i < off + rdlen:
                    code, olen = struct.unpack("!HH", msg[i:i + 4])
                    opts.append([code, msg[i + 4:i + 4 + olen].hex()])
                    i += 4 + olen
                if obj["edns"] is None and key == "additional":
                    obj["edns"] = {"udp_size": c, "ext_rcode": ttl >> 24,
                                   "version": (ttl >> 16) & 0xFF,
                                   "do": (ttl >> 15) & 1, "options": opts}
            else:
                obj[key].append([name, ttl, t, c, raw_rdata(msg, t, off, rdlen)])
            off += rdlen
    return obj


def cross_check(path, msgs):
    raw = [raw_parse(*m) for m in raw_messages(path)]
    if len(raw) != len(msgs):
        raise SystemExit("%s: tshark gave %d DNS messages, raw reader %d"
                         % (path, len(msgs), len(raw)))
    for i, (a, b) in enumerate(zip(msgs, raw)):
        if a != b:
            for k in a:
                if a[k] != b[k]:
                    raise SystemExit("%s: message %d (frame %d) differs in %r:\n tshark: %r\n raw:    %r"
                                     % (path, i, a["frame"], k, a[k], b[k]))


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    for path in argv[1:]:
        msgs = from_tshark(path)
        cross_check(path, msgs)
        base = path[:-5] if path.endswith(".pcap") else path
        tmp = base + ".expect.jsonl.tmp"
        with open(tmp, "w") as f:
            for m in msgs:
                f.write(json.dumps(m, separators=(",", ":")) + "\n")
        os.replace(tmp, base + ".expect.jsonl")
        print("%s: %d DNS messages" % (os.path.basename(base + ".expect.jsonl"), len(msgs)))


if __name__ == "__main__":
    main(sys.argv)

#!/usr/bin/env python3
"""Small DNS-over-TCP client used by regen.sh to produce framing cases that
dig and kdig do not: several queries pipelined in one TCP segment, and
queries split over several segments (length prefix alone, a message cut in
the middle).  Python 3 stdlib only.  Talks only to the address it is given,
which regen.sh always sets to a loopback address.

usage: tcp_pipeline.py SERVER_IP [PORT]
"""
import random
import socket
import struct
import sys
import time

TYPES = {"A": 1, "NS": 2, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\x00"


def query(name, qtype, edns=True):
    qid = random.randrange(0, 0x10000)
    # RD=0: these go to the authoritative server
    msg = struct.pack("!HHHHHH", qid, 0x0000, 1, 0, 0, 1 if edns else 0)
    msg += encode_name(name) + struct.pack("!HH", TYPES[qtype], 1)
    if edns:
        # OPT: root name, type 41, udp size 1232, ttl 0, no options
        msg += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return struct.pack("!H", len(msg)) + msg


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed by server")
        buf += chunk
    return buf


def read_responses(sock, count):
    for _ in range(count):
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
        recv_exact(sock, length)


def connect(server, port):
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((server, port))
    return s


def main():
    server = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 53
    if not (server.startswith("127.") or server == "::1"):
        sys.exit("refusing non-loopback server " + server)

    # 1. three queries pipelined in a single send() (one TCP segment)
    with connect(server, port) as s:
        s.sendall(query("www.dnsfwd.test", "A")
                  + query("dnsfwd.test", "MX")
                  + query("multi.dnsfwd.test", "TXT", edns=False))
        read_responses(s, 3)

    # 2. length prefix in one segment, message in the next;
    #    then a message cut in the middle of its question
    with connect(server, port) as s:
        q = query("dnsfwd.test", "SOA")
        s.sendall(q[:2])
        time.sleep(0.05)
        s.sendall(q[2:])
        read_responses(s, 1)
        q = query("_sip._udp.dnsfwd.test", "SRV")
        s.sendall(q[:9])
        time.sleep(0.05)
        s.sendall(q[9:])
        read_responses(s, 1)

    # 3. the end of one query and the start of the next in the same segment
    with connect(server, port) as s:
        q1 = query("bigone.dnsfwd.test", "TXT")
        q2 = query("www.dnsfwd.test", "AAAA")
        both = q1 + q2
        cut = len(q1) + 7
        s.sendall(both[:cut])
        time.sleep(0.05)
        s.sendall(both[cut:])
        read_responses(s, 2)


if __name__ == "__main__":
    main()

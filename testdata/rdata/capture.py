#!/usr/bin/env python3
"""Runs dig against knotd through a recording proxy and writes, for each dig run, the
DNS messages it exchanged (wire bytes) next to what dig printed. Used by regen.sh.

usage: capture.py KNOT_PORT PROXY_PORT OUT.jsonl

Each output line: {"cmd": [...dig args...], "messages": [{"dir": "query"|"response",
"transport": "udp"|"tcp", "hex": "..."}], "dig": "<dig's stdout>"}.
Only the Python standard library is used.
"""
import json
import socket
import struct
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
LOCK = threading.Lock()
RECORDED = []


def record(direction, transport, data):
    with LOCK:
        RECORDED.append({"dir": direction, "transport": transport, "hex": data.hex()})


def udp_proxy(listen, upstream):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, listen))
    while True:
        query, client = sock.recvfrom(65535)
        record("query", "udp", query)
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.settimeout(3)
        up.sendto(query, (HOST, upstream))
        try:
            answer, _ = up.recvfrom(65535)
        except socket.timeout:
            up.close()
            continue
        up.close()
        record("response", "udp", answer)
        sock.sendto(answer, client)


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def pipe(src, dst, direction):
    """Relays 2-byte-length-framed messages (RFC 1035 4.2.2), recording each."""
    try:
        while True:
            head = read_exact(src, 2)
            if head is None:
                break
            body = read_exact(src, struct.unpack("!H", head)[0])
            if body is None:
                break
            record(direction, "tcp", body)
            dst.sendall(head + body)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def tcp_proxy(listen, upstream):
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, listen))
    lsock.listen(8)
    while True:
        client, _ = lsock.accept()
        up = socket.create_connection((HOST, upstream), timeout=5)
        threading.Thread(target=pipe, args=(client, up, "query"), daemon=True).start()
        threading.Thread(target=pipe, args=(up, client, "response"), daemon=True).start()


# Records: one zone transfer holds every record of rdata.test.zone (NSEC3 records
# included, which no ordinary query returns). Single queries add answers where knotd
# compresses names inside RDATA (MB, MINFO, RP, AFSDB, RT, PX, NAPTR).
# EDNS: dig +qr prints the query it sent and the answer, both with their OPT
# PSEUDOSECTION; the options cover every code dig names, well-formed and malformed.
# (+padding is not used: dig prints the query before it adds the padding.)
Z = "rdata.test"
COMMANDS = [
    ["+nomulti", "+norec", "+nocookie", Z, "AXFR"],
] + [
    ["+nomulti", "+norec", "+nocookie", "+noall", "+answer", f"{name}.{Z}", rtype]
    for name, rtype in [
        ("mb", "MB"), ("minfo", "MINFO"), ("rp", "RP"), ("afsdb", "AFSDB"), ("rt", "RT"),
        ("px", "PX"), ("naptr", "NAPTR"), ("kx", "KX"), ("lp", "LP"), ("svcb", "SVCB"),
        ("https", "HTTPS"), ("rrsig", "RRSIG"), ("nsec", "NSEC"), ("loc", "LOC"),
    ]
] + [
    ["+qr", "+nomulti", "+norec"] + opts + [Z, "SOA"]
    for opts in [
        ["+nocookie", "+nsid", "+subnet=192.0.2.0/25", "+expire"],
        ["+nocookie", "+nsid", "+subnet=2001:db8::/56", "+dnssec"],
        ["+nocookie", "+dnssec", "+ednsflags=0x0100", "+bufsize=4096"],
        ["+nocookie", "+ednsopt=11:0064", "+ednsopt=12:0000", "+ednsopt=12",
         "+ednsopt=65001:c0ffee", "+ednsopt=13:0572646174610474657374" + "00",
         "+ednsopt=14:00010002", "+ednsopt=15:0012616263", "+ednsopt=15:0006",
         "+ednsopt=15:0019", "+ednsopt=15:00150a41", "+ednsopt=16:0001",
         "+ednsopt=5:080d0e", "+ednsopt=9", "+ednsopt=3:00ff41"],
        ["+nocookie", "+ednsopt=8:0001", "+ednsopt=9:000e10", "+ednsopt=11:006400",
         "+ednsopt=15:00", "+ednsopt=14:000102", "+ednsopt=17:00", "+ednsopt=10:01",
         "+ednsopt=8:00012100c000020001", "+ednsopt=8:00030000", "+ednsopt=8:00000000",
         "+ednsopt=8:00011700c00003"],
        ["+cookie=0102030405060708", "+nsid"],
        ["+tcp", "+nocookie", "+keepalive", "+ednsopt=9:00015180"],
    ]
]


def main():
    knot_port, proxy_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    for target in (udp_proxy, tcp_proxy):
        threading.Thread(target=target, args=(proxy_port, knot_port), daemon=True).start()
    time.sleep(0.3)
    lines = []
    for args in COMMANDS:
        with LOCK:
            RECORDED.clear()
        cmd = ["dig", "-p", str(proxy_port), "@" + HOST, "+tries=1", "+time=3"] + args
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        time.sleep(0.2)
        with LOCK:
            messages = list(RECORDED)
        if done.returncode != 0 or not any(m["dir"] == "response" for m in messages):
            sys.exit(f"capture.py: no answer to {' '.join(cmd)}:\n{done.stdout}{done.stderr}")
        lines.append(json.dumps({"cmd": args, "messages": messages, "dig": done.stdout}))
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"capture.py: {len(lines)} dig runs written to {out}")


if __name__ == "__main__":
    main()

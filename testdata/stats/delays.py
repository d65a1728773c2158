#!/usr/bin/env python3
"""A DNS server that answers after known delays, and a client that asks it: the traffic
of testdata/stats/delays.pcap (captured by delays.sh), for the response-time checks of
`dnsfwd decode --stats` (tests/decode_stats.rs).

Standard library only. Server on ADDR:53 (UDP and TCP), default 127.0.0.9. The name
says what the server does with a query:
  dNNN.delay.test.      answer (A 192.0.2.1) after NNN ms; d040 and d080 get NXDOMAIN
  retry.delay.test.     the client sends it twice (same socket, same ID, 30 ms apart);
                        answered once, 100 ms after the first
  drop.delay.test.      never answered
  twice.delay.test.     answered at once, and the same answer again 20 ms later
  other.delay.test.     answered after 10 ms with another question (other2.delay.test.)
Over TCP, one connection: d050 (A) and d150 (AAAA), pipelined, answered in turn.

So the capture holds 17 queries and 16 responses; 14 answers match a query (times 0,
20, 40, 50, 60, 80, 100, 100, 120, 140, 150, 160, 180, 200 ms, plus scheduling
jitter), 2 queries are never answered (drop, other), 2 answers match nothing (the
second of twice, the answer of other) and 1 query is retransmitted (retry).
"""
import socket
import struct
import sys
import threading
import time

ADDR = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.9"
ids = iter(range(0x1000, 0x2000))


def qname_wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype=1, qid=None):
    qid = next(ids) if qid is None else qid
    return qid, struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname_wire(name) + struct.pack(">HH", qtype, 1)


def parse_question(msg):
    """(id, name, qtype, end of question)."""
    qid = struct.unpack(">H", msg[:2])[0]
    i, labels = 12, []
    while msg[i]:
        labels.append(msg[i + 1:i + 1 + msg[i]].decode())
        i += 1 + msg[i]
    qtype = struct.unpack(">H", msg[i + 1:i + 3])[0]
    return qid, ".".join(labels) + ".", qtype, i + 5


def answer(msg, rename=None):
    qid, name, qtype, end = parse_question(msg)
    rcode = 3 if name in ("d040.delay.test.", "d080.delay.test.") else 0
    question = msg[12:end]
    if rename:
        question = qname_wire(rename) + struct.pack(">HH", qtype, 1)
    if rcode or qtype != 1:
        return struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, 0, 0, 0) + question
    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    return struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + rr


def delay_of(name):
    label = name.split(".")[0]
    if label.startswith("d") and label[1:].isdigit():
        return int(label[1:]) / 1000
    return {"retry.delay.test.": 0.1, "twice.delay.test.": 0.0, "other.delay.test.": 0.01}.get(name)


def udp_server(sock, stop):
    seen_retry = False
    while not stop.is_set():
        try:
            msg, peer = sock.recvfrom(4096)
        except socket.timeout:
            continue
        _, name, _, _ = parse_question(msg)
        if name == "retry.delay.test.":
            if seen_retry:
                continue
            seen_retry = True
        delay = delay_of(name)
        if delay is None:
            continue

        def reply(msg=msg, peer=peer, name=name, delay=delay):
            time.sleep(delay)
            rename = "other2.delay.test." if name == "other.delay.test." else None
            sock.sendto(answer(msg, rename), peer)
            if name == "twice.delay.test.":
                time.sleep(0.02)
                sock.sendto(answer(msg), peer)

        threading.Thread(target=reply, daemon=True).start()


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def tcp_server(lsock):
    conn, _ = lsock.accept()
    with conn:
        msgs = []
        for _ in range(2):
            n = struct.unpack(">H", recv_exact(conn, 2))[0]
            msgs.append((time.monotonic(), recv_exact(conn, n)))
        for t0, msg in msgs:
            _, name, _, _ = parse_question(msg)
            time.sleep(max(0.0, t0 + delay_of(name) - time.monotonic()))
            a = answer(msg)
            conn.sendall(struct.pack(">H", len(a)) + a)
        conn.recv(1)  # until the client closes


def main():
    stop = threading.Event()
    usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    usock.bind((ADDR, 53))
    usock.settimeout(0.1)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((ADDR, 53))
    lsock.listen(1)
    threading.Thread(target=udp_server, args=(usock, stop), daemon=True).start()
    tcp = threading.Thread(target=tcp_server, args=(lsock,), daemon=True)
    tcp.start()

    clients = []
    for ms in range(20, 201, 20):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.sendto(query("d%03d.delay.test." % ms)[1], (ADDR, 53))
        clients.append(c)
    retry = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _, q = query("retry.delay.test.")
    retry.sendto(q, (ADDR, 53))
    time.sleep(0.03)
    retry.sendto(q, (ADDR, 53))
    clients.append(retry)
    for name in ("drop.delay.test.", "twice.delay.test.", "other.delay.test."):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.sendto(query(name)[1], (ADDR, 53))
        clients.append(c)

    t = socket.create_connection((ADDR, 53))
    for name, qtype in (("d050.delay.test.", 1), ("d150.delay.test.", 28)):
        _, q = query(name, qtype)
        t.sendall(struct.pack(">H", len(q)) + q)
    for _ in range(2):
        n = struct.unpack(">H", recv_exact(t, 2))[0]
        recv_exact(t, n)
    t.close()
    tcp.join(timeout=2)
    time.sleep(0.4)  # every UDP answer is out
    stop.set()
    for c in clients:
        c.close()


if __name__ == "__main__":
    main()

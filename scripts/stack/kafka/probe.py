#!/usr/bin/env python3
"""Health probe for the native Kafka broker: send one Metadata request and
exit 0 when the response lists at least one broker.

Usage: probe.py [HOST [PORT [TIMEOUT_SECONDS]]]   (default 127.0.0.1 9092 3)
Standard library only. Uses Metadata v4 (non-flexible encoding), which Kafka
4.x still accepts (valid versions 0-13); with topics=null it asks for nothing
but the cluster, so it never triggers topic auto-creation.
"""
import socket
import struct
import sys

API_KEY_METADATA = 3
API_VERSION = 4
CORRELATION_ID = 0x5EED
CLIENT_ID = b"stack-probe"


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_string(data, off, nullable=False):
    (length,) = struct.unpack_from(">h", data, off)
    off += 2
    if length < 0:
        if not nullable:
            raise ValueError("null in non-nullable string")
        return None, off
    return data[off:off + length].decode("utf-8"), off + length


def metadata_brokers(host, port, timeout):
    # Request header v1: api_key, api_version, correlation_id, client_id
    header = struct.pack(">hhih", API_KEY_METADATA, API_VERSION, CORRELATION_ID, len(CLIENT_ID)) + CLIENT_ID
    # Metadata v4 body: topics = null (int32 -1), allow_auto_topic_creation = false
    body = struct.pack(">ib", -1, 0)
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        data = recv_exact(sock, size)
    # Response header v0: correlation_id; body v4: throttle_time_ms, brokers[...]
    corr, _throttle, n_brokers = struct.unpack_from(">iii", data, 0)
    if corr != CORRELATION_ID:
        raise ValueError("correlation id mismatch: %d" % corr)
    off = 12
    brokers = []
    for _ in range(max(n_brokers, 0)):
        (node_id,) = struct.unpack_from(">i", data, off)
        off += 4
        bhost, off = read_string(data, off)
        (bport,) = struct.unpack_from(">i", data, off)
        off += 4
        _rack, off = read_string(data, off, nullable=True)
        brokers.append((node_id, bhost, bport))
    return brokers


def main(argv):
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    port = int(argv[2]) if len(argv) > 2 else 9092
    timeout = float(argv[3]) if len(argv) > 3 else 3.0
    try:
        brokers = metadata_brokers(host, port, timeout)
    except (OSError, ValueError, struct.error) as exc:
        print("kafka probe %s:%d failed: %s" % (host, port, exc), file=sys.stderr)
        return 1
    if not brokers:
        print("kafka probe %s:%d: metadata lists no broker" % (host, port), file=sys.stderr)
        return 1
    for node_id, bhost, bport in brokers:
        print("broker %d at %s:%d" % (node_id, bhost, bport))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

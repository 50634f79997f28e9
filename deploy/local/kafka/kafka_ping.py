#!/usr/bin/env python3
"""Readiness probe for a Kafka broker, stdlib only (no JVM start).

    kafka_ping.py HOST PORT [--wait SECONDS] [--pid PID]

Sends ApiVersions (v0, which every broker keeps) and then a Metadata request
for no topics, and succeeds (exit 0) only when the broker lists at least one
live broker, i.e. it is registered and unfenced, not merely listening.
With --wait it polls until then (exit 1 on timeout); with --pid it gives up
early (exit 3) when that process dies.
Exit codes: 0 ready, 1 not ready / timeout, 2 something answers but is not
Kafka, 3 watched process died.
"""
import argparse
import os
import socket
import struct
import sys
import time

API_METADATA = 3
API_VERSIONS = 18


class NotKafka(Exception):
    pass


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def _request(sock, api_key, api_version, corr, body):
    client = b"lifecycle-ping"
    header = struct.pack(">hhih", api_key, api_version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    if size < 4 or size > 64 * 1024 * 1024:
        raise NotKafka("bad response size %d" % size)
    data = _recv_exact(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise NotKafka("correlation id mismatch")
    return data[4:]


def probe(host, port, timeout=5.0):
    """Return (ready: bool, detail: str). Raises NotKafka / OSError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        try:
            data = _request(sock, API_VERSIONS, 0, 1, b"")
        except (struct.error, ConnectionError) as exc:
            raise NotKafka("no ApiVersions answer: %s" % exc)
        err, n = struct.unpack(">hi", data[:6])
        if err != 0 or n <= 0 or n > 1000:
            raise NotKafka("ApiVersions error=%d count=%d" % (err, n))
        versions = {}
        off = 6
        for _ in range(n):
            key, lo, hi = struct.unpack(">hhh", data[off:off + 6])
            versions[key] = (lo, hi)
            off += 6
        if API_METADATA not in versions:
            raise NotKafka("no Metadata api")
        lo, hi = versions[API_METADATA]
        # Non-flexible Metadata versions 4..8 share one layout.
        choices = [v for v in range(4, 9) if lo <= v <= hi]
        if not choices:
            return True, "answers ApiVersions (Metadata v%d-v%d not probed)" % (lo, hi)
        ver = max(choices)
        body = struct.pack(">i", 0) + b"\x00"  # no topics, no auto-create
        if ver >= 8:
            body += b"\x00\x00"  # include_{cluster,topic}_authorized_operations
        data = _request(sock, API_METADATA, ver, 2, body)
        off = 4  # throttle_time_ms
        nbrokers = struct.unpack(">i", data[off:off + 4])[0]
        if nbrokers <= 0:
            return False, "no live broker yet"
        return True, "%d live broker(s)" % nbrokers


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--wait", type=float, default=0.0)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    deadline = time.monotonic() + args.wait
    detail = "not tried"
    while True:
        try:
            ready, detail = probe(args.host, args.port)
            if ready:
                if not args.quiet:
                    print("kafka %s:%d ready: %s" % (args.host, args.port, detail))
                return 0
        except NotKafka as exc:
            if not args.quiet:
                print("%s:%d answers but not as Kafka: %s" % (args.host, args.port, exc),
                      file=sys.stderr)
            if args.wait <= 0:
                return 2
            detail = str(exc)
        except (OSError, struct.error) as exc:
            detail = "%s: %s" % (type(exc).__name__, exc)
        if args.pid and not _alive(args.pid):
            if not args.quiet:
                print("process %d died" % args.pid, file=sys.stderr)
            return 3
        if time.monotonic() >= deadline:
            if not args.quiet and args.wait > 0:
                print("kafka %s:%d not ready after %.0fs (%s)"
                      % (args.host, args.port, args.wait, detail), file=sys.stderr)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())

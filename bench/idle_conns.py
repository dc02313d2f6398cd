#!/usr/bin/env python3
"""Hold N idle keep-alive HTTP/1.1 client connections to a proxy.

usage: idle_conns.py HOST PORT N

Opens N connections, sends one `GET /` on each and reads its whole response
(so every connection is a kept-alive connection between requests, as a
browser or an upstream pool leaves it), then prints `HELD <open> <failed>`
on stdout and keeps them open until a line (or EOF) arrives on stdin.
bench/peers.sh (MODE=idle) reads the proxy's RSS before and while they are
held. Standard library only.
"""
import resource
import socket
import sys


def read_response(s):
    """Reads one response with a Content-Length body; True when complete."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            return False
        body += chunk
    return True


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 100)), hard))
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: idle-conns\r\n\r\n".encode()
    held, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection((host, port), timeout=3)
            s.sendall(request)
            if read_response(s):
                held.append(s)
            else:
                failed += 1
                s.close()
        except OSError as e:
            failed += 1
            if failed == 1:
                print(f"first failure: {e}", file=sys.stderr)
    print(f"HELD {len(held)} {failed}", flush=True)
    sys.stdin.readline()
    # Still open? A proxy that dropped idle connections early would show here.
    alive = 0
    for s in held:
        s.setblocking(False)
        try:
            alive += s.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    print(f"still open at the end: {alive} of {len(held)}", file=sys.stderr)


if __name__ == "__main__":
    main()

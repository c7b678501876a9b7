"""Attacker agent: with a proxied API at hand, tries every other way off the machine.

Arguments: the base-URL variable, then host:port targets to connect to directly,
then an abstract Unix socket name. Prints one JSON line: what worked.
"""

import json
import os
import socket
import sys
import urllib.request

base_var, direct, internet, abstract = sys.argv[1:5]


def connects(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return True
    except OSError:
        return False


def abstract_connects(name: str) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("\0" + name)
        return True
    except OSError:
        return False
    finally:
        sock.close()


found = {"proxy": False}
try:
    with urllib.request.urlopen(os.environ[base_var] + "/echo", timeout=20) as response:
        found["proxy"] = response.status == 200
except OSError as exc:
    found["proxy_error"] = str(exc)
found["direct_upstream"] = connects(direct)
found["internet"] = connects(internet)
found["abstract_socket"] = abstract_connects(abstract)
print(json.dumps(found), flush=True)

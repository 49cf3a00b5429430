"""Read the server name (SNI) from a TLS ClientHello record without decrypting anything."""

from __future__ import annotations


def client_hello_sni(record: bytes) -> str | None:
    """The SNI host name in one TLS handshake record holding a ClientHello; None if absent or malformed."""
    try:
        if record[0] != 0x16 or record[5] != 0x01:
            return None
        p = 5 + 4  # record header, handshake header
        p += 2 + 32  # client version, random
        p += 1 + record[p]  # session id
        p += 2 + int.from_bytes(record[p : p + 2], "big")  # cipher suites
        p += 1 + record[p]  # compression methods
        end = p + 2 + int.from_bytes(record[p : p + 2], "big")
        p += 2
        while p + 4 <= end:
            ext_type = int.from_bytes(record[p : p + 2], "big")
            ext_len = int.from_bytes(record[p + 2 : p + 4], "big")
            body = record[p + 4 : p + 4 + ext_len]
            p += 4 + ext_len
            if ext_type != 0:
                continue
            q = 2  # server name list length
            while q + 3 <= len(body):
                name_type, n = body[q], int.from_bytes(body[q + 1 : q + 3], "big")
                if name_type == 0:
                    return body[q + 3 : q + 3 + n].decode("ascii")
                q += 3 + n
            return None
    except (IndexError, UnicodeDecodeError):
        return None
    return None

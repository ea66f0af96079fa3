"""Does anything answer DNS at an address? One query of our own over UDP, with a short timeout."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

PORT = 53
TIMEOUT = 1.0  # seconds: a resolver on the same host answers in milliseconds
QUESTION = b"\x09localhost\x00" + struct.pack("!HH", 1, 1)  # localhost. A IN: answered without an upstream


def query(identifier: int) -> bytes:
    """A standard query, recursion desired, for localhost's A record."""
    return struct.pack("!HHHHHH", identifier, 0x0100, 1, 0, 0, 0) + QUESTION


def is_answer(packet: bytes, identifier: int) -> bool:
    """A response to our query (any result code: even a refusal is an answer)."""
    if len(packet) < 12:
        return False
    got, flags = struct.unpack("!HH", packet[:4])
    return got == identifier and bool(flags & 0x8000)


def answers(address: str, *, port: int = PORT, timeout: float = TIMEOUT) -> bool:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    identifier = int.from_bytes(os.urandom(2), "big")
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout)
        try:
            udp.sendto(query(identifier), (address, port))
            while True:
                if is_answer(udp.recv(512), identifier):
                    return True
        except OSError:  # timeout, refused (ICMP port unreachable), no route
            return False

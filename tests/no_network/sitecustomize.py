"""Put on PYTHONPATH of a child process: any socket to a non-loopback address, and any DNS lookup, fails.

Attempts are also appended to the file named by DETECTOR_NETWORK_LOG, so that a test sees an attempt
even when the library that made it swallowed the error (as background telemetry threads do).
"""

import os
import socket

_connect = socket.socket.connect


def _note(what: str) -> None:
    log = os.environ.get("DETECTOR_NETWORK_LOG")
    if log:
        with open(log, "a") as f:
            f.write(what + "\n")


def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in {"localhost", "::1"} or "/" in host):
        _note(f"connect {address}")
        raise OSError(f"network blocked by tests/no_network: {address}")
    return _connect(self, address)


def _no_dns(host, *args, **kwargs):
    if host in {"localhost", "127.0.0.1", "::1"}:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", args[0] if args else 0))]
    _note(f"dns {host}")
    raise socket.gaierror(f"network blocked by tests/no_network: DNS lookup of {host}")


socket.socket.connect = _guarded
socket.getaddrinfo = _no_dns

"""Put on PYTHONPATH of a child process: any socket to a non-loopback address raises.

The CLI tests run `detector` with it, so a test fails if the app reaches for the network.
"""

import socket

_connect = socket.socket.connect


def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in {"localhost", "::1"} or "/" in host):
        raise OSError(f"network blocked by tests/no_network: {address}")
    return _connect(self, address)


def _no_dns(host, *args, **kwargs):
    raise socket.gaierror(f"network blocked by tests/no_network: DNS lookup of {host}")


socket.socket.connect = _guarded
socket.getaddrinfo = _no_dns

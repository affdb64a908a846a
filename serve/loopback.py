"""Keep a local service's replicas off every interface other than loopback (no Ray import at module level).

Ray Serve starts an inter-deployment gRPC server in every replica on `[::]:0`, all interfaces, with the address
fixed in its code (ray/serve/_private/replica.py), and starts it after the deployment's constructor. When the
service binds 127.0.0.1, the constructor calls `bind_internal_grpc_to_loopback` first, which moves that server to
127.0.0.1 in this replica's process.
"""

from __future__ import annotations

from typing import Any

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def bind_internal_grpc_to_loopback() -> None:
    """In a replica's process, before Serve starts its inter-deployment gRPC server: bind it to 127.0.0.1, not [::]."""
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "faceray_loopback", False):
        return

    def add_port_on_loopback(server: Any, address: str) -> int:
        return original(server, address.replace("[::]", "127.0.0.1", 1))

    add_port_on_loopback.faceray_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port_on_loopback

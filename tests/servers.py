"""Servers started by tests (and benchmarks): free TCP ports, a tritonserver and the HTTP gateway for
the length of a block."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vlserve.serving.launcher import GatewayServer, ManagedProcess, Ports, TritonServer


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports the OS reports free right now."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind((host, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextmanager
def running(server: ManagedProcess, ready_timeout: float) -> Iterator[ManagedProcess]:
    """``server`` started and ready inside the block, stopped after it."""
    server.start()
    try:
        server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()


@contextmanager
def running_triton(repo: Path, cache_dir: Path, env: dict[str, str] | None = None,
                   ready_timeout: float = 240) -> Iterator[TritonServer]:
    """tritonserver on ``repo`` (free ports), ready inside the block, stopped after it; ``env`` is
    added to its environment (and so to its models' stubs)."""
    server = TritonServer(repo, Ports(*free_ports(3)), cache_dir=cache_dir)
    server.install.env.update(env or {})
    with running(server, ready_timeout):
        yield server


@contextmanager
def running_gateway(triton_url: str, index_dir: Path, log_dir: Path, env: dict[str, str] | None = None,
                    ready_timeout: float = 120) -> Iterator[GatewayServer]:
    """The gateway (``vlserve gateway``, its own process) in front of Triton's gRPC ``triton_url``, on a
    free port; ``env`` holds its settings (``VLSERVE_*``)."""
    server = GatewayServer(free_ports(1)[0], triton_url, index_dir=index_dir, log_file=log_dir / "gateway.log",
                           env=env)
    with running(server, ready_timeout):
        yield server


@contextmanager
def running_milvus(base_dir: Path) -> Iterator[tuple[str, str]]:
    """A Milvus standalone server (the ``milvus`` package's own binaries, with its embedded etcd and
    local storage) with authentication on, for the block; yields (uri, token of the root user)."""
    import time

    from milvus import MilvusServer, MilvusServerConfig

    config = MilvusServerConfig()
    config.set("authorization_enabled", True)
    server = MilvusServer(config, wait_for_started=False)
    server.set_base_dir(str(base_dir))
    server.start()  # picks free ports from the defaults up (etcd's peer port 2380 is fixed)
    deadline = time.monotonic() + 120
    while True:  # ready when the gRPC port answers; a server that exited is an error at once
        if server.server_proc.poll() is not None:
            log = (base_dir / "logs" / "milvus-stdout.log").read_text(errors="replace")[-2000:]
            code = server.server_proc.returncode
            server.stop()
            raise RuntimeError(f"Milvus exited with {code}: ...{log}")
        try:
            socket.create_connection(("127.0.0.1", server.listen_port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise TimeoutError("Milvus did not answer within 120 s") from None
            time.sleep(0.5)
    try:
        yield f"http://127.0.0.1:{server.listen_port}", "root:Milvus"
    finally:
        server.stop()

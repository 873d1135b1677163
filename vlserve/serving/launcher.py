"""Find and run ``tritonserver`` on a model repository, and the HTTP gateway in front of it.

Where the binary comes from, in order: ``$VLSERVE_TRITONSERVER``; ``tritonserver`` on ``PATH`` or
``/opt/tritonserver`` (NVIDIA's NGC container, with its own backends); the build shipped inside the
``nvidia-pytriton`` wheel, whose python-backend library and stub are laid out in a cache folder,
with the wheel's bundled libraries and this interpreter's ``libpython`` on ``LD_LIBRARY_PATH``.
OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE`` unless set): several models share the cores.
The python backend's stub ignores ``PYTHONPATH``, so this interpreter's ``bin`` goes first on
``PATH``: the stub then imports vlserve and torch from the same environment as this process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from vlserve.errors import ModelUnavailable

NGC_ROOT = Path("/opt/tritonserver")


@dataclass
class TritonInstall:
    binary: Path
    backend_dir: Path
    env: dict[str, str]
    source: str


def _python_env(extra_lib: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libs = [p for p in [*extra_lib, libdir, env.get("LD_LIBRARY_PATH", "")] if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    # Each python-backend model is its own process with its own OpenMP pool, whose idle threads spin by
    # default; on a few cores the spinning pool of one model starves the next model's work (a text and an
    # image embedding at once took 50 ms instead of 14 on 2 cores). Sleeping idle threads: kept unless set.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _wheel_install(cache_dir: Path) -> TritonInstall | None:
    try:
        import pytriton
    except ImportError:
        return None
    root = Path(pytriton.__file__).parent / "tritonserver"
    binary = root / "bin" / "tritonserver"
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / \
        "triton_python_backend_stub"
    if not binary.is_file() or not stub.is_file():
        return None
    backends = cache_dir / "triton_backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src in (root / "backends" / "python" / "libtriton_python.so",
                root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        dst = python_dir / src.name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dst)
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    return TritonInstall(binary, backends, _python_env([str(libs)]), "nvidia-pytriton wheel")


def find_tritonserver(cache_dir: Path) -> TritonInstall:
    explicit = os.environ.get("VLSERVE_TRITONSERVER")
    candidates = [Path(explicit)] if explicit else []
    on_path = shutil.which("tritonserver")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(NGC_ROOT / "bin" / "tritonserver")
    for c in candidates:
        if c.is_file():
            backends = c.parent.parent / "backends"
            return TritonInstall(c, backends, _python_env([]), str(c))
    found = _wheel_install(cache_dir)
    if found is None:
        raise ModelUnavailable("no tritonserver found: run inside NVIDIA's Triton container, set VLSERVE_TRITONSERVER, "
                               "or install the nvidia-pytriton wheel (pip install nvidia-pytriton)")
    return found


@dataclass
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


class ManagedProcess:
    """A server child process in its own session, logging to a file: start, wait until it answers, stop
    (SIGTERM to its process group, then kill). Subclasses give the command, environment and probe."""

    name = "process"

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        return None

    def answers(self) -> bool:
        """Whether the server is up and ready (called until true by :meth:`wait_ready`)."""
        raise NotImplementedError

    def start(self) -> Self:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            env=self.environment(), start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The log's error lines (Triton's ``E...``), then its last ``lines`` lines."""
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln for ln in text if ln[:1] == "E" and ln[1:5].isdigit()][-10:]
        tail = [ln for ln in text[-lines:] if ln not in errors]
        return "\n".join([*errors, *(["..."] if errors else []), *tail])

    def wait_ready(self, timeout: float = 120.0) -> None:
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ModelUnavailable(f"{self.name} exited with code {self.process.returncode} before it was "
                                       f"ready; log tail ({self.log_file}):\n{self.log_tail()}")
            try:
                if self.answers():
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        self.stop()
        raise ModelUnavailable(f"{self.name} was not ready within {timeout:.0f}s; log tail ({self.log_file}):\n"
                               f"{self.log_tail()}")

    def stop(self, grace: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TritonServer(ManagedProcess):
    """A running ``tritonserver`` process."""

    name = "tritonserver"

    def __init__(self, repository: Path, ports: Ports, host: str = "127.0.0.1", cache_dir: Path | None = None,
                 log_file: Path | None = None, extra_args: list[str] | None = None) -> None:
        self.repository = repository.resolve()
        self.ports = ports
        self.host = host
        self.install = find_tritonserver(cache_dir or Path.home() / ".cache" / "vlserve")
        super().__init__(log_file or (self.install.backend_dir.parent / f"tritonserver-{ports.http}.log"))
        self.extra_args = extra_args or []
        self._probe: Any = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    def command(self) -> list[str]:
        return [str(self.install.binary), f"--model-repository={self.repository}",
                f"--backend-directory={self.install.backend_dir}",
                f"--http-address={self.host}", f"--http-port={self.ports.http}",
                f"--grpc-address={self.host}", f"--grpc-port={self.ports.grpc}",
                f"--metrics-address={self.host}", f"--metrics-port={self.ports.metrics}",
                "--exit-on-error=true", "--strict-readiness=true", *self.extra_args]

    def environment(self) -> dict[str, str]:
        return self.install.env

    def start(self) -> Self:
        if not self.repository.is_dir():
            raise ModelUnavailable(f"model repository not found: {self.repository}")
        missing = missing_backends(self.repository, self.install.backend_dir)
        if missing:
            name, models = next(iter(missing.items()))
            raise ModelUnavailable(
                f"this tritonserver ({self.install.source}) has no {name} backend, which {', '.join(models)} in "
                f"{self.repository} need" + (": build the repository with `vlserve repo build --runtime onnx "
                                             "--tower-backend python`, or run NVIDIA's Triton container"
                                             if name == "onnxruntime" else ""))
        return super().start()

    def answers(self) -> bool:
        import tritonclient.http as httpclient

        if self._probe is None:
            self._probe = httpclient.InferenceServerClient(self.http_url)
        return bool(self._probe.is_server_ready())


def missing_backends(repository: Path, backend_dir: Path) -> dict[str, list[str]]:
    """Backends named by the repository's configs that ``backend_dir`` lacks: {backend: [models]}."""
    import re

    missing: dict[str, list[str]] = {}
    for config in sorted(repository.glob("*/config.pbtxt")):
        found = re.search(r'^backend:\s*"([^"]+)"', config.read_text(), re.MULTILINE)
        if found and not (backend_dir / found.group(1)).is_dir():
            missing.setdefault(found.group(1), []).append(config.parent.name)
    return missing


class VLServeProcess(ManagedProcess):
    """A ``vlserve`` command serving HTTP on ``host:port`` as a child process of this interpreter; ``env``
    adds settings (``VLSERVE_*``) to its environment. Subclasses name the command, its upstream option
    (``upstream_flag``) and the path that answers 200 when it is up (``probe``)."""

    subcommand = ""
    upstream_flag = ""
    probe = "/healthz"
    extra_env: ClassVar[dict[str, str]] = {}

    def __init__(self, port: int, upstream: str, host: str = "127.0.0.1", index_dir: Path | None = None,
                 log_file: Path | None = None, env: dict[str, str] | None = None) -> None:
        cache = Path.home() / ".cache" / "vlserve"
        super().__init__(log_file or cache / f"{self.name}-{port}.log")
        self.host, self.port, self.upstream, self.index_dir = host, port, upstream, index_dir
        self.env = dict(env or {})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        index = ["--index-dir", str(self.index_dir)] if self.index_dir is not None else []
        return [sys.executable, "-m", "vlserve", self.subcommand, "--host", self.host, "--port", str(self.port),
                self.upstream_flag, self.upstream, *index]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env, **self.env}

    def answers(self) -> bool:
        with urllib.request.urlopen(f"{self.url}{self.probe}", timeout=2) as r:
            return bool(r.status == 200)


class GatewayServer(VLServeProcess):
    """The HTTP gateway (``vlserve gateway``) in front of a Triton gRPC endpoint (``upstream``)."""

    name = subcommand = "gateway"
    upstream_flag = "--triton-url"

    @property
    def triton_url(self) -> str:
        return self.upstream


class UIServer(VLServeProcess):
    """The web UI (``vlserve ui``), calling the gateway at ``upstream``; ``env`` may carry the UI's API key."""

    name = subcommand = "ui"
    upstream_flag = "--gateway-url"
    probe = "/config"
    extra_env: ClassVar[dict[str, str]] = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}

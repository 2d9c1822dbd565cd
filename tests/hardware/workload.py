"""A GPU workload for the hardware tests and bench/gpu_check.sh, driven over stdin and stdout.

    python -m tests.hardware.workload [--alloc-mib N] [--matmul] [--seconds S]

It runs on the device CUDA_VISIBLE_DEVICES names (a GPU or a MIG device UUID). It prints `ready`
once CUDA is initialised (its context allocated), then waits for a `go` line; then it allocates
N MiB and prints `allocated`, and with --matmul multiplies matrices in a loop and prints
`running`; it stops after S seconds or when stdin closes, and prints `done`. It only uses the
GPU: it never changes MIG mode, instances or clocks, and never resets anything. Needs torch;
without it (or without a CUDA device) it prints `error: ...` and exits 3.

`Workload` starts it in a child process and drives it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


class Workload:
    """This module in a child process on one device (CUDA_VISIBLE_DEVICES=visible), driven line by line."""

    def __init__(self, visible: str, *args: str, env: dict[str, str] | None = None) -> None:
        base = dict(os.environ if env is None else env)
        path = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hardware.workload", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**base, "CUDA_VISIBLE_DEVICES": visible, "PYTHONPATH": path},
            cwd=ROOT,
        )
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip())
        self._lines.put(None)  # it exited

    def wait_for(self, word: str, timeout: float) -> bool:
        """Read its output until it prints `word` (True), or it exits, errs or `timeout` passes (False)."""
        ends = time.monotonic() + timeout
        while (left := ends - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                return False
            self.seen.append(line)
            if line == word:
                return True
            if line.startswith("error:"):
                return False
        return False

    def expect(self, word: str, timeout: float = 90.0) -> None:
        """Like wait_for, failing with what it printed."""
        if not self.wait_for(word, timeout):
            raise AssertionError(f"workload did not print {word!r} within {timeout:g}s: {self.seen}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        """Close its stdin (it stops and frees the device) and wait for it."""
        if self.proc.poll() is None and self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):  # it may have exited already
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alloc-mib", type=int, default=0, help="MiB to allocate and hold")
    parser.add_argument("--matmul", action="store_true", help="keep the graphics engine busy with matmuls")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    args = parser.parse_args()
    try:
        import torch  # type: ignore[import-not-found]  # on the GPU image only
    except ImportError as exc:
        print(f"error: torch is not importable ({exc})", flush=True)
        return 3
    if not torch.cuda.is_available():
        print("error: torch sees no CUDA device", flush=True)
        return 3
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 0
    closed = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the driver closes our stdin
        closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    held = torch.empty(args.alloc_mib * 2**20, dtype=torch.uint8, device="cuda") if args.alloc_mib else None
    torch.cuda.synchronize()
    print("allocated", flush=True)
    ends = time.monotonic() + args.seconds
    if args.matmul:
        a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
        b = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
        print("running", flush=True)
        while time.monotonic() < ends and not closed.is_set():
            for _ in range(20):
                a = (a @ b).clamp_(-1.0, 1.0)
            torch.cuda.synchronize()
    else:
        closed.wait(max(ends - time.monotonic(), 0.0))
    del held
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a real batch command and SIGKILL it once it has finished some chunks (resume tests)."""

import os
import signal
import subprocess
import time


def kill_after(cmd, env, folder, pattern: str, n: int, timeout: float = 120.0) -> int:
    """Start ``cmd`` in its own process group, SIGKILL the group once ``folder`` holds at
    least ``n`` files matching ``pattern``; returns how many there were then.

    Fails the test when the command ends on its own before that (it would not test a kill).
    """
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(list(folder.glob(pattern))) >= n or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return len(list(folder.glob(pattern)))

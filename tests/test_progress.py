"""Progress bars (r2rank_jax/progress.py): drawn on a terminal, silent on a pipe or with R2RANK_PROGRESS=0."""
import fcntl
import os
import pty
import struct
import termios
import subprocess
import sys

SNIPPET = ("from r2rank_jax import progress\n"
           "with progress.bar(3, 'scoring demo', unit='user') as bar:\n"
           "    for _ in range(3): bar.update(1)\n")


def _stderr(on_terminal: bool, **env) -> str:
    env = {**os.environ, **env}
    if not on_terminal:
        out = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, env=env, timeout=60)
        return out.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # 24 rows x 100 columns
    proc = subprocess.Popen([sys.executable, "-c", SNIPPET], stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:          # EIO once the child has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_bar_on_a_terminal():
    text = _stderr(True)
    assert "scoring demo" in text and "/3 [" in text and "user/s" in text


def test_silent_on_a_pipe_and_when_turned_off():
    assert _stderr(False) == ""
    assert _stderr(True, R2RANK_PROGRESS="0") == ""

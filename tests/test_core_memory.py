"""vislab.core.memory: the glibc allocator tuning that training applies to its own process."""

import ctypes.util
import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_retain_freed_memory_applies_once_on_glibc():
    # In a child process: the setting is process-wide and must not leak into this test session.
    code = ("from vislab.core import memory; "
            "assert memory.retain_freed_memory() is True; "
            "assert memory.retain_freed_memory() is True; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert ctypes.util.find_library("c")

"""vislab.core.memory: the glibc allocator tuning that training applies to its own process."""

import platform
import subprocess
import sys

import pytest

# In a child process (the setting is process-wide and must not leak into this test session): an 8 MiB
# malloc is served by its own mmap (mallinfo2's hblks goes up) before the call, from the heap after it.
CHILD = """
import ctypes, ctypes.util
from vislab.core import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                   "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)

def mapped_blocks_added_by_malloc():
    before = libc.mallinfo2().hblks
    assert libc.malloc(8 << 20)
    return libc.mallinfo2().hblks - before

print(mapped_blocks_added_by_malloc(), memory.retain_freed_memory(), memory.retain_freed_memory(),
      mapped_blocks_added_by_malloc())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_retain_freed_memory_serves_large_blocks_from_the_heap_on_glibc():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True", "True", "0"]

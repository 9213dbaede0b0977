"""One sandbox per graded notebook: Debian's ``bubblewrap`` (``bwrap``) plus resource limits.

Inside, a submission sees: the system and this Python installation read-only (``/usr``, ``/etc``, the
interpreter's prefix, the installed vislab and the bundled MNIST), a private writable work folder mounted at
``/grading`` (its ``HOME`` and current folder), a private ``/tmp``, its own PID, network, IPC and UTS
namespaces (no network at all; every process it starts dies with the sandbox), and a minimal environment:
none of the grader's variables. It does not see the grader's files, other submissions, ``$HOME`` or other
processes. Limits: address space per process (memory), processes (run under a uid of its own when the grader is
root, so a fork bomb only exhausts its own count), file size and CPU time. Without ``bwrap`` (macOS, Windows,
no user namespaces) :func:`sandbox_problem` says why, and the grader refuses unless told ``--no-sandbox``.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INSIDE = "/grading"  # the work folder's path inside the sandbox
_UID_BASE = 100_000  # uids for sandboxes when the grader is root: above Debian's system and user ranges
MAX_JOBS = 64  # sandboxes at once per grader (each grader process has a block of uids of its own)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox (``vislab labs check`` flags of the same names)."""

    memory_mb: int = 4096  # address space per process (torch and the kernel need ~1.5 GiB of it)
    max_procs: int = 256  # processes and threads
    max_file_mb: int = 256  # largest file it may write
    cpu_seconds: int = 3600  # CPU time per process
    output_kb: int = 2048  # captured output kept per cell (a few figures fit)

    def check(self) -> None:
        from vislab.core.errors import VislabError

        for name, value in vars(self).items():
            if not (isinstance(value, int) and value > 0):
                raise VislabError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def _namespaces() -> list[str]:
    """bwrap's namespace flags. As root, no user namespace: the sandbox drops to a uid of its own (setpriv)
    after bwrap has mounted everything, so that RLIMIT_NPROC applies (the kernel exempts uid 0)."""
    if os.geteuid() == 0:
        return ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    return ["--unshare-all"]


def _drop_root(slot: int) -> list[str]:
    """The command prefix that leaves root for the slot's uid with no capabilities; nothing when not root."""
    if os.geteuid() != 0:
        return []
    uid = sandbox_uid(slot)
    return [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]


def sandbox_problem() -> str | None:
    """None when a sandbox can be made here, else why not (one line)."""
    if not sys.platform.startswith("linux"):
        return f"the grader's sandbox needs Linux with bubblewrap; this is {sys.platform}"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing: the sandbox cannot leave root"
    try:
        probe = subprocess.run([bwrap, "--ro-bind", "/", "/", "--size", "1048576", "--tmpfs", "/tmp",
                                *_namespaces(), "--die-with-parent",
                                *_drop_root(0), "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot run here: {exc}"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return f"bubblewrap cannot make a sandbox here (user namespaces disabled?): {last}"
    return None


def sandbox_uid(slot: int) -> int:
    """The uid the sandbox in ``slot`` runs as (its work folder must belong to it)."""
    # A block per grader process, so that two classes graded at once never share a process count.
    return _UID_BASE + (os.getpid() % 8192) * MAX_JOBS + slot if os.geteuid() == 0 else os.geteuid()


def _set_limits(limits: Limits) -> Callable[[], None]:
    def apply() -> None:
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb * mb, limits.max_file_mb * mb))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # RLIMIT_NPROC counts every process of the uid: exact for a sandbox's own uid (the grader is root);
        # for a normal user it is added to what the user already runs.
        nproc = limits.max_procs if os.geteuid() == 0 else _user_threads() + limits.max_procs
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    return apply


def _user_threads() -> int:
    uid, count = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
    return count


def _readonly_paths() -> list[str]:
    """What the sandbox needs to read: the system, this Python, the installed vislab, the bundled MNIST."""
    import vislab
    from vislab.mnist.data import default_data_dir

    paths = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/opt"]
    paths += [sys.base_prefix, sys.prefix, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    paths.append(str(Path(vislab.__file__).resolve().parent))
    paths.append(str(Path(default_data_dir()).resolve()))
    kept: list[str] = []
    for p in sorted({os.path.realpath(p) for p in paths if os.path.exists(p)}):
        if not any(p == k or p.startswith(k + "/") for k in kept):
            kept.append(p)
    return kept


def command(argv: list[str], workdir: Path, env: dict[str, str], slot: int, tmp_mb: int) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in a sandbox around ``workdir`` (seen as ``/grading``).

    Its ``/tmp`` is a RAM-backed tmpfs of at most ``tmp_mb`` MiB.
    """
    cmd = [shutil.which("bwrap") or "bwrap", *_namespaces(), "--die-with-parent", "--new-session",
           "--hostname", "sandbox", "--proc", "/proc", "--dev", "/dev",
           "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp"]
    readonly = _readonly_paths()
    # The folders above each mount are made here, traversable by the sandbox's uid (bwrap's default is 0700 as root).
    parents = sorted({str(parent) for p in [*readonly, INSIDE] for parent in Path(p).parents if str(parent) != "/"})
    for parent in parents:
        cmd += ["--perms", "0755", "--dir", parent]
    for path in readonly:
        cmd += ["--ro-bind", path, path]
    # Symlinked top-level folders (Debian's merged /usr: /bin -> usr/bin) are bound as their targets above.
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(link):
            cmd += ["--symlink", os.readlink(link), link]
    cmd += ["--bind", str(workdir), INSIDE, "--chdir", INSIDE, "--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--", *_drop_root(slot), *argv]


def minimal_env(extra: dict[str, str]) -> dict[str, str]:
    """The sandbox's whole environment: a PATH to this Python, HOME in the work folder, and ``extra``."""
    bindir = str(Path(sys.executable).parent)
    return {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "HOME": INSIDE, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "MPLCONFIGDIR": "/tmp/matplotlib", **extra}


def popen_kwargs(limits: Limits) -> dict:
    """Popen arguments: limits applied in the child (inherited by everything in the sandbox), a session of its own."""
    return {"preexec_fn": _set_limits(limits), "start_new_session": True}

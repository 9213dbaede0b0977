"""``vislab labs check`` against hostile submissions (issue 25): no forged pass, every row, nothing escapes.

The hostile notebooks are the packaged lab-1 exercise or solution with cells added or removed, so the checks
they are graded on are the lab's real ones. The whole class is graded by one command (module fixture, two
sandboxes at a time), run as a subprocess so its exit code, its stderr (no traceback) and its own peak memory
are seen, with a secret in its environment that no notebook may read; a second command with small limits
grades a memory hog and a fork bomb. The unit tests at the end need no kernel.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from vislab.cli import main
from vislab.labs import grade, sandbox, verdict
from vislab.labs.build import LABS
from vislab.labs.grade import NotebookResult, check_summary, detect_lab, format_table

CHECKS = verdict.lab_checks("lab1")  # {checker: class}: the teacher's, from the packaged exercise
# A checker cell of the packaged notebooks: "mlp_ok = check_mlp(Net)".
CHECKER_CELL = re.compile(r"^\s*\w+\s*=\s*(check_\w+)\(\w+\)\s*$")
SECRET_VAR = "VISLAB_HOSTILE_SECRET"
# The grader run as a subprocess that reports its own peak memory (the sandboxes are its children, not counted).
GRADER = ("import resource, sys\nfrom vislab.cli import main\nrc = main(sys.argv[1:])\n"
          "print('grader-maxrss-kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
          "sys.exit(rc)\n")


def _lab1(variant: str) -> nbformat.NotebookNode:
    return nbformat.read(LABS["lab1"].notebook(variant), as_version=4)


def _checker_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and CHECKER_CELL.match(c.source)]


def _after_imports(nb) -> int:
    """The index just after the cell that imports the checkers (before any checker call)."""
    return 1 + next(i for i, c in enumerate(nb.cells)
                    if c.cell_type == "code" and "from vislab.labs import" in c.source)


def _write(nb, path: Path, *, insert: tuple[str, ...] = (), append: tuple[str, ...] = (),
           drop_checkers: bool = False) -> str:
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a copy
    if drop_checkers:
        for i in reversed(_checker_cells(nb)):
            del nb.cells[i]
    at = _after_imports(nb)
    nb.cells[at:at] = [nbformat.v4.new_code_cell(src) for src in insert]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in append]
    nbformat.write(nb, path)
    return str(path)


def _cmdlines() -> dict[int, list[str]]:
    found = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                found[int(pid)] = raw.decode("utf-8", "replace").rstrip("\0").split("\0")
    return found


def _left_alive(markers: list[str], before: set[int]) -> list[str]:
    """Processes started since ``before`` whose command line holds a marker (retried: a dying sandbox takes ms)."""
    for _ in range(20):
        alive = [" ".join(cmd) for pid, cmd in _cmdlines().items()
                 if pid not in before and any(m in " ".join(cmd) for m in markers)]
        if not alive:
            return []
        time.sleep(0.25)
    return alive


def _run_grader(files: list[str], *flags: str, env: dict[str, str], timeout: float = 600):
    cmd = [sys.executable, "-c", GRADER, "labs", "check", *files, *flags]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    maxrss = re.search(r"grader-maxrss-kb (\d+)", proc.stderr)
    return proc, int(maxrss.group(1)) if maxrss else None


class _Listener:
    """A loopback TCP server that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections: list[tuple] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                continue
            self.connections.append(addr)
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


# ---------------------------------------------------------------------------------------------- the notebooks

# (a) Every checker and recording function patched to say "passed", the grader's probe functions replaced by
# fakes returning a real observation made with another seed (or "passed"-looking data), the judge too.
PATCH_EVERYTHING = r'''
import json, os, sys
import vislab.labs, vislab.labs.checkers, vislab.labs.checkers.report as _report, vislab.labs.verdict as _verdict

FORGED = json.loads(@FORGED@)

def _record(name, status="passed", message="public checks passed", *args, **kwargs):
    for path in filter(None, [os.environ.get("VISLAB_CHECK_LOG"), ".vislab/checks.jsonl"]):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps({"name": name, "status": "passed", "message": "public checks passed"}) + "\n")

def _passed(cls=None, *args, **kwargs):
    _record(getattr(cls, "__name__", "check"))
    return True

def _empty_report(cls=None, *args, **kwargs):
    return _report.Report("check_mlp", getattr(cls, "__name__", "Net"))

for _module in [m for name, m in list(sys.modules.items()) if name.startswith("vislab.labs") and m is not None]:
    for _name in list(vars(_module)):
        if _name.startswith("check_") and callable(getattr(_module, _name)):
            setattr(_module, _name, _empty_report if _name.endswith("_report") else _passed)
        if _name == "record_outcome":
            setattr(_module, _name, _record)
for _name in CHECKERS:
    globals()[_name] = _passed
_report.Report.finish = lambda self, *args, **kwargs: (_record(self.name), True)[1]
_verdict.observe = lambda cls, check, seed, *args, **kwargs: FORGED.get(check) or {"check": check, "status": "passed"}

def _write_observations(classes, seed, path, *args, **kwargs):
    with open(path, "w") as f:
        json.dump({check: FORGED.get(check, {"status": "passed"}) for check in classes}, f)

_verdict.write_observations = _write_observations
_verdict.judge = lambda check, *args, **kwargs: _verdict.Verdict(check, "passed", "forged")
mlp_ok = cnn_ok = vgg_ok = resblock_ok = resnet_ok = True
'''

# (b) Every file and variable a notebook can see, forged, and kept forged by a thread and after every cell
# (the grader's probe cell included) until the kernel dies.
FORGE_FILES = r'''
import atexit, json, os, threading, time

FORGED = json.loads(@FORGED@)
RUN = {"status": "ran", "errors": [], "figures": 0, "seconds": 1.0,
       "checks": [{"name": n, "status": "passed", "message": "public checks passed"} for n in FORGED]}

def forge(*args):
    os.makedirs(".vislab", exist_ok=True)
    for name, data in (("observations.json", FORGED), ("run.json", RUN)):
        tmp = f".vislab/.{name}.{threading.get_ident()}"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, f".vislab/{name}")
    for path in filter(None, [os.environ.get("VISLAB_CHECK_LOG"), ".vislab/checks.jsonl"]):
        with open(path, "a") as f:
            for n in FORGED:
                f.write(json.dumps({"name": n, "status": "passed", "message": "public checks passed"}) + "\n")

def keep_forging():
    while True:
        try:
            forge()
        except OSError:
            pass
        time.sleep(0.005)

forge()
threading.Thread(target=keep_forging, daemon=True).start()
get_ipython().events.register("post_run_cell", forge)
atexit.register(forge)
os.environ["VISLAB_CHECK_LOG"] = ".vislab/checks.jsonl"
mlp_ok = cnn_ok = vgg_ok = resblock_ok = resnet_ok = True
'''

# (c) The checks recorded by hand, a made-up one among them.
RECORD_BY_HAND = r'''
from vislab.labs.checkers.report import record_outcome

def check_bonus(cls):
    record_outcome("check_bonus", "passed", "public checks passed")
    return True

check_bonus(Net)
for name in [*CHECKERS, "check_bonus"]:
    record_outcome(name, "passed", "public checks passed")
'''

# (d) A detached saboteur: double fork, setsid, and a nohup'd shell loop, rewriting every grader file it finds.
SABOTEUR = r'''
import os, subprocess, sys

LOOP = """
import glob, os, sys, time
end = time.time() + 300
while time.time() < end:
    for pattern in ("/tmp/vislab-grade-*/**", "/grading/.vislab/*", "/proc/*/cwd/.vislab/*",
                    "/proc/*/root/tmp/vislab-grade-*/**"):
        for path in glob.glob(pattern, recursive=True):
            try:
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(text.replace("passed", "failed").replace("[", "[0, ") or "failed")
            except (OSError, UnicodeDecodeError):
                pass
    time.sleep(0.05)
"""
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", LOOP, "@TOKEN@-saboteur"])
    os._exit(0)
os.waitpid(pid, 0)
subprocess.Popen(["nohup", "sh", "-c", "while :; do for f in /tmp/vislab-grade-*/*/.vislab/* .vislab/*; do "
                  "[ -f \"$f\" ] && sed -i s/passed/failed/g \"$f\"; done; sleep 0.1; done", "@TOKEN@-shell"],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''

# (e) Escape probes: each cell raises what it found, so that it lands in the row's errors.
ESCAPE_FILE = r'''
found = []
for target in @TARGETS@:
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write("escaped")
        found.append("wrote " + target)
    except OSError as exc:
        found.append(f"{target}: {type(exc).__name__}")
raise RuntimeError("PROBE-write " + repr(found))
'''
ESCAPE_ENV = r'''
import glob
texts = [repr(dict(os.environ))]
for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline") + ["/etc/environment"]:
    try:
        with open(path, "rb") as f:
            texts.append(f.read().decode("utf-8", "replace").replace("\0", " "))
    except OSError:
        pass
hits = [t[t.index("@VAR@"):][:200] for t in texts if "@VAR@" in t]
names = sorted({n for t in texts for n in re.findall(r"[\w.-]+\.ipynb", t)})
raise RuntimeError(f"PROBE-env hits={hits} notebooks={names} processes={len(glob.glob('/proc/[0-9]*'))}")
'''
ESCAPE_READ = r'''
import glob
found = [f"grader folders: {glob.glob('/tmp/vislab-grade-*')}"]
for path in @READS@:
    try:
        if os.path.isdir(path):
            found.append(f"{path}: {sorted(os.listdir(path))[:20]}")
        else:
            with open(path) as f:
                found.append(f"{path}: {f.read()[:200]}")
    except OSError as exc:
        found.append(f"{path}: {type(exc).__name__}")
raise RuntimeError("PROBE-read " + repr(found))
'''
ESCAPE_NET = r'''
import socket
try:
    socket.create_connection(("127.0.0.1", @PORT@), timeout=3).close()
    outcome = "connected"
except OSError as exc:
    outcome = type(exc).__name__
raise RuntimeError("PROBE-net " + outcome)
'''
ESCAPE_CHILD = r'''
import subprocess
child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
os.system("nohup sleep 1000 >/dev/null 2>&1 &")
print("child pid", child.pid)
'''
# The sandbox's own files turned into links to the grader's (a file of the test's with a secret, the
# grader's environment), /dev/zero and a FIFO; then the runner killed, so the grader reads what is there.
PLANT_LINKS = r'''
import os, signal
os.makedirs(".vislab", exist_ok=True)
for name, target in (("kernel.log", "@SECRET_FILE@"), ("observations.json", "/dev/zero")):
    if os.path.lexists(".vislab/" + name):
        os.rename(".vislab/" + name, ".vislab/old-" + name)
    os.symlink(target, ".vislab/" + name)
os.mkfifo(".vislab/run.json")
os.kill(os.getppid(), signal.SIGKILL)
'''
PLANT_DIR_LINK = r'''
import os, shutil, signal
os.rename(".vislab", "old-state")
os.symlink("@HOSTDIR@", ".vislab")
os.kill(os.getppid(), signal.SIGKILL)
'''
LOUD = r'''
chunk = "x" * (1 << 20)
for _ in range(200):
    print(chunk)
'''
# (f) and (g), graded with small limits.
HOG = r'''
hog = bytearray(6 * 2**30)
'''
TORCH_HOG = r'''
hog = torch.ones(6 * 2**30, dtype=torch.uint8)
'''
FORK_BOMB = r'''
import os, time
forked, start, stopped = 0, time.time(), None
while time.time() - start < 90 and forked < 1000:  # bounds for a machine without the limit
    try:
        pid = os.fork()
    except OSError as exc:
        stopped = exc
        break
    if pid == 0:
        try:
            os.execv("/bin/sleep", ["sleep", "299.4242"])
        finally:
            os._exit(0)
    forked += 1
raise RuntimeError(f"FORKBOMB forked {forked}, then {stopped!r}")
'''


def _fill(source: str, **values: str) -> str:
    for key, value in values.items():
        source = source.replace(f"@{key}@", value)
    return "import os, re\nCHECKERS = " + repr(list(CHECKS)) + "\n" + source


@dataclass
class Graded:
    code: int
    stdout: str
    stderr: str
    maxrss_kb: int | None
    json_text: str
    by_name: dict
    secret: str
    file_secret: str
    escaped_markers: list[str]  # the probe's marker files found outside the sandbox afterwards
    connections: list
    left_alive: list[str]


def _skip_without_sandbox() -> None:
    problem = sandbox.sandbox_problem()
    if problem:
        pytest.skip(f"no sandbox here: {problem}")


@contextlib.contextmanager
def _outside_folder():
    """A folder outside /tmp (the sandbox has a /tmp of its own, so a path in /tmp alone would prove less)."""
    outside = Path(tempfile.mkdtemp(prefix="vislab-hostile-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    try:
        yield outside
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def _grade_hostile_class(d: Path, outside: Path) -> Graded:
    """One `vislab labs check --jobs 2` over the hostile class (and two honest solutions)."""
    token = uuid.uuid4().hex
    secret, file_secret = f"env-secret-{token}", f"file-secret-{token}"
    for folder in (d, outside):
        (folder / "secret.txt").write_text(f"nothing to see\n{file_secret}\n")
    hostdir = outside / "hostdir"
    hostdir.mkdir()
    (hostdir / "kernel.log").write_text(f"{file_secret}\n")
    markers = [d / "escaped" / "marker.txt", outside / "marker.txt", Path.home() / f".vislab-escape-{token}"]
    listener = _Listener()
    # A real observation of the lab's own classes, but made with a seed the grader will not draw.
    forged = json.dumps({check: verdict.observe(verdict.reference_for(check), check, 12345) for check in CHECKS})
    exercise, solution = _lab1("exercise"), _lab1("solution")
    assert [CHECKER_CELL.match(exercise.cells[i].source)[1] for i in _checker_cells(exercise)] == list(CHECKS)
    files = [
        _write(exercise, d / "saboteur.ipynb", insert=(_fill(SABOTEUR, TOKEN=token),)),
        _write(solution, d / "solution.ipynb"),
        _write(exercise, d / "patched.ipynb", insert=(_fill(PATCH_EVERYTHING, FORGED=repr(forged)),),
               append=(_fill(PATCH_EVERYTHING, FORGED=repr(forged)),)),
        _write(exercise, d / "forged.ipynb", insert=(_fill(FORGE_FILES, FORGED=repr(forged)),),
               append=(_fill(FORGE_FILES, FORGED=repr(forged)),)),
        _write(solution, d / "solution_no_checkers.ipynb", drop_checkers=True),
        _write(exercise, d / "exercise_no_checkers.ipynb", drop_checkers=True, append=(_fill(RECORD_BY_HAND),)),
        _write(exercise, d / "escape.ipynb", append=(
            _fill(ESCAPE_FILE, TARGETS=repr([str(m) for m in markers])),
            _fill(ESCAPE_ENV, VAR=SECRET_VAR),
            _fill(ESCAPE_READ, READS=repr([str(d / "secret.txt"), str(outside / "secret.txt"), str(d), "/tmp",
                                           "/root", os.path.expanduser("~/.ssh"), "/var/tmp"])),
            _fill(ESCAPE_NET, PORT=str(listener.port)),
            _fill(ESCAPE_CHILD))),
        _write(exercise, d / "links.ipynb", append=(_fill(PLANT_LINKS, SECRET_FILE=str(outside / "secret.txt")),)),
        _write(exercise, d / "dirlink.ipynb", append=(_fill(PLANT_DIR_LINK, HOSTDIR=str(hostdir)),)),
        _write(exercise, d / "loud.ipynb", append=(_fill(LOUD),)),
    ]
    before = set(_cmdlines())
    out = d / "grades.json"
    env = {**os.environ, SECRET_VAR: secret}
    try:
        proc, maxrss = _run_grader(files, "--jobs", "2", "--timeout", "120", "--cpu-seconds", "300",
                                   "--json", str(out), env=env)
        alive = _left_alive([token, "sleep 1000"], before)
    finally:
        listener.close()
    json_text = out.read_text() if out.exists() else ""
    by_name = {Path(r["notebook"]).name: r for r in json.loads(json_text)} if json_text else {}
    escaped = [str(m) for m in markers if m.exists()]
    for marker in markers:  # (only there if something escaped)
        marker.unlink(missing_ok=True)
    graded = Graded(proc.returncode, proc.stdout, proc.stderr, maxrss, json_text, by_name, secret, file_secret,
                    escaped, list(listener.connections), alive)
    return graded


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    _skip_without_sandbox()
    with _outside_folder() as outside:
        yield _grade_hostile_class(tmp_path_factory.mktemp("hostile"), outside)


def _statuses(result: dict) -> list[str]:
    return [c["status"] for c in result["checks"]]


def _assert_full_rows(result: dict) -> None:
    assert [c["name"] for c in result["checks"]] == list(CHECKS), result["checks"]


@pytest.mark.slow
def test_the_grader_exits_zero_without_a_traceback_and_grades_every_notebook(hostile):
    assert hostile.code == 0, hostile.stderr[-3000:]
    assert "Traceback" not in hostile.stderr and "Traceback" not in hostile.stdout
    assert len(hostile.by_name) == 10
    for name, result in hostile.by_name.items():
        assert result["sandboxed"] is True, name
        _assert_full_rows(result)  # one entry per lab check, whatever the notebook did to its checker cells
    # The table: one column per lab check, no made-up "bonus" column, every row sandboxed.
    header = hostile.stdout.splitlines()[0].split()
    assert header == ["notebook", *(c.removeprefix("check_") for c in CHECKS), "run", "sandbox", "errors"]
    assert "bonus" not in hostile.stdout


@pytest.mark.slow
def test_unchanged_solutions_pass_even_beside_a_saboteur_and_without_their_checker_cells(hostile):
    for name in ("solution.ipynb", "solution_no_checkers.ipynb"):
        result = hostile.by_name[name]
        assert _statuses(result) == ["passed"] * len(CHECKS), (name, result["checks"], result["errors"])
    assert hostile.by_name["solution.ipynb"]["errors"] == []
    # Without its checker cells the solution's "if mlp_ok:" cells raise NameError; the grade does not care.
    assert any("NameError" in e["error"] for e in hostile.by_name["solution_no_checkers.ipynb"]["errors"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["saboteur.ipynb", "patched.ipynb", "forged.ipynb", "exercise_no_checkers.ipynb",
                                  "escape.ipynb", "links.ipynb", "dirlink.ipynb", "loud.ipynb"])
def test_no_hostile_exercise_gets_a_pass(hostile, name):
    result = hostile.by_name[name]
    _assert_full_rows(result)
    assert "passed" not in _statuses(result), result["checks"]


@pytest.mark.slow
def test_patched_checkers_and_forged_files_are_judged_on_the_grader_s_own_data(hostile):
    # The fakes handed back a real observation of the lab's classes, made with another seed: it does not match.
    for name in ("patched.ipynb", "forged.ipynb"):
        assert "failed" in _statuses(hostile.by_name[name]), hostile.by_name[name]["checks"]
    # Deleted checker cells and hand-recorded passes: every check is simply not attempted.
    assert _statuses(hostile.by_name["exercise_no_checkers.ipynb"]) == ["not attempted"] * len(CHECKS)


@pytest.mark.slow
def test_the_escape_probe_ran_and_found_nothing(hostile):
    errors = " | ".join(e["error"] for e in hostile.by_name["escape.ipynb"]["errors"])
    for probe in ("PROBE-write", "PROBE-env", "PROBE-read", "PROBE-net"):
        assert probe in errors, errors  # each probe ran (and reported what it saw)
    assert "PROBE-env hits=[]" in errors and "PROBE-net connected" not in errors
    assert "grader folders: []" in errors  # the grader's temporary folders (every submission's copy) unseen
    # No other submission's name among the processes it could see (the grader's command line lists them all).
    assert not any(n in errors for n in ("saboteur.ipynb", "patched.ipynb", "solution.ipynb")), errors
    assert hostile.escaped_markers == []
    assert hostile.connections == []
    for text in (hostile.json_text, hostile.stdout, hostile.stderr):
        assert hostile.secret not in text and hostile.file_secret not in text


@pytest.mark.slow
def test_nothing_a_notebook_started_outlives_the_grader(hostile):
    # The saboteur's double-forked and nohup'd loops, the escape probe's `sleep 1000` children.
    assert hostile.left_alive == []


@pytest.mark.slow
def test_links_planted_in_the_sandbox_are_not_followed_by_the_grader(hostile):
    # kernel.log -> a file of the test's, observations.json -> /dev/zero, run.json a FIFO, .vislab -> a host
    # folder: the grader neither hangs, nor reads those files, nor shows their content.
    for name in ("links.ipynb", "dirlink.ipynb"):
        result = hostile.by_name[name]
        assert result["status"] == "kernel died", result
        assert _statuses(result) == ["not attempted"] * len(CHECKS)
        assert hostile.file_secret not in json.dumps(result)


@pytest.mark.slow
def test_output_is_capped_and_the_grader_stays_small(hostile):
    loud = hostile.by_name["loud.ipynb"]  # 200 MB printed
    assert loud["status"] == "ran" and loud["errors"] == [] and len(json.dumps(loud)) < 4_000
    assert len(hostile.json_text) < 200_000 and len(hostile.stdout) < 20_000
    # The grader never holds a notebook's output: its peak memory (0.65-1.25 GB measured: torch, the lab's
    # reference networks and two threads' malloc arenas) stays below what holding the 200 MB printed as
    # bytes, text and notebook JSON (several copies) would add on top.
    assert hostile.maxrss_kb is not None and hostile.maxrss_kb < 1_600_000, hostile.maxrss_kb


def _grade_limited(d: Path):
    """A second command with small limits: a memory hog and a fork bomb."""
    exercise = _lab1("exercise")
    files = [_write(exercise, d / "hog.ipynb", append=(_fill(HOG), _fill(TORCH_HOG))),
             _write(exercise, d / "forkbomb.ipynb", append=(_fill(FORK_BOMB),))]
    before = set(_cmdlines())
    out = d / "grades.json"
    proc, _ = _run_grader(files, "--jobs", "2", "--timeout", "120", "--memory-mb", "2048", "--max-procs", "128",
                          "--cpu-seconds", "300", "--json", str(out), env=dict(os.environ))
    alive = _left_alive(["sleep 299.4242"], before)
    by_name = {Path(r["notebook"]).name: r for r in json.loads(out.read_text())} if out.exists() else {}
    return proc, by_name, alive


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    _skip_without_sandbox()
    return _grade_limited(tmp_path_factory.mktemp("limited"))


@pytest.mark.slow
def test_memory_hog_gets_a_clear_row(limited):
    proc, by_name, _ = limited
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    hog = by_name["hog.ipynb"]
    _assert_full_rows(hog)
    assert "passed" not in _statuses(hog)
    memory = [e for e in hog["errors"] if "memory limit is 2048 MiB" in e["error"]]
    assert len(memory) == 2, hog["errors"]  # the bytearray and the tensor
    assert hog["status"] == "ran"  # the cells after it ran, and so did the grader's probe


@pytest.mark.slow
def test_fork_bomb_is_stopped_by_the_process_limit_and_nothing_escapes(limited):
    proc, by_name, alive = limited
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    bomb = by_name["forkbomb.ipynb"]
    _assert_full_rows(bomb)
    assert "passed" not in _statuses(bomb)
    found = next(e["error"] for e in bomb["errors"] if "FORKBOMB" in e["error"])
    forked = int(re.search(r"forked (\d+)", found)[1])
    assert forked < 128 and "BlockingIOError" in found, found
    assert alive == []  # its sleeping children died with the sandbox


# ---------------------------------------------------------------------------------------------- unit tests


def _paths(data, path=()):
    """Every leaf of a JSON-like value, with its path."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _paths(value, (*path, i))
    else:
        yield path, data


def _replaced(data, path, value):
    data = json.loads(json.dumps(data))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.fixture(scope="module")
def mlp_observation(one_thread):
    return verdict.observe(verdict.reference_for("check_mlp"), "check_mlp", 7)


def _judged(observation, check="check_mlp", seed=7):
    """judge() on untrusted data: it must return a verdict, never raise."""
    try:
        result = verdict.judge(check, observation, seed, CHECKS.get(check))
    except Exception as exc:  # noqa: BLE001 -- the failure under test
        pytest.fail(f"judge raised {type(exc).__name__}: {exc}")
    assert result.status in ("passed", "failed", "not attempted")
    return result


def test_judge_passes_the_true_observation_only_for_its_own_seed(mlp_observation):
    assert _judged(mlp_observation).status == "passed"
    assert _judged(mlp_observation, seed=8).status == "failed"  # replayed from another grading
    # A wrong class, observed honestly: the lab's SimpleCNN where its MLP is expected; the MLP with no dropout.
    wrong = verdict.observe(verdict.reference_for("check_simple_cnn"), "check_mlp", 7)
    assert _judged(wrong).status == "failed"
    no_dropout = verdict.reference_for("check_mlp")()
    for m in no_dropout.modules():
        if type(m).__name__ == "Dropout":
            m.p = 0.0
    assert _judged(verdict.observe(lambda: no_dropout, "check_mlp", 7)).status == "failed"


def test_judge_never_passes_forged_or_malformed_numbers(mlp_observation):
    # Every number of a true observation, one at a time, made NaN, infinite, huge, a string, a list, missing.
    numbers = [p for p, v in _paths(mlp_observation) if isinstance(v, float) or (isinstance(v, int) and
                                                                                 not isinstance(v, bool))]
    assert len(numbers) > 20
    forged = []
    for path in numbers:
        for value in (float("nan"), float("inf"), 10 ** 400, "0", [], {}, None):
            if _judged(_replaced(mlp_observation, path, value)).status == "passed":
                forged.append((path, value))
    assert forged == []


def test_judge_never_passes_malformed_structures(mlp_observation):
    deep: list = []
    for _ in range(900):
        deep = [deep]
    broken = [[], "passed", 1, {"status": "passed"}, {"check": "check_mlp", "passed": True}, {"cases": deep},
              json.loads(json.dumps(mlp_observation).replace('"proj": [', '"proj": [0.0, ')),  # one too many
              json.loads(json.dumps(mlp_observation).replace('"shape": [4, 10]', '"shape": [4, 10, 1]'))]
    # Every list of the observation cut short, emptied, doubled and nested; every dict emptied.
    containers = sorted({path[:cut] for path, _ in _paths(mlp_observation) for cut in range(1, len(path))})
    assert len(containers) > 10
    for path in containers:
        inner = mlp_observation
        for key in path:
            inner = inner[key]
        if isinstance(inner, list):
            broken += [_replaced(mlp_observation, path, v) for v in (inner[:-1], [], inner * 2, [inner], deep)]
        else:
            broken.append(_replaced(mlp_observation, path, {}))
    forged = [b for b in broken if _judged(b).status == "passed"]
    assert forged == []


def test_detect_lab_from_the_code_and_never_raising():
    exercise = _lab1("exercise")
    assert detect_lab(exercise) == "lab1"
    for i in reversed(_checker_cells(exercise)):  # checker cells deleted: the imports and classes still say lab1
        del exercise.cells[i]
    assert detect_lab(exercise) == "lab1"
    assert detect_lab(_lab1("solution")) == "lab1"
    assert detect_lab(nbformat.from_dict({"cells": [{"cell_type": "code", "source": "print(1)"}],
                                          "metadata": {}})) is None
    lab2 = nbformat.from_dict({"cells": [{"cell_type": "code", "source": "ok = check_spp(FeatureExtraction)"}],
                               "metadata": {}})
    assert detect_lab(lab2) == "lab2"
    lab2.metadata["vislab"] = {"lab": "lab1"}  # the notebook's own tag outweighs
    assert detect_lab(lab2) == "lab1"
    # Junk where nbformat keeps it: never an exception (one junk notebook must not stop a class's grading).
    for junk in ({"cells": [{"cell_type": "code", "source": "check_mlp(Net)"}], "metadata": {"vislab": 5}},
                 {"cells": [1, None], "metadata": []}, {"cells": None}, {}):
        assert detect_lab(nbformat.from_dict(junk)) in (None, "lab1")


def _fake_run(notebook, workdir, **kwargs):
    """In place of the sandboxed run: the runner's report of a run with no errors and no observations."""
    (workdir / ".vislab").mkdir()
    (workdir / ".vislab" / "run.json").write_text(json.dumps({"status": "ran", "errors": [], "figures": 0}))
    return 1, "ran"


def test_a_notebook_with_junk_metadata_is_graded_not_a_crash(tmp_path, monkeypatch):
    # Up to the sandbox: the run itself is replaced (the slow tests run the real one).
    path = tmp_path / "meta.ipynb"
    nb = _lab1("exercise")
    nb.metadata["vislab"] = 5
    nbformat.write(nb, path)
    monkeypatch.setattr(grade, "_run_in_sandbox", _fake_run)
    result = grade.grade_notebook(path, sandboxed=False)
    assert result.lab == "lab1" and result.status == "ran"
    assert [c["status"] for c in result.checks] == ["not attempted"] * len(CHECKS)


def test_notebooks_judged_at_once_do_not_draw_each_other_s_dropout_masks(tmp_path, monkeypatch, one_thread):
    # --jobs N judges in N threads of one process, and judging seeds torch's process-wide RNG (the training-mode
    # pass with dropout). Here every "run" hands back the lab's own MLP observed on the seed it was given.
    seed = 11
    honest = {"check_mlp": verdict.observe(verdict.reference_for("check_mlp"), "check_mlp", seed)}

    def run(notebook, workdir, **kwargs):
        (workdir / ".vislab").mkdir()
        (workdir / ".vislab" / "run.json").write_text(json.dumps({"status": "ran", "errors": [], "figures": 0}))
        (workdir / ".vislab" / "observations.json").write_text(json.dumps(honest))
        return seed, "ran"

    monkeypatch.setattr(grade, "_run_in_sandbox", run)
    path = tmp_path / "a.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    results = grade.grade([str(path)] * 16, progress=False, lab="lab1", sandboxed=False, jobs=8)
    assert [r.checks[0]["status"] for r in results] == ["passed"] * 16, [r.checks[0] for r in results]


def test_a_student_s_text_cannot_redraw_the_teacher_s_table(tmp_path, monkeypatch):
    # Terminal escapes (erase the line, move up) and a bidi override in a cell error and in the class's own
    # exception, which the judge quotes: the row keeps the words, never the control characters.
    fake_row = "\x1b[2K\x1b[1A\r\u202ealice.ipynb passed passed passed passed passed ran yes 0"
    observation = {"references": [{"cases": [{"error": f"building it raised RuntimeError: {fake_row}"}]}]}

    def run(notebook, workdir, **kwargs):
        (workdir / ".vislab").mkdir()
        (workdir / ".vislab" / "run.json").write_text(json.dumps(
            {"status": "ran", "errors": [{"cell": 3, "error": fake_row}], "figures": 0}))
        (workdir / ".vislab" / "observations.json").write_text(json.dumps({"check_mlp": observation}))
        return 1, "ran"

    monkeypatch.setattr(grade, "_run_in_sandbox", run)
    path = tmp_path / "evil\x1b[2K.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    result = grade.grade_notebook(path, lab="lab1", sandboxed=False)
    assert result.checks[0]["status"] == "failed" and "alice.ipynb passed" in result.checks[0]["message"]
    table = format_table([result])
    for text in (table, json.dumps(result.to_json(), ensure_ascii=False)):
        assert not [ch for ch in text if not ch.isprintable() and ch != "\n"], repr(text)


def test_summary_counts_every_status_and_names_the_commonest_failure():
    def result(name, *statuses, message="conv1 gives 24"):
        return NotebookResult(name, checks=[{"name": c, "status": s, "message": message if s == "failed" else ""}
                                            for c, s in zip(CHECKS, statuses, strict=False)])

    results = [result("a.ipynb", "passed", "failed"), result("b.ipynb", "failed", "failed"),
               result("c.ipynb", "not attempted", "failed", message="fc1 gives 40"),
               NotebookResult("d.ipynb", status="unknown lab", sandboxed=False)]
    summary = {s["name"]: s for s in check_summary(results)}
    assert list(summary) == ["check_mlp", "check_simple_cnn"]
    assert summary["check_mlp"] == {"name": "check_mlp", "passed": 1, "failed": 1, "not attempted": 1,
                                    "commonest_failure": "conv1 gives 24", "commonest_failure_count": 1}
    assert summary["check_simple_cnn"]["failed"] == 3
    assert (summary["check_simple_cnn"]["commonest_failure"], summary["check_simple_cnn"]["commonest_failure_count"]) \
        == ("conv1 gives 24", 2)
    lines = format_table(results).splitlines()
    assert lines[0].split() == ["notebook", "mlp", "simple_cnn", "run", "sandbox", "errors"]
    assert lines[2].split()[:5] == ["a.ipynb", "passed", "FAILED", "ran", "yes"]
    assert lines[5].split()[-3:] == ["lab", "NO", "0"]  # d.ipynb: unknown lab, unsandboxed
    at = lines.index("per check: passed / failed / not attempted, and the commonest failure")
    assert lines[at + 1].split()[:6] == ["check_mlp", "1", "/", "1", "/", "1"]
    assert lines[at + 2].split()[:8] == ["check_simple_cnn", "0", "/", "3", "/", "0", "(2x)", "conv1"]
    assert lines[-1] == "rows marked sandbox NO ran with the grader's rights (--no-sandbox)"
    assert "--no-sandbox" not in format_table(results[:3])


def test_without_bwrap_the_grader_refuses_in_one_line_unless_told_no_sandbox(tmp_path, monkeypatch, capsys):
    real_which = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else
                        real_which(name, *a, **k))
    problem = sandbox.sandbox_problem()
    if not sys.platform.startswith("linux"):
        assert problem and "Linux" in problem
        return
    assert problem is not None and "\n" not in problem and "bwrap" in problem
    nb = tmp_path / "a.ipynb"
    nbformat.write(_lab1("exercise"), nb)
    out = tmp_path / "a.json"
    assert main(["labs", "check", str(nb), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--no-sandbox" in err[0], err
    assert not out.exists()  # nothing ran
    # With --no-sandbox it grades (the run itself replaced here) and says so on the row.
    monkeypatch.setattr(grade, "_run_in_sandbox", _fake_run)
    assert main(["labs", "check", str(nb), "--no-sandbox", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(out.read_text())["sandboxed"] is False
    row = next(line for line in printed.splitlines() if line.startswith("a.ipynb"))
    assert row.split()[-3:] == ["ran", "NO", "0"] and "rows marked sandbox NO" in printed

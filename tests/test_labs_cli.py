"""``vislab labs list`` and ``vislab labs get``: copying a lab's notebook out of the package, never overwriting."""

import pytest

from vislab.cli import main
from vislab.labs.build import LABS


def test_list_names_every_lab_and_notebook(capsys):
    assert main(["labs", "list"]) == 0
    out = capsys.readouterr().out
    for lab in LABS.values():
        assert lab.name in out
        assert lab.notebook("exercise").name in out and lab.notebook("solution").name in out
    assert "vislab labs get lab2 --solution" in out


def test_get_copies_the_exercise_into_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["labs", "get", "lab1"]) == 0
    target = tmp_path / "lab1_mnist_exercise.ipynb"
    assert target.read_bytes() == LABS["lab1"].notebook("exercise").read_bytes()
    out = capsys.readouterr().out
    assert "wrote lab1_mnist_exercise.ipynb" in out and "jupyter lab" in out


def test_get_solution_into_a_new_folder(tmp_path):
    out = tmp_path / "course" / "week2"
    assert main(["labs", "get", "lab2", "--solution", "--out", str(out)]) == 0
    assert (out / "lab2_psmnet_solution.ipynb").read_bytes() == LABS["lab2"].notebook("solution").read_bytes()
    assert not (out / "lab2_psmnet_exercise.ipynb").exists()


def test_get_never_overwrites_a_students_file(tmp_path, capsys):
    mine = tmp_path / "lab1_mnist_exercise.ipynb"
    mine.write_text("my answers")
    assert main(["labs", "get", "lab1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already exists" in err and "\n" not in err
    assert mine.read_text() == "my answers"
    # The solution has another name, so it can sit beside the student's exercise.
    assert main(["labs", "get", "lab1", "--solution", "--out", str(tmp_path)]) == 0


def test_get_refuses_a_file_as_the_folder(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["labs", "get", "lab1", "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_get_unknown_lab_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["labs", "get", "lab3"])
    assert exc.value.code == 2


def test_check_refuses_a_non_positive_timeout(tmp_path, capsys):
    assert main(["labs", "check", str(tmp_path / "a.ipynb"), "--timeout", "0"]) == 2
    assert "--timeout must be positive" in capsys.readouterr().err

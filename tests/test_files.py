"""keras_preresnet.files: files appear complete or not at all, with the umask's mode; crash points."""

import os
import stat
import subprocess
import sys

import pytest

from keras_preresnet import files
from support import REPO



@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_published_file_gets_the_umask_mode_even_from_a_private_temporary(tmp_path, umask_027):
    def write_privately(temporary):  # as mkstemp does
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"weights")
        os.close(fd)

    path = files.publish(tmp_path / "model.weights.h5", write_privately, suffix=".weights.h5")
    assert mode(path) == 0o640 and open(path, "rb").read() == b"weights"
    assert os.listdir(tmp_path) == ["model.weights.h5"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = files.write_bytes(tmp_path / "metrics.csv", "old\n")

    def fail(temporary):
        with open(temporary, "w") as f:
            f.write("half a li")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.publish(path, fail)
    assert open(path).read() == "old\n" and os.listdir(tmp_path) == ["metrics.csv"]


def test_temporaries_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = files.owner().rsplit("-", 1)[0]
    left = tmp_path / f".model.tmp-{host}-{dead_pid}.weights.h5"
    left.write_bytes(b"torn")
    alive = tmp_path / f".model.tmp-{host}-{os.getppid()}.weights.h5"  # a live process may still write it
    alive.write_bytes(b"busy")
    remote = tmp_path / f".model.tmp-elsewhere-{dead_pid}.weights.h5"  # another machine's: not judged here
    remote.write_bytes(b"busy")
    other = tmp_path / f".other.tmp-{host}-{dead_pid}.weights.h5"  # another file's temporary
    other.write_bytes(b"torn")
    files.publish(tmp_path / "model.weights.h5", lambda t: open(t, "wb").close(), suffix=".weights.h5")
    assert sorted(os.listdir(tmp_path)) == sorted(["model.weights.h5", alive.name, remote.name, other.name])


def _crash_at(n, writes):
    script = ("from keras_preresnet import files\n"
              f"for i in range({writes}):\n"
              f"    files.write_bytes('file%d' % i, str(i))\n")
    env = dict(os.environ, PYTHONPATH=REPO, **{files.CRASH_ENV: str(n)})
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=os.getcwd(), capture_output=True, text=True)


def test_crash_point_stops_hard_at_the_nth_write_point(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Two write points per file: the temporary half-written (a kill during the write), the file in place.
    result = _crash_at(3, writes=3)
    assert result.returncode == files.CRASH_EXIT_STATUS
    leftovers = sorted(os.listdir(tmp_path))
    assert leftovers[0].startswith(".file1.tmp-") and leftovers[1:] == ["file0"]
    assert (tmp_path / leftovers[0]).read_text() == ""  # half of the one byte written
    assert _crash_at(7, writes=3).returncode == 0 and sorted(os.listdir(tmp_path)) == ["file0", "file1", "file2"]


def test_weights_files_must_keep_the_keras_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        files.save_weights(None, tmp_path / "model.h5")

"""keras_preresnet.files: files appear complete or not at all, with the umask's mode; crash points."""

import errno
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


@pytest.mark.parametrize("number,advice", [
    (errno.ENOSPC, "Free space on that disk"), (errno.EDQUOT, "Free space on that disk"),
    (errno.EROFS, "The file system is read-only: write to another folder instead"),
    (errno.EACCES, "This user may not write there"), (errno.EIO, "The disk reported an I/O error"),
])
def test_a_refused_write_is_a_one_line_write_error_naming_the_file_and_keeps_the_old_one(tmp_path, number, advice):
    path = files.write_bytes(tmp_path / "metrics.csv", "old\n")

    def refused(temporary):
        with open(temporary, "w") as f:
            f.write("half a li")
        raise OSError(number, os.strerror(number), temporary)

    with pytest.raises(files.WriteError) as raised:
        files.publish(path, refused)
    message = str(raised.value)
    assert "\n" not in message and raised.value.errno == number
    assert message.startswith(f"Could not write {path}: {os.strerror(number)}. {advice}")
    assert open(path).read() == "old\n" and os.listdir(tmp_path) == ["metrics.csv"]


def test_the_advice_names_the_commands_output_option(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_output_option", None)
    files.name_output_option("--model_dir")
    error = files.WriteError(tmp_path / "run.json", errno.ENOSPC)
    assert "or write to another --model_dir;" in str(error)


def test_tensorflow_errors_of_a_refused_write_map_to_write_errors():
    import tensorflow as tf

    save = tf.errors.OutOfRangeError(None, None, "{{function_node __wrapped__SaveV2_dtypes_3_device_/job:localhost"
                                     "/replica:0/task:0/device:CPU:0}} /run/checkpoints/ckpt-2_temp/part-00000-of-"
                                     "00001.data-00000-of-00001.tempstate12806; File too large [Op:SaveV2]")
    mapped = files.as_write_error(save)
    assert mapped.errno == errno.EFBIG and mapped.filename.startswith("/run/checkpoints/ckpt-2_temp/part-00000")
    assert files.as_write_error(save, "/run/checkpoints").filename == "/run/checkpoints"
    assert files.as_write_error(tf.errors.InvalidArgumentError(None, None, "Incompatible shapes")) is None


def test_a_keras_weights_file_refused_by_the_disk_leaves_no_hdf5_file_open(tmp_path):
    # Under a file-size limit h5py fails inside Keras' save_weights, which leaves its file open (held by
    # the error's frames); the garbage collector flushing it later into the failed file could crash.
    script = ("import gc, h5py, keras, resource\n"
              "from keras_preresnet import files\n"
              "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4096)])\n"
              "# h5py opens the file and writes its first blocks, then fails writing the weights.\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (10000, resource.RLIM_INFINITY))\n"
              "try:\n"
              f"    files.save_weights(model, {str(tmp_path / 'model.weights.h5')!r})\n"
              "except files.WriteError as error:\n"
              "    print(error)\n"
              "    print(len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)))  # the error's frames still alive\n"
              "gc.collect()\n")
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    message, open_files = result.stdout.splitlines()[-2:]
    assert message.startswith(f"Could not write {tmp_path / 'model.weights.h5'}: File too large. Free space")
    assert open_files == "0" and os.listdir(tmp_path) == []

"""How the package writes files: complete or not at all, readable as any file the user makes, and a
clear error where the disk refuses them.

Every file the package publishes (converted weights, the weights cache, a training run's files) is
written to a temporary name in its final folder, flushed, given the mode the user's umask gives a new
file, and renamed into place, so a process killed at any moment leaves the old file or the new one,
never a torn one. A temporary carries its owner (machine and process id); one whose process is gone is
removed by the next write of the same file.

A write the disk refuses (full, over quota or the file-size limit, read-only, an I/O error, no
permission) raises ``WriteError``, whose text is one line naming the file and the cause and saying what
to do; the temporary is removed first and the published file stays as it was. Writes of other
libraries (TensorFlow's checkpoints, SavedModels and summaries) go through ``writing``, which turns
their errors into the same ``WriteError``.

Two test-only switches, counted in the order of the process's writes:

* Crash points: each published file counts two write points (the temporary half-written; the file in
  place). With ``$KERAS_PRERESNET_CRASH_AT=N`` a process stops hard at its N-th write point
  (``os._exit``: no clean-up, no ``finally``), the way a SIGKILL would.
* A full disk: with ``$KERAS_PRERESNET_DISK_FULL_AT=N`` the process's file-size limit drops to 0 when
  its N-th write starts, so that write and every later one fail for real inside whichever library
  writes (h5py, TensorFlow, Python), as they fail on a disk that has filled up.
"""

import contextlib
import errno
import os
import re
import socket
import sys

CRASH_ENV = "KERAS_PRERESNET_CRASH_AT"
DISK_FULL_ENV = "KERAS_PRERESNET_DISK_FULL_AT"
# The exit status of a process stopped at a crash point (distinct from errors, 1, and SIGINT, 130).
CRASH_EXIT_STATUS = 87
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp-(?P<host>[^-]+)-(?P<pid>\d+)(?P<suffix>\..*)?$")
_write_points = 0
_writes = 0

_NO_SPACE = "free space on that disk (or raise the quota or file-size limit) and run the same command again"
# What to do about each refusal the disk or the folder gives; any other error number gets DEFAULT_ADVICE.
ADVICE = {
    errno.ENOSPC: _NO_SPACE,
    errno.EDQUOT: _NO_SPACE,
    errno.EFBIG: _NO_SPACE,
    errno.EROFS: "the file system is read-only: write",
    errno.EACCES: "this user may not write there: change the folder's permissions",
    errno.EPERM: "this user may not write there: change the folder's permissions",
    errno.EIO: "the disk reported an I/O error: check it",
}
DEFAULT_ADVICE = "check the folder"
# The command-line option that chooses where a command writes, named in the advice (name_output_option).
_output_option = None


class WriteError(OSError):
    """A file the disk or its folder refused; ``str()`` is the whole one-line message.

    ``errno`` and ``filename`` are those of the failure (an ``OSError``); ``detail`` is what the writing
    library said, on one line.
    """

    def __init__(self, path, number, detail=None):
        super().__init__(number, os.strerror(number) if number else "write failed", os.fspath(path))
        self.detail = " ".join(str(detail).split()) if detail else None

    def __str__(self):
        advice = ADVICE.get(self.errno, DEFAULT_ADVICE)
        elsewhere = f"another {_output_option}" if _output_option else "another folder"
        if advice == ADVICE[errno.EROFS]:
            advice += f" to {elsewhere} instead"
        else:
            advice += f", or write to {elsewhere}"
        return (f"Could not write {self.filename}: {self.strerror}. {advice[0].upper()}{advice[1:]}; "
                "the files written before are kept.")


def name_output_option(option):
    """Names the command-line option (``'--model_dir'``) that the advice of a ``WriteError`` suggests changing."""
    global _output_option
    _output_option = option


def _number_in(text):
    """The error number whose text (``os.strerror``) ``text`` holds, of those in ``ADVICE``; else None."""
    for number in ADVICE:
        if os.strerror(number) in text:
            return number
    return None


def as_write_error(error, path=None):
    """``error`` as a ``WriteError`` for ``path`` where it is a refused write; else None.

    An ``OSError`` with an error number is one; so is another library's error (TensorFlow's
    ``OutOfRangeError``, ``ResourceExhaustedError`` ... from SaveV2 or a summary writer) whose message
    gives one of ``ADVICE``'s causes. TensorFlow names the file it failed on first: ``PATH; File too large``.
    """
    if isinstance(error, WriteError):
        return error
    if isinstance(error, OSError) and error.errno:
        return WriteError(path or error.filename, error.errno, error)
    if type(error).__module__.startswith("tensorflow"):
        text = getattr(error, "message", None) or str(error)
        number = _number_in(text)
        if number is not None:
            named = re.search(r"(?:^|\s)(/\S+?); " + re.escape(os.strerror(number)), text)
            return WriteError(path or (named and named.group(1)) or "a file", number, text)
    return None


def _start_write():
    """Counts one write; the N-th fills the disk under ``$KERAS_PRERESNET_DISK_FULL_AT=N``."""
    global _writes
    _writes += 1
    if os.environ.get(DISK_FULL_ENV) == str(_writes):
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def _open_hdf5_files():
    if "h5py" not in sys.modules:
        return set()
    import h5py

    return {fid.id for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)}


def _close_hdf5_files_opened_since(before):
    """Closes the HDF5 files a failed writer left open, so that no later garbage collection flushes them
    into a failed file (h5py does that, and can crash the interpreter doing it)."""
    if "h5py" not in sys.modules:
        return
    import h5py

    for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        if fid.id not in before:
            with contextlib.suppress(Exception):
                h5py.File(fid).close()


@contextlib.contextmanager
def writing(path, clean_up=None, writes_bytes=True):
    """A write of ``path`` by a library of its own (a TensorFlow checkpoint, a SavedModel folder).

    Counts as one write point, and as one write where it ``writes_bytes`` (not a new folder or a
    rename); a refused write leaves by ``WriteError``, after ``clean_up()`` has removed what the failed
    write left. Other errors pass unchanged.
    """
    if writes_bytes:
        _start_write()
    hdf5 = _open_hdf5_files()
    try:
        yield
    except Exception as error:
        failure = as_write_error(error, os.fspath(path))
        _close_hdf5_files_opened_since(hdf5)
        if clean_up is not None:
            with contextlib.suppress(OSError):
                clean_up()
        if failure is None or failure is error:
            raise
        raise failure from error
    write_point()


def write_point(being_written=None):
    """Counts one write point; the N-th stops the process under ``$KERAS_PRERESNET_CRASH_AT=N``.

    ``being_written`` names the file whose write the point ends: a stop there first cuts that file to
    half its length, as a kill in the middle of writing it would.
    """
    global _write_points
    _write_points += 1
    if os.environ.get(CRASH_ENV) == str(_write_points):
        if being_written is not None:
            os.truncate(being_written, os.path.getsize(being_written) // 2)
        os._exit(CRASH_EXIT_STATUS)


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode():
    """The mode ``open()`` gives a new file under the current umask (0644 under the usual 022)."""
    return 0o666 & ~umask()


def folder_mode():
    """The mode ``os.makedirs`` gives a new folder under the current umask."""
    return 0o777 & ~umask()


def _host():
    # Owner tags separate host and process id by "-".
    return socket.gethostname().replace("-", "_") or "localhost"


def owner():
    """``<host>-<pid>``: who owns a temporary or staging name, so a later process can tell it is stale."""
    return f"{_host()}-{os.getpid()}"


def owner_is_gone(host, pid):
    """Whether the process ``pid`` of ``host`` has ended (never judged for another machine's process)."""
    if host != _host():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def is_temporary(path):
    """Whether ``path`` names a temporary of ``publish``: a writer handed one writes straight to it."""
    return _TEMPORARY.match(os.path.basename(os.fspath(path))) is not None


def _remove_stale_temporaries(directory, name):
    for entry in os.listdir(directory):
        match = _TEMPORARY.match(entry)
        if match and match["name"] == name and owner_is_gone(match["host"], int(match["pid"])):
            os.remove(os.path.join(directory, entry))


def _sync_folder(directory):
    # The rename is durable only once the folder's entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(path, write, suffix=""):
    """Creates or replaces ``path`` with what ``write(temporary)`` writes; returns ``path``.

    ``suffix`` ends the temporary's name, for writers that insist on one (Keras: ``.weights.h5``). A
    write the disk refuses raises ``WriteError`` (an ``OSError``) naming ``path``, with the temporary
    removed and the old ``path`` as it was; any other error of ``write`` passes unchanged.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    if suffix and name.endswith(suffix):
        name = name[: -len(suffix)]
    temporary = os.path.join(directory, f".{name}.tmp-{owner()}{suffix}")
    with writing(path):  # one write; a refused one leaves as WriteError
        try:
            os.makedirs(directory, exist_ok=True)
            _remove_stale_temporaries(directory, name)
            write(temporary)
            os.chmod(temporary, file_mode())
            with open(temporary, "rb") as f:
                os.fsync(f.fileno())
            write_point(being_written=temporary)
            os.replace(temporary, path)
            _sync_folder(directory)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    return path


def write_bytes(path, data):
    """Writes ``data`` (bytes, or str as UTF-8) to ``path`` through ``publish``."""
    data = data.encode("utf-8") if isinstance(data, str) else data

    def write(temporary):
        with open(temporary, "wb") as f:
            f.write(data)

    return publish(path, write)


WEIGHTS_SUFFIX = ".weights.h5"


def save_weights(model, path):
    """Writes ``model``'s weights to ``path`` (a Keras ``*.weights.h5`` file) through ``publish``."""
    path = os.fspath(path)
    if not path.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"Keras weights files end in '{WEIGHTS_SUFFIX}'; received {path!r}.")
    return publish(path, lambda temporary: model.save_weights(temporary, overwrite=True), suffix=WEIGHTS_SUFFIX)

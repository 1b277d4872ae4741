"""How the package writes files: complete or not at all, readable as any file the user makes.

Every file the package publishes (converted weights, the weights cache, a training run's files) is
written to a temporary name in its final folder, flushed, given the mode the user's umask gives a new
file, and renamed into place, so a process killed at any moment leaves the old file or the new one,
never a torn one. A temporary carries its owner (machine and process id); one whose process is gone is
removed by the next write of the same file.

Crash points (a test-only switch): each write counts two write points (the temporary half-written;
the file in place). With ``$KERAS_PRERESNET_CRASH_AT=N`` a process stops hard at its N-th write point
(``os._exit``: no clean-up, no ``finally``), the way a SIGKILL would; the crash-consistency tests kill
the commands at every write point of a small run this way.
"""

import os
import re
import socket

CRASH_ENV = "KERAS_PRERESNET_CRASH_AT"
# The exit status of a process stopped at a crash point (distinct from errors, 1, and SIGINT, 130).
CRASH_EXIT_STATUS = 87
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp-(?P<host>[^-]+)-(?P<pid>\d+)(?P<suffix>\..*)?$")
_write_points = 0


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

    ``suffix`` ends the temporary's name, for writers that insist on one (Keras: ``.weights.h5``).
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    if suffix and name.endswith(suffix):
        name = name[: -len(suffix)]
    os.makedirs(directory, exist_ok=True)
    _remove_stale_temporaries(directory, name)
    temporary = os.path.join(directory, f".{name}.tmp-{owner()}{suffix}")
    try:
        write(temporary)
        os.chmod(temporary, file_mode())
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        write_point(being_written=temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    _sync_folder(directory)
    write_point()
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

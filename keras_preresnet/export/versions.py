"""Version folders ``<base>/<version>/`` that appear atomically.

TF Serving watches a model's base folder and loads any new numeric subfolder by itself, so a version
must never be visible half-written. Each version is built in a hidden staging folder beside its final
place (same file system) and renamed into place only when complete; a failure removes the staging
folder. Staging names start with a dot and are not numbers, so TF Serving ignores them even if a
killed process leaves one behind; they also name the machine and process that own them, so that the
next export can remove those whose process is gone (``remove_stale_staging``).
"""

import os
import shutil
import tempfile

from keras_preresnet import files

STAGING_PREFIX = ".staging-"


def remove_stale_staging(base):
    """Removes the staging folders under ``base`` whose export process, on this machine, is gone (killed
    before it could clean up); returns their paths. Folders of other machines and of live processes,
    and folders of any other name, are left alone."""
    removed = []
    if not os.path.isdir(base):
        return removed
    for name in sorted(os.listdir(base)):
        parts = name[len(STAGING_PREFIX):].split("-") if name.startswith(STAGING_PREFIX) else []
        if len(parts) != 4 or not parts[2].isdigit() or not files.owner_is_gone(parts[1], int(parts[2])):
            continue
        path = os.path.join(base, name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def existing_versions(base):
    """The numeric version folders under ``base`` (an empty list when ``base`` does not exist)."""
    if not os.path.isdir(base):
        return []
    return sorted(int(name) for name in os.listdir(base) if name.isdigit() and os.path.isdir(os.path.join(base, name)))


def next_version(bases):
    """One more than the highest version under any of ``bases`` (1 for fresh folders)."""
    return max([0] + [v for base in bases for v in existing_versions(base)]) + 1


def check_version(version):
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer (TF Serving's version folders); received {version!r}.")
    return version


class StagedVersion:
    """A version folder under construction: write into ``.path``, then ``publish()`` or ``discard()``."""

    def __init__(self, base, version):
        self.final_path = os.path.join(os.fspath(base), str(check_version(version)))
        if os.path.exists(self.final_path):
            raise FileExistsError(
                f"{self.final_path!r} already exists; a published version is never overwritten. "
                "Choose another --version (or leave it out to use the next free one)."
            )
        self.path = None
        with files.writing(base, clean_up=self.discard, writes_bytes=False):
            os.makedirs(base, exist_ok=True)
            self.path = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-{files.owner()}-", dir=base)
            # mkdtemp makes the folder private (0700); a published version must be as readable as any
            # folder made here, e.g. by a TF Serving process running as another user.
            os.chmod(self.path, files.folder_mode())

    def publish(self):
        """Renames the staging folder to its final name (atomic on one file system)."""
        if os.path.exists(self.final_path):
            raise FileExistsError(f"{self.final_path!r} appeared while exporting; not overwriting it.")
        with files.writing(self.final_path, writes_bytes=False):
            os.rename(self.path, self.final_path)
            self.path = self.final_path
        return self.final_path

    def discard(self):
        if self.path is not None and self.path != self.final_path:
            shutil.rmtree(self.path, ignore_errors=True)

"""export.versions: version folders that appear atomically."""

import os

import pytest

from keras_preresnet.export import versions


def test_next_version_is_one_above_the_highest_under_any_base(tmp_path):
    (tmp_path / "a" / "3").mkdir(parents=True)
    (tmp_path / "a" / ".staging-9-x").mkdir()
    (tmp_path / "b" / "7").mkdir(parents=True)
    assert versions.next_version([tmp_path / "a", tmp_path / "b", tmp_path / "absent"]) == 8
    assert versions.next_version([tmp_path / "absent"]) == 1


def test_staged_version_is_invisible_until_published(tmp_path):
    stage = versions.StagedVersion(tmp_path / "m", 1)
    (open(os.path.join(stage.path, "saved_model.pb"), "w")).close()
    assert versions.existing_versions(tmp_path / "m") == []
    assert os.path.basename(stage.path).startswith(versions.STAGING_PREFIX)
    stage.publish()
    assert versions.existing_versions(tmp_path / "m") == [1]
    assert os.listdir(tmp_path / "m") == ["1"]
    assert os.path.exists(tmp_path / "m" / "1" / "saved_model.pb")


def test_published_version_has_the_permissions_of_an_ordinary_folder(tmp_path):
    (tmp_path / "ordinary").mkdir()
    stage = versions.StagedVersion(tmp_path / "m", 1)
    published = stage.publish()
    assert os.stat(published).st_mode == os.stat(tmp_path / "ordinary").st_mode


def test_discard_leaves_nothing(tmp_path):
    stage = versions.StagedVersion(tmp_path / "m", 2)
    stage.discard()
    assert os.listdir(tmp_path / "m") == []


def test_existing_version_is_a_clear_error(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="already exists; a published version is never overwritten"):
        versions.StagedVersion(tmp_path / "m", 1)


@pytest.mark.parametrize("bad", [0, -1, "2", True])
def test_version_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(ValueError, match="positive integer"):
        versions.StagedVersion(tmp_path / "m", bad)

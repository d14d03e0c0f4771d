"""Checkpoint URLs are compared as the storage reads them: no spelling (aliases, %-escapes,
case, '//', symlinks) takes a URL out from under checkpoint_root or into a prefix it was not
allowed (``CheckpointSettings.refusal``, pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridbridge.config import CheckpointSettings

OPEN = CheckpointSettings()


@pytest.mark.parametrize(("root", "url"), [
    ("gs://b/root", "gcs://b/root/victim"),          # scheme alias
    ("abfs://c/root", "az://c/root/victim"),         # scheme alias
    ("s3://ckpt/root", "s3://CKPT/root/victim"),     # bucket case
    ("s3://ckpt/root", "S3://ckpt/root/victim"),     # scheme case
    ("s3://ckpt/root", "s3://ckpt//root/victim"),    # '//'
    ("s3://ckpt/root", "s3://ckpt/root%2Fvictim"),   # %2f
    ("s3://ckpt/root", "s3://ckpt/root%2fvictim/"),  # %2f and a trailing '/'
    ("memory://root", "memory:///root/victim"),      # fsspec drops memory's leading '/'
    ("file:///data/root", "file:///data//root/victim"),
    ("file:///data/root", "/data/root//victim"),
])
def test_another_jobs_prefix_is_refused_however_it_is_spelt(root: str, url: str) -> None:
    refusal = OPEN.refusal(url, team="t", root=root, job_id="mine")
    assert refusal is not None


@pytest.mark.parametrize("url", ["s3://ckpt/vision/%2e%2e/other", "s3://ckpt/vision/%2E%2E",
                                 "s3://ckpt/vision/./x", "s3a://ckpt/vision/x",
                                 "s3n://ckpt/vision/x", "s3://ckpt/vision-evil",
                                 "s3://ckpt/visionx/y", "s3://ckpt/vision%2d/x"])
def test_hostile_spellings_outside_the_teams_prefix_are_refused(url: str) -> None:
    settings = CheckpointSettings(allowed_prefixes={"t": ("s3://ckpt/vision",)})
    assert settings.refusal(url, team="t", root="s3://ckpt/root") is not None


@pytest.mark.parametrize("url", ["s3://ckpt/vision", "s3://ckpt/vision/", "s3://ckpt/vision/a",
                                 "S3://CKPT/vision/a", "s3://ckpt//vision//a/",
                                 "gcs://g/team/a", "gs://G/team/a"])
def test_plain_and_equivalent_spellings_inside_the_prefix_are_accepted(url: str) -> None:
    settings = CheckpointSettings(allowed_prefixes={"t": ("s3://ckpt/vision/", "gs://g/team")})
    assert settings.refusal(url, team="t", root="s3://ckpt/root") is None


def test_the_jobs_own_prefix_is_accepted_however_it_is_spelt() -> None:
    for url in ("s3://ckpt/root/mine", "s3://ckpt/root/mine/", "s3://ckpt//root/mine"):
        assert OPEN.refusal(url, team="t", root="s3://ckpt/root", job_id="mine") is None


def test_a_symlink_inside_an_allowed_prefix_that_points_elsewhere_is_refused(
        tmp_path: Path) -> None:
    vision, other, root = tmp_path / "vision", tmp_path / "other", tmp_path / "root"
    for d in (vision, other, root / "victim"):
        d.mkdir(parents=True)
    (vision / "out").symlink_to(other)
    (vision / "in").symlink_to(root / "victim")
    settings = CheckpointSettings(allowed_prefixes={"t": (vision.as_uri(),)})
    assert settings.refusal((vision / "real").as_uri(), team="t", root=root.as_uri()) is None
    for url in ((vision / "out" / "x").as_uri(), str(vision / "out"),
                (vision / "in").as_uri()):
        assert settings.refusal(url, team="t", root=root.as_uri()) is not None, url
    (tmp_path / "alias").symlink_to(vision)  # a link to the allowed prefix leads inside it
    assert settings.refusal((tmp_path / "alias" / "x").as_uri(), team="t",
                            root=root.as_uri()) is None

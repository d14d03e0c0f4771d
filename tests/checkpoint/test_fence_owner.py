"""``fence.json`` names the job that owns its prefix: the control plane's ``raise_fence(...,
job=...)`` claims an unowned fence, never raises one that names another job, and a writer
opening with its token keeps the owner."""

from __future__ import annotations

import json
from typing import Any

import fsspec
import numpy as np
import pytest

import gridbridge.checkpoint as ckpt


def _fence(url: str) -> dict[str, Any]:
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    fence: dict[str, Any] = json.loads(fs.cat_file(f"{root}/fence.json"))
    return fence


def test_a_fence_names_its_job_and_is_never_raised_for_another(url: str) -> None:
    assert "PrefixOwned" in ckpt.__all__
    assert ckpt.raise_fence(url, 2, job="j-victim") == 2
    assert _fence(url)["job"] == "j-victim"
    victim = ckpt.open(url, token=2)
    victim.save(1, {"x": np.zeros(2)})
    with pytest.raises(ckpt.PrefixOwned, match="j-victim"):
        ckpt.raise_fence(url, 100, job="j-attacker")
    assert (_fence(url)["token"], _fence(url)["job"]) == (2, "j-victim")  # nothing written
    victim.save(2, {"x": np.ones(2)})  # the victim is not fenced off its own prefix
    assert ckpt.open(url).restore().step == 2
    assert ckpt.raise_fence(url, 3, job="j-victim") == 3  # its own job raises it as before


def test_a_writer_opening_with_its_token_keeps_the_owner(url: str) -> None:
    ckpt.raise_fence(url, 1, job="j-1")
    ckpt.open(url, token=4)
    fence = _fence(url)
    assert (fence["token"], fence["job"], fence["format"]) == (4, "j-1", "gridbridge-fence/1")


def test_an_unowned_fence_is_claimed_without_lowering_it(url: str) -> None:
    ckpt.raise_fence(url, 7)  # a fence of old, or one a writer created
    assert "job" not in _fence(url)
    assert ckpt.raise_fence(url, 2, job="j-1") == 7
    assert (_fence(url)["token"], _fence(url)["job"]) == (7, "j-1")
    with pytest.raises(ckpt.PrefixOwned):
        ckpt.raise_fence(url, 9, job="j-2")

"""PyTorch tensors and state_dicts through the checkpoint store (torch CPU build)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import zarr

import gridbridge.checkpoint as ckpt

try:
    import torch
except ImportError:  # skipped per test, so that `make test` fails if torch is missing
    torch = None

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _needs_torch() -> None:
    if torch is None:
        pytest.skip("PyTorch is not installed (make test installs the CPU build)")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.ReLU(), torch.nn.Linear(32, 4)
    )


def test_state_dict_and_optimizer_round_trip_exactly(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        loss = model(torch.randn(8, 16)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    url = (tmp_path / "job").as_uri()
    with ckpt.open(url) as store:
        store.save(3, {"model": model.state_dict(), "opt": opt.state_dict()["state"]})
        back = store.restore()
    restored = back.state["model"]
    assert isinstance(restored, (dict, OrderedDict))
    assert list(restored) == list(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert isinstance(restored[name], torch.Tensor)
        assert restored[name].dtype == tensor.dtype and torch.equal(restored[name], tensor)
    fresh = _model()
    fresh.load_state_dict(restored)
    x = torch.randn(5, 16)
    assert torch.equal(fresh(x), model(x))
    exp_avg = opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(back.state["opt"][0]["exp_avg"], exp_avg)


def test_bfloat16_tensor_keeps_its_dtype_and_bits(tmp_path: Path) -> None:
    t = torch.randn(64, 8).to(torch.bfloat16)
    url = (tmp_path / "job").as_uri()
    with ckpt.open(url) as store:
        store.save(1, {"w": t, "half": t.to(torch.float16)})
        back = store.restore().state
        step_url = store.step_url(1)
    assert back["w"].dtype == torch.bfloat16 and torch.equal(back["w"].view(torch.int16),
                                                             t.view(torch.int16))
    assert back["half"].dtype == torch.float16
    group = zarr.open_group(step_url, mode="r",
                            storage_options={"auto_mkdir": True})
    np.testing.assert_array_equal(group["half"][...], t.to(torch.float16).numpy())

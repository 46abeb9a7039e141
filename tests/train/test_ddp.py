"""Two-process DDP on CPU (gloo): both ranks train on different patches and end with identical weights."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from sdpm_cli.train import TrainConfig, train

from .test_loop import tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_dict: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    res = train(TrainConfig.from_dict(cfg_dict))
    torch.save({"ema": res.net.state_dict(), "losses": [r["total"] for r in res.losses], "out": str(res.out)},
               os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_two_gloo_processes_train_to_identical_weights(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, tmp_path, steps=6, val_fraction=0.0, log=str(tmp_path / "log.jsonl"))
    mp.spawn(_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["ema"].keys() == r1["ema"].keys()
    assert all(torch.equal(r0["ema"][k], r1["ema"][k]) for k in r0["ema"])  # gradients were averaged
    assert r0["losses"] == r1["losses"] and len(r0["losses"]) == 6  # logged losses are the all-reduced mean
    assert r0["out"].endswith("model.pt") and r1["out"] == "None"  # only rank 0 writes the model
    assert (tmp_path / "model.pt").is_file()
    torch.manual_seed(cfg.seed)  # the same initialisation train() uses
    from sdpm_cli.model.network import NetConfig, SDPMNet

    net0 = SDPMNet(NetConfig.from_dict(cfg.net)).state_dict()
    assert any(not torch.equal(net0[k], r0["ema"][k]) for k in net0)  # it trained
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 6  # one writer

"""Shared training infrastructure: EMA, LR schedule, atomic checkpoints, exact resume, averaging, logging, DDP."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from voxar.errors import VoxarConfigError, VoxarError
from voxar.train import checkpoint as C
from voxar.train.distributed import DistInfo, all_reduce_mean, unwrap, wrap_ddp
from voxar.train.ema import EMA
from voxar.train.logger import TrainLogger, read_log
from voxar.train.loop import GracefulInterrupt, set_seed
from voxar.train.schedule import get_lr, lr_factor, lr_lambda

REPO = Path(__file__).resolve().parents[1]


class Toy(nn.Module):
    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 8)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(8, 1)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc2(self.drop(torch.tanh(self.fc1(x))))


# ------------------------------------------------------------------------------------------------------------ EMA


def test_ema_math_without_warmup():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9, warmup=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for n in range(1, 6):
        ema.update(model)
        assert ema.shadow["weight"].item() == pytest.approx(1 - 0.9**n, abs=1e-6)
    fresh = nn.Linear(1, 1, bias=False)
    ema.copy_to(fresh)
    assert fresh.weight.item() == pytest.approx(1 - 0.9**5, abs=1e-6)


def test_ema_warmup_buffers_and_state_roundtrip():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.999, warmup=True)
    start = ema.shadow["0.weight"].clone()
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(5.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["0.weight"], 0.1 * start + 0.9 * model[0].weight)
    torch.testing.assert_close(ema.shadow["1.running_mean"], torch.full((2,), 5.0))  # buffers are copied
    assert ema.current_decay() == pytest.approx(2 / 11)
    other = EMA(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and other.decay == 0.999
    torch.testing.assert_close(other.shadow["0.weight"], ema.shadow["0.weight"])
    with pytest.raises(ValueError, match="differing weight names"):
        EMA(nn.Linear(2, 2)).load_state_dict(ema.state_dict())


def test_ema_unwraps_module_wrappers():
    class Wrapper(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.module = m

    inner = nn.Linear(2, 2)
    ema = EMA(Wrapper(inner), 0.5, warmup=False)
    assert set(ema.shadow) == {"weight", "bias"}
    ema.update(Wrapper(inner))
    assert unwrap(Wrapper(inner)) is inner


# ------------------------------------------------------------------------------------------------------- schedule


def test_schedule_warmup_then_cosine_and_linear():
    kw = dict(warmup=10, max_steps=110, min_ratio=0.1)
    f = [lr_factor(s, **kw) for s in range(130)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=True))  # rising warm-up
    assert all(a >= b for a, b in zip(f[10:110], f[11:111], strict=True))  # non-increasing decay
    assert f[60] == pytest.approx(0.1 + 0.9 * 0.5)  # cosine midpoint
    assert f[110] == pytest.approx(0.1) and f[129] == pytest.approx(0.1)
    lin = [lr_factor(s, decay="linear", **kw) for s in (10, 35, 60, 110)]
    assert lin == pytest.approx([1.0, 0.1 + 0.9 * 0.75, 0.1 + 0.9 * 0.5, 0.1])
    assert lr_factor(50, decay="constant", **kw) == 1.0
    with pytest.raises(ValueError):
        lr_factor(0, warmup=1, max_steps=10, decay="exp")


def test_schedule_drives_lambda_lr():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(warmup=3, max_steps=20))
    for step in range(25):
        assert opt.param_groups[0]["lr"] == pytest.approx(get_lr(step, 0.5, warmup=3, max_steps=20))
        opt.step()
        sched.step()
    assert sched.state_dict()["lr_lambdas"] == [None]  # a closure: nothing pickled into checkpoints


# ---------------------------------------------------------------------------------------------------- checkpoints


def _ckpt(model: nn.Module, step: int, **kw) -> dict:
    return C.make_checkpoint(step=step, model=model, config=kw.pop("config", {"model": {"dim": 8}}), **kw)


def test_checkpoint_is_weights_only_and_keeps_last_k(tmp_path):
    model = Toy()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    for step in range(1, 6):
        C.save_checkpoint(tmp_path, _ckpt(model, step, optimizers={"opt": opt}, ema=EMA(model)), keep_last=2)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["checkpoint-4.pt", "checkpoint-5.pt"]
    assert C.find_resume(tmp_path) == tmp_path / "last.pt"
    raw = torch.load(tmp_path / "last.pt", weights_only=True)  # no pickled objects anywhere
    assert raw["step"] == 5 and raw["version"] == C.CHECKPOINT_VERSION and raw["model_class"].endswith(":Toy")
    assert set(raw) >= {"model", "ema", "optimizers", "schedulers", "step", "epoch", "config", "rng"}
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    with pytest.raises(TypeError, match="weights_only"):
        C.save_checkpoint(tmp_path, _ckpt(model, 6, extra={"bad": Path("x")}))


def test_crash_while_saving_leaves_last_intact(tmp_path, monkeypatch):
    model = Toy()
    C.save_checkpoint(tmp_path, _ckpt(model, 1))
    real_save = torch.save

    def crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk, then the process dies
        raise OSError("simulated crash while writing")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="simulated crash"):
        C.save_checkpoint(tmp_path, _ckpt(model, 2))
    monkeypatch.setattr(torch, "save", real_save)
    assert C.load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert not (tmp_path / "checkpoint-2.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1.pt", "last.pt"]

    real_replace = os.replace  # a crash while pointing last.pt at the new file: last.pt still the old one

    def crash_on_last(src, dst):
        if Path(dst).name == "last.pt":
            raise OSError("simulated crash in rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_last)
    with pytest.raises(OSError, match="simulated crash"):
        C.save_checkpoint(tmp_path, _ckpt(model, 3))
    monkeypatch.setattr(os, "replace", real_replace)
    assert C.load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert C.load_checkpoint(tmp_path / "checkpoint-3.pt")["step"] == 3
    (tmp_path / ".checkpoint-4.pt.tmp999999").write_bytes(b"left by a killed process")
    C.save_checkpoint(tmp_path, _ckpt(model, 5))
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # stale temp files are swept


def test_corrupt_and_foreign_files_are_clear_errors(tmp_path):
    C.save_checkpoint(tmp_path, _ckpt(Toy(), 1))
    data = (tmp_path / "checkpoint-1.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(VoxarError, match="trunc.pt: checkpoint is corrupt or truncated"):
        C.load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(VoxarError, match="corrupt or truncated"):
        C.load_checkpoint(tmp_path / "text.pt")
    torch.save({"model": {}, "step": 1, "obj": DistInfo()}, tmp_path / "pickle.pt")  # a pickled class instance
    with pytest.raises(VoxarError, match="not a loadable voxar checkpoint"):
        C.load_checkpoint(tmp_path / "pickle.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(VoxarError, match="not a voxar training checkpoint"):
        C.load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(VoxarError, match="not found"):
        C.load_checkpoint(tmp_path / "missing.pt")


def test_config_mismatch_names_the_keys(tmp_path):
    saved = {"model": {"dim": 8, "layers": 2, "sizes": [1, 2]}, "lr": 1e-3}
    C.save_checkpoint(tmp_path, _ckpt(Toy(), 1, config=saved))
    C.load_checkpoint(tmp_path / "last.pt", expect_config={**saved, "lr": 5e-4})  # only model keys must agree
    with pytest.raises(VoxarConfigError) as err:
        C.load_checkpoint(tmp_path / "last.pt", expect_config={"model": {"dim": 16, "layers": 2, "sizes": [1, 3]}})
    msg = str(err.value)
    assert "model.dim (checkpoint 8, now 16)" in msg and "model.sizes" in msg and "model.layers" not in msg
    with pytest.raises(VoxarConfigError, match="lr"):
        C.load_checkpoint(tmp_path / "last.pt", expect_config={**saved, "lr": 5e-4}, compare_keys=None)
    # ignored keys (sampling-only settings): changed, or new since the checkpoint, they do not block a resume
    now = {"model": {**saved["model"], "temperature": 1.0}, "lr": 1e-3}
    with pytest.raises(VoxarConfigError, match="model.temperature .checkpoint '<absent>', now 1.0"):
        C.load_checkpoint(tmp_path / "last.pt", expect_config=now)
    C.load_checkpoint(tmp_path / "last.pt", expect_config=now, ignore_keys=("model.temperature",))
    with pytest.raises(VoxarConfigError, match="model.dim"):  # the others still count
        C.load_checkpoint(tmp_path / "last.pt", expect_config={"model": {**now["model"], "dim": 9}},
                          ignore_keys=("model.temperature",))  # fmt: skip


def _toy_run(exp: Path, max_steps: int, stop_at: int | None = None, resume: bool = False) -> tuple[Toy, EMA]:
    """A toy training loop using every piece of the infrastructure; randomness from Python, numpy and torch."""
    set_seed(0)
    model = Toy()
    ema = EMA(model, 0.9)
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(warmup=2, max_steps=max_steps))
    config = {"model": {"hidden": 8}, "max_steps": max_steps}
    step = 0
    if resume:
        ckpt = C.load_checkpoint(C.find_resume(exp), expect_config=config)
        step, _ = C.restore_checkpoint(ckpt, model=model, ema=ema, optimizers={"o": opt}, schedulers={"s": sched})
    while step < (stop_at or max_steps):
        x = torch.randn(4, 3) + float(np.random.randn()) + random.random()
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model)
        step += 1
    opts, scheds = {"o": opt}, {"s": sched}
    ckpt = C.make_checkpoint(step=step, model=model, ema=ema, optimizers=opts, schedulers=scheds, config=config)
    C.save_checkpoint(exp, ckpt)
    return model, ema


def test_resume_is_exact(tmp_path):
    straight, ema_a = _toy_run(tmp_path / "a", 4)
    _toy_run(tmp_path / "b", 4, stop_at=2)
    resumed, ema_b = _toy_run(tmp_path / "b", 4, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for name in ema_a.shadow:
        assert torch.equal(ema_a.shadow[name], ema_b.shadow[name]), name
    assert ema_a.num_updates == ema_b.num_updates == 4
    assert C.load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 4
    # without restoring the random state the result differs: the check above has teeth
    set_seed(0)
    other, _ = _toy_run(tmp_path / "c", 4, stop_at=2)
    state = C.load_checkpoint(tmp_path / "c" / "last.pt")
    state["rng"] = None
    torch.save(state, tmp_path / "c" / "last.pt")
    diverged, _ = _toy_run(tmp_path / "c", 4, resume=True)
    assert not torch.equal(diverged.fc1.weight, straight.fc1.weight)


def test_rng_state_roundtrip():
    state = C.rng_state()
    a = (random.random(), float(np.random.rand()), torch.rand(1).item())
    C.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == a


def _filled(value: float) -> dict:
    model = Toy()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
        model.calls.fill_(int(value))
    return C.make_checkpoint(step=int(value), model=model)


def test_average_checkpoints(tmp_path):
    for v in (1.0, 2.0, 6.0):
        C.save_checkpoint(tmp_path, _filled(v))
    avg = C.average_checkpoints(C.list_checkpoints(tmp_path)[-2:])
    torch.testing.assert_close(avg["fc1.weight"], torch.full((8, 3), 4.0))
    assert avg["calls"].item() == 6 and avg["calls"].dtype == torch.long  # integer tensors: from the last
    bad = C.make_checkpoint(step=9, model=nn.Linear(3, 4))
    C.save_checkpoint(tmp_path, bad)
    with pytest.raises(VoxarError, match="weight names differ"):
        C.average_checkpoints([tmp_path / "checkpoint-1.pt", tmp_path / "checkpoint-9.pt"])


def test_average_checkpoints_cli(tmp_path):
    from voxar.bin.average_checkpoints import main
    from voxar.config import to_dict
    from voxar.models.vocoder import Vocoder, VocoderConfig

    cfg = VocoderConfig(dim=16, intermediate_dim=32, num_layers=1)
    exp = tmp_path / "exp"
    models = []
    for step in (1, 2, 3):
        torch.manual_seed(step)
        models.append(Vocoder(cfg))
        ck = C.make_checkpoint(step=step, model=models[-1], model_config=to_dict(cfg), config={"model": to_dict(cfg)})
        C.save_checkpoint(exp, ck)
    assert main(["--exp", str(exp), "--last", "2", "--out", str(tmp_path / "avg.pt")]) == 0
    out = torch.load(tmp_path / "avg.pt", weights_only=True)
    expect = (models[1].embed.conv.weight + models[2].embed.conv.weight) / 2
    torch.testing.assert_close(out["model"]["embed.conv.weight"], expect)
    assert main(["--exp", str(exp), "--last", "3", "--out", str(tmp_path / "avg_dir")]) == 0
    loaded = Vocoder.from_pretrained(tmp_path / "avg_dir")
    mean3 = sum(m.embed.conv.weight for m in models) / 3
    torch.testing.assert_close(loaded.embed.conv.weight, mean3)
    assert main(["--exp", str(tmp_path / "nothing"), "--last", "2", "--out", str(tmp_path / "x.pt")]) == 1


# --------------------------------------------------------------------------------------------- logging, signals


def test_logger_jsonl_and_tensorboard(tmp_path):
    with TrainLogger(tmp_path, tensorboard=True, progress=True, total_steps=10) as log:
        log.log(1, {"loss": torch.tensor(2.5), "lr": 1e-3})
        log.log(2, {"loss": float("nan")})
        log.log(2, {"mel_l1": 1.0}, split="valid")
        log.progress(2, loss=2.5)
    recs = read_log(tmp_path / "train_log.jsonl")
    assert [(r["step"], r["split"]) for r in recs] == [(1, "train"), (2, "train"), (2, "valid")]
    assert recs[0]["loss"] == 2.5 and recs[1]["loss"] is None
    json.dumps(recs)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    silent = TrainLogger(tmp_path / "rank1", enabled=False)
    silent.log(1, {"loss": 1.0})
    assert not (tmp_path / "rank1").exists()


def test_logger_without_tensorboard_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with TrainLogger(tmp_path, progress=False) as log:
        log.log(1, {"loss": 1.0})
    assert "tensorboard is not installed" in caplog.text
    assert not (tmp_path / "tb").exists() and read_log(tmp_path / "train_log.jsonl")[0]["loss"] == 1.0


def test_graceful_interrupt_flags_then_restores():
    before = signal.getsignal(signal.SIGTERM)
    with GracefulInterrupt() as interrupt:
        assert not interrupt.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupt.requested and interrupt.signum == signal.SIGTERM and interrupt.should_stop()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal stops at once
    assert signal.getsignal(signal.SIGTERM) == before


def test_dist_info_from_env(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    info = DistInfo.from_env()
    assert (info.rank, info.local_rank, info.world_size, info.is_main, info.distributed) == (3, 1, 4, False, True)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(VoxarError, match="bad torchrun environment"):
        DistInfo.from_env()
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k)
    info = DistInfo.from_env()
    assert info.is_main and not info.distributed
    model = nn.Linear(1, 1)
    assert wrap_ddp(model, info, torch.device("cpu")) is model and all_reduce_mean(torch.tensor(2.0)) == 2.0


# ------------------------------------------------------------------------------------------------------------ DDP


def _ddp_worker(rank: int, port: int, tmp: Path) -> None:
    """One rank of a 2-process gloo job (run in a spawned child process)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from voxar.train.distributed import any_rank, cleanup, device_for, init_distributed

    torch.set_num_threads(1)
    info = init_distributed(device="cpu")
    assert torch.distributed.get_backend() == "gloo"
    torch.manual_seed(100 + info.rank)  # different init per rank: DDP must broadcast rank 0's weights
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    if info.rank == 0:
        torch.save(model.state_dict(), tmp / "init.pt")
    ddp = wrap_ddp(model, info, device_for(info, "cpu"))
    ema = EMA(ddp, 0.5)
    opt = torch.optim.AdamW(ddp.parameters(), 0.05)
    data = torch.load(tmp / "data.pt")
    x, y = data["x"].chunk(info.world_size)[info.rank], data["y"].chunk(info.world_size)[info.rank]
    for _ in range(3):
        loss = (ddp(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(ddp)
    assert all_reduce_mean(float(info.rank)) == 0.5
    assert any_rank(info.rank == 1) and not any_rank(False)
    rng = C.gather_rng_states()
    assert rng["world_size"] == 2 and len(rng["states"]) == 2
    if info.rank == 0:
        torch.save({"model": model.state_dict(), "ema": ema.shadow}, tmp / "ddp.pt")
    cleanup(sync=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_process_gloo_matches_single_process(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(8, 3)
    torch.save({"x": x, "y": x.sum(1, keepdim=True)}, tmp_path / "data.pt")
    port = _free_port()
    # spawn, not fork: forking after torch's thread pool has run (earlier tests) can deadlock the children
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_ddp_worker, args=(rank, port, tmp_path)) for rank in range(2)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=180)
            assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    # the same 3 steps in one process on the whole global batch
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model.load_state_dict(torch.load(tmp_path / "init.pt", weights_only=True))
    ema = EMA(model, 0.5)
    opt = torch.optim.AdamW(model.parameters(), 0.05)
    for _ in range(3):
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp["model"][name], value, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ddp["ema"][name], ema.shadow[name], atol=1e-6, rtol=1e-5)

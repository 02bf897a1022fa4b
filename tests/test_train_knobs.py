"""Each training knob observed through what it changes: checkpoints on disk, the
logged learning rate and losses, the number of epochs run, the weights, the loaders."""

import json
import math
import sys
import time
import zipfile

import numpy as np
import pytest
from torch.utils.data import Dataset

from knobs import canonical_tiny, distance, export, metrics, train, weights
from ptycho_lib import config
from ptycho_lib.io import read_npz
from ptycho_lib.training import make_loaders


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return canonical_tiny(tmp_path_factory.mktemp("data") / "tiny.npz")


def test_same_seed_gives_bit_identical_weights_and_reconstructions_another_seed_does_not(data, tmp_path):
    import infer as infer_script
    import torch
    runs = {}
    for name, seed, mode in (("a", "5", "--deterministic"), ("b", "5", "--deterministic"),
                             ("c", "6", "--no-deterministic")):
        out = train(data, tmp_path / name, "--seed", seed, mode)
        # (on the CPU the two modes compute the same; the switch is torch's)
        assert torch.are_deterministic_algorithms_enabled() == (mode == "--deterministic")
        bundle = export(out / "best.ckpt", tmp_path / name / "wts.h5.zip")
        infer_script.main(["--model-path", str(bundle), "--test-data", str(data), "--output", str(tmp_path / f"{name}.npz"),
                           "--quiet", "--accelerator", "cpu", "--threads", "1"])
        runs[name] = weights(out / "best.ckpt")
    assert distance(runs["a"], runs["b"]) == 0.0
    assert distance(runs["a"], runs["c"]) > 1e-3
    ra, rb, rc = (read_npz(tmp_path / f"{n}.npz")["object"] for n in "abc")
    assert np.array_equal(ra, rb) and not np.array_equal(ra, rc)


def test_simulated_scans_add_their_groups_to_every_epoch_reproducibly(data, tmp_path):
    plain = train(data, tmp_path / "plain", "--max-epochs", "1")
    runs = [train(data, tmp_path / f"sim{i}", "--max-epochs", "1", "--simulated-scans", "2") for i in range(2)]
    # 16 groups of the scan + 16 of each simulated scan, 8 a batch: 6 steps instead of 2
    assert [int(r["step"]) for r in metrics(plain)] == [2] and [int(r["step"]) for r in metrics(runs[0])] == [6]
    assert distance(weights(runs[0] / "best.ckpt"), weights(runs[1] / "best.ckpt")) == 0.0
    assert distance(weights(runs[0] / "best.ckpt"), weights(plain / "best.ckpt")) > 1e-3


def test_top_k_keeps_the_best_epochs_and_the_bundle_comes_from_the_best(data, tmp_path):
    out = train(data, tmp_path / "min", "--max-epochs", "5", "--learning-rate", "3e-3", "--checkpoint-save-top-k", "2")
    val = [float(r["val_loss"]) for r in metrics(out)]
    assert len(val) == 5
    kept = sorted(int(p.name[6:9]) for p in (out / "checkpoints").glob("*.ckpt"))
    assert kept == sorted(np.argsort(val)[:2].tolist())
    manifest = json.loads(zipfile.ZipFile(export(out / "best.ckpt", tmp_path / "min.zip")).read("manifest.json"))
    chosen = manifest["checkpoint"]
    assert chosen["epoch"] == int(np.argmin(val)) and chosen["monitor"] == "val_loss" and chosen["mode"] == "min"
    assert chosen["score"] == pytest.approx(min(val), rel=1e-6)
    assert distance(weights(out / "best.ckpt"), weights(out / "checkpoints" / chosen["file"])) == 0.0
    assert read_last_epoch(out) == 4

    out = train(data, tmp_path / "max", "--max-epochs", "5", "--learning-rate", "3e-3",
                "--checkpoint-save-top-k", "-1", "--checkpoint-mode", "max", "--checkpoint-monitor", "train_loss")
    loss = [float(r["train_loss"]) for r in metrics(out)]
    assert len(list((out / "checkpoints").glob("*.ckpt"))) == 5
    manifest = json.loads(zipfile.ZipFile(export(out / "best.ckpt", tmp_path / "max.zip")).read("manifest.json"))
    assert manifest["checkpoint"]["epoch"] == int(np.argmax(loss)) and manifest["checkpoint"]["monitor"] == "train_loss"


def read_last_epoch(out):
    import torch
    return torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)["epoch"]


def test_early_stopping_ends_a_plateaued_run(data, tmp_path):
    # a learning rate far below float32 resolution leaves the weights as they are: a plateau
    plateau = ["--learning-rate", "1e-12", "--norm", "none", "--max-epochs", "10"]
    out = train(data, tmp_path / "stop", *plateau, "--early-stop-patience", "2")
    assert len(metrics(out)) == 3  # the first epoch sets the best, two more without improvement


def test_schedulers_set_the_learning_rate_logged_each_epoch(data, tmp_path):
    step = train(data, tmp_path / "step", "--max-epochs", "3", "--scheduler", "step", "--scheduler-step-size", "1",
                 "--scheduler-gamma", "0.5")
    assert [float(r["lr"]) for r in metrics(step)] == pytest.approx([1e-3, 5e-4, 2.5e-4], rel=1e-6)

    cosine = train(data, tmp_path / "cos", "--max-epochs", "3", "--scheduler", "cosine", "--scheduler-min-lr", "1e-4",
                   "--scheduler-t-max", "4")
    expected = [1e-4 + 0.9e-3 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(3)]
    assert [float(r["lr"]) for r in metrics(cosine)] == pytest.approx(expected, rel=1e-6)

    plateau = train(data, tmp_path / "plat", "--max-epochs", "4", "--learning-rate", "1e-12", "--norm", "none",
                    "--scheduler", "plateau", "--scheduler-patience", "0", "--scheduler-gamma", "0.5")
    assert [float(r["lr"]) for r in metrics(plateau)] == pytest.approx([1e-12, 1e-12, 5e-13, 2.5e-13], rel=1e-6)


def test_accumulating_two_batches_of_four_matches_one_batch_of_eight(data, tmp_path):
    # batch norm would see the smaller batches; bf16 rounds the two sums differently
    common = ["--max-epochs", "1", "--norm", "none", "--precision", "fp32"]
    big = weights(train(data, tmp_path / "b8", *common, "--batch-size", "8") / "best.ckpt")
    acc = weights(train(data, tmp_path / "b4x2", *common, "--batch-size", "4", "--accumulate-grad-batches", "2")
                  / "best.ckpt")
    small = weights(train(data, tmp_path / "b4", *common, "--batch-size", "4") / "best.ckpt")
    assert distance(big, acc) < 0.01 * distance(big, small)


@pytest.mark.parametrize("kind", ["csv", "tensorboard", "mlflow", "none"])
def test_logger_writes_its_own_format(data, tmp_path, kind):
    if kind in ("tensorboard", "mlflow"):
        pytest.importorskip(kind)
    out = train(data, tmp_path / kind, "--logger", kind)
    logs = out / "logs"
    assert len(metrics(out)) == 2  # the pipeline's table, whatever the logger
    if kind == "none":
        assert not logs.exists()
    elif kind == "csv":
        assert "val_loss" in (logs / "csv" / "metrics.csv").read_text().splitlines()[0]
    elif kind == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        events = EventAccumulator(str(logs / "tensorboard")).Reload()
        assert {"train_loss", "val_loss", "lr"} <= set(events.Tags()["scalars"])
        assert len(events.Scalars("val_loss")) == 2
    else:
        runs = [p for p in (logs / "mlruns").glob("*/*/metrics/val_loss")]
        assert len(runs) == 1 and len(runs[0].read_text().splitlines()) == 2


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_missing_optional_logger_says_how_to_install_it(data, tmp_path, kind, monkeypatch, capsys):
    from ptycho_lib.cli import run
    import train as train_script
    monkeypatch.setitem(sys.modules, kind, None)  # as if the package were not installed
    with pytest.raises(SystemExit) as e:
        run(train_script.main, ["--train-data-file", str(data), "--output-dir", str(tmp_path / "out"),
                                "--logger", kind])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --logger {kind} needs the optional package") and "pip install" in err[-1]
    assert not (tmp_path / "out").exists()


def test_monitoring_val_loss_without_validation_data_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match="--checkpoint-monitor val_loss needs validation data"):
        train(data, tmp_path / "out", "--val-fraction", "0")
    assert not (tmp_path / "out").exists()
    out = train(data, tmp_path / "ok", "--val-fraction", "0", "--checkpoint-monitor", "train_loss")
    assert [r["val_loss"] for r in metrics(out)] == ["", ""] and (out / "best.ckpt").exists()


class Recorder(Dataset):
    """Records which process fetched which item, and when."""

    def __init__(self, log):
        self.log = log

    def __len__(self):
        return 12

    def __getitem__(self, i):
        import os
        with open(self.log, "a") as f:
            f.write(f"{time.monotonic()} {os.getpid()} {i}\n")
        return i


def _loaders(tmp_path, *flags):
    import train as train_script
    args = train_script.parser().parse_args(["--train-data-file", "x", "--output-dir", "y", *flags])
    cfg = config.build(args, "train")
    log = tmp_path / "fetch.log"
    loader, _ = make_loaders(Recorder(log), None, cfg["train"], cfg["execution"])
    return loader, log


def _fetched(log):
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("prefetch", [2, 4])
def test_prefetch_factor_is_how_far_the_worker_reads_ahead(tmp_path, prefetch):
    loader, log = _loaders(tmp_path, "--batch-size", "1", "--num-workers", "1", "--prefetch-factor", str(prefetch))
    it = iter(loader)
    next(it)
    time.sleep(1.0)  # let the worker fill its queue
    assert len(_fetched(log)) == prefetch + 1  # the batch handed out plus the prefetch queue
    del it


@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_workers_survive_between_epochs(tmp_path, persistent):
    flag = "--persistent-workers" if persistent else "--no-persistent-workers"
    loader, log = _loaders(tmp_path, "--batch-size", "4", "--num-workers", "1", flag)
    for _ in range(2):
        list(loader)
    pids = [line.split()[1] for line in _fetched(log)]
    assert len(pids) == 24 and (len(set(pids)) == 1) == persistent


def test_exported_batch_norm_statistics_are_those_of_the_final_weights(data, tmp_path):
    """Inference normalises with the running statistics; they must be the training
    patterns' statistics under the saved weights, not an average lagging behind them."""
    import torch
    from torch.nn import functional as F

    from ptycho_lib.data import input_scale
    from ptycho_lib.scan import split_rows
    from ptycho_lib.scan import load_scan
    from ptycho_lib.config import ModelConfig
    from ptycho_lib.model import PtychoNet

    out = train(data, tmp_path / "run", "--max-epochs", "3", "--learning-rate", "1e-2")
    state = weights(out / "best.ckpt")
    scan = load_scan(data)
    train_rows = split_rows(scan.y, 0.1)[0]  # every training position, as the dataset holds them
    x = torch.from_numpy(scan.amplitude[train_rows]) * input_scale(scan.amplitude)
    net = PtychoNet(n=scan.n, width=8, stem=ModelConfig().stem)
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    z = F.pixel_unshuffle(net.inputs(x), net.stem)
    first = F.conv2d(z, state["net.encoder.0.0.weight"], padding=1)  # input of the first batch norm
    np.testing.assert_allclose(state["net.encoder.0.1.running_mean"], first.mean(dim=(0, 2, 3)), rtol=1e-4,
                               atol=1e-6)

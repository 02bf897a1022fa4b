"""Train once, reconstruct many: a model trained on several scans, and its adaptation to a
new scan as a stage of its own.

The workflow tests use one temporary copy of the repository with three tiny scans: the
model `inst` is trained on a and c; scan b is reconstructed by `inst` adapted to b for
one epoch (`adapt_epochs: 1`), taught by inst's refined reconstruction of b (the
`teacher` rule).
"""

import io
import json
import zipfile
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import default_collate

from conftest import TINY
from helpers import TINY_CONFIG, copy_repo, planned_jobs, snakemake
from ptycho_lib.config import DataConfig, ExecConfig, ModelConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.data import input_scale
from ptycho_lib.io import sha256_file, write_npz
from ptycho_lib.model import PtychoNet
from ptycho_lib.scan import scan_from
from ptycho_lib.simulate import simulate
from ptycho_lib.training import build_datasets, make_loaders, train

SPECS = {"a": TINY, "b": replace(TINY, seed=4, object_seed=11), "c": replace(TINY, seed=6, object_seed=13)}


def test_a_model_of_two_scans_sees_groups_of_both_never_mixed():
    scans = [scan_from(canonicalise(simulate(SPECS[k]), f"{k}.npz")) for k in "ac"]
    net = PtychoNet(32, 8)
    data = DataConfig(n_groups=0, simulated_scans=1)
    train_set, val_set = build_datasets(scans, None, data, 0, [input_scale(s.amplitude) for s in scans], net.inputs)
    # every pattern of a scan, as the counts the loss compares with
    rows = [{torch.from_numpy(s.amplitude[i]).square().numpy().tobytes(): i for i in range(len(s.x))} for s in scans]
    seen = {"train": set(), "val": set()}
    for part, dataset in (("train", train_set), ("val", val_set)):
        for i in range(len(dataset)):
            _, counts, _, k = dataset[i]
            members = [rows[k].get(c.numpy().tobytes()) for c in counts]
            if part == "train" and i >= train_set.cumulative_sizes[1]:  # the simulated scan, made like scan 0
                assert k == 0 and members == [None] * len(members)
                continue
            assert None not in members, f"a {part} group of scan {k} holds patterns of another scan"
            seen[part].add(k)
    assert seen == {"train": {0, 1}, "val": {0, 1}}  # both scans trained on and validated


def test_the_loader_hands_out_the_shuffled_groups_of_every_scan_as_whole_batches():
    scans = [scan_from(canonicalise(simulate(SPECS[k]), f"{k}.npz")) for k in "ac"]
    net = PtychoNet(32, 8)
    train_set, _ = build_datasets(scans, None, DataConfig(simulated_scans=1), 0,
                                  [input_scale(s.amplitude) for s in scans], net.inputs)
    loader, _ = make_loaders(train_set, None, TrainConfig(batch_size=5), ExecConfig())
    order = list(iter(loader.sampler))
    assert len({train_set[i][3] for i in order[:5]}) > 1  # a batch that spans scans
    one_by_one = [default_collate([train_set[i] for i in order[5 * b:5 * b + 5]]) for b in range(len(loader))]
    for batch, expected in zip(loader, one_by_one):
        for field, stacked in zip(batch, expected):
            assert torch.equal(field, stacked)
    train_set.to("cpu")  # the scans joined into one table each, as on a GPU
    assert train_set.joined is not None
    for batch, expected in zip(loader, one_by_one):
        for field, stacked in zip(batch, expected):
            assert torch.equal(field, stacked)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = copy_repo(tmp_path_factory.mktemp("transfer"))
    for name, spec in SPECS.items():
        write_npz(work / f"resources/{name}.npz", simulate(spec))
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    config["datasets"] = {"a": {"model": "inst"}, "b": {"model": "inst", "adapt_epochs": 1}, "c": {"model": "inst"}}
    config["models"] = {"inst": {"train_data": ["a", "c"]}}
    config = {**config, **{k: {**config[k], **v} for k, v in TINY_CONFIG.items()}}
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(work, "results/recon/b.png", "--cores", "2")
    assert planned_jobs(out.stdout + out.stderr) == {"validate": 3, "transpose": 3, "train": 1, "export": 1,
                                                     "teacher": 1, "adapt": 1, "recon": 1, "render": 1}
    return work


def weights(bundle) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(bundle) as zf, h5py.File(io.BytesIO(zf.read("wts.h5"))) as f:
        return {k: f[k][()] for k in f if k.startswith("net.") and k.endswith(".weight") and f[k].ndim == 4}


def test_adaptation_starts_from_the_reused_weights(built):
    reused = weights(built / "results/models/inst/wts.h5.zip")
    adapted = weights(built / "results/adapt/b/wts.h5.zip")
    assert reused.keys() == adapted.keys() and len(reused) > 10
    change = np.sqrt(sum(np.sum((adapted[k] - reused[k]) ** 2) for k in reused)
                     / sum(np.sum(reused[k] ** 2) for k in reused))
    assert change < 0.2  # a fresh network's weights would differ by about their own size (~1.4)
    assert any(not np.array_equal(adapted[k], reused[k]) for k in reused)  # and it did train
    metrics = (built / "results/adapt/b/metrics.csv").read_text().splitlines()
    assert len(metrics) == 2  # header + the one adaptation epoch
    prov = json.loads((built / "results/adapt/b/best.ckpt.prov.json").read_text())["inputs"]
    assert prov["init_model"] == {"path": "results/models/inst/wts.h5.zip",
                                  "sha256": sha256_file(built / "results/models/inst/wts.h5.zip")}
    assert prov["train_data"]["path"] == "results/canonical/b.npz"
    assert prov["teacher"] == {"path": "results/adapt/b/teacher.npz",
                               "sha256": sha256_file(built / "results/adapt/b/teacher.npz")}


def test_training_from_given_weights_starts_there(tmp_path):
    """The trainer's `init`: one small step away from the given weights (a fresh network
    from the trainer's seed would be as far from them as they are large); the probe of
    the estimate input is the new scan's, not the given one."""
    scan = scan_from(canonicalise(simulate(SPECS["b"]), "b.npz"))
    torch.manual_seed(123)
    start = PtychoNet(32, 8).state_dict()
    start["probe"] = torch.zeros_like(start["probe"])
    ckpt = train(scan, None, tmp_path, DataConfig(n_groups=8), ModelConfig(width=8),
                 TrainConfig(max_epochs=1, batch_size=8, learning_rate=1e-4, logger="none"),
                 ExecConfig(threads=1, quiet=True), init=start)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    convs = [k for k, v in start.items() if v.ndim == 4 and not k.startswith("head")]
    for k in convs:
        assert torch.allclose(state[f"net.{k}"], start[k], atol=2e-4), k
    assert state["net.probe"].abs().max() > 0


def test_an_adaptation_takes_the_architecture_from_the_reused_bundle(tmp_path):
    """A bundle whose network starts at N/4 and is 8 wide, adapted under settings that
    say N/2 and 16: `--init-model` takes the architecture from the bundle."""
    from knobs import canonical_tiny, train as train_script
    from ptycho_lib.bundle import write_bundle

    torch.manual_seed(0)
    reused = PtychoNet(32, 8, stem=4)
    write_bundle(tmp_path / "reused.h5.zip", {f"net.{k}": v for k, v in reused.state_dict().items()},
                 {"architecture": reused.architecture(), "gridsize": 2})
    out = train_script(canonical_tiny(tmp_path / "b.npz"), tmp_path / "adapted", "--width", "16", "--stem", "2",
                       "--max-epochs", "1", "--init-model", str(tmp_path / "reused.h5.zip"))
    ckpt = torch.load(out / "best.ckpt", map_location="cpu", weights_only=True)
    assert (ckpt["hyper_parameters"]["stem"], ckpt["hyper_parameters"]["width"]) == (4, 8)
    assert ckpt["state_dict"]["net.head.weight"].shape == reused.state_dict()["head.weight"].shape


def would_run(work, *args) -> dict[str, int]:
    out = snakemake(work, "-n", "results/recon/b.png", *args)
    text = out.stdout + out.stderr
    return {} if "Nothing to be done" in text else {k: v for k, v in planned_jobs(text).items()}


@pytest.mark.parametrize("change, expected", [
    ("nothing", {}),
    ("new raw content, adapted scan b", {"validate": 1, "transpose": 1, "teacher": 1, "adapt": 1, "recon": 1,
                                         "render": 1}),
    ("new raw content, training scan c", {"validate": 1, "transpose": 1, "train": 1, "export": 1, "teacher": 1,
                                          "adapt": 1, "recon": 1, "render": 1}),
    ("adapt_epochs 2", {"adapt": 1, "recon": 1, "render": 1}),
    ("adapt_teacher false", {"adapt": 1, "recon": 1, "render": 1}),
])
def test_adaptation_reruns_alone_when_only_the_new_scan_changes(built, change, expected, tmp_path):
    args = []
    if change.startswith("new raw"):
        path = built / f"resources/{change[-1]}.npz"
        old = path.read_bytes()
        write_npz(path, simulate(replace(SPECS[change[-1]], object_seed=99)))
    elif change.startswith("adapt_"):
        key, value = change.split()
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({"datasets": {"b": {key: yaml.safe_load(value)}}}))
        args = ["--configfile", str(tmp_path / "c.yaml")]
    try:
        assert would_run(built, *args) == expected
    finally:
        if change.startswith("new raw"):
            path.write_bytes(old)

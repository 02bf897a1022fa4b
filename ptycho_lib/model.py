"""The network (diffraction amplitudes -> complex object patch) and the physics-informed
LightningModule that trains it against measured counts."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from . import physics
from .config import ModelConfig


def conv(cin, cout, stride=1, norm=True):
    """3x3 convolution, batch norm (which speeds up training several-fold here), ReLU."""
    layers = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not norm)]
    return nn.Sequential(*layers, *([nn.BatchNorm2d(cout)] if norm else []), nn.ReLU(inplace=True))


def up(cin, cout, norm=True, joined=0, depth=1):
    """2x transposed convolution, ReLU, then `depth` 3x3 convolutions, the first over its
    output joined by `joined` skip channels."""
    upsample = nn.ConvTranspose2d(cin, cout, 2, stride=2)  # made first: the seed's draws stay in layer order
    convs = [conv(cout + joined, cout, 1, norm), *(conv(cout, cout, 1, norm) for _ in range(depth - 1))]
    return nn.Sequential(upsample, nn.ReLU(inplace=True), nn.Sequential(*(layer for c in convs for layer in c)))


class Join(torch.autograd.Function):
    """torch.cat over channels whose backward hands every input a dense gradient in the
    output's layout. cat's own backward hands out channel slices, which are strided in
    channels-last; ReLU's backward and the skip sum take a slow path on them (~7x on a
    CPU, ~2 ms of a training step; docs/benchmarks.md)."""

    @staticmethod
    def forward(ctx, *xs):
        ctx.channels = [x.shape[1] for x in xs]
        return torch.cat(xs, 1)

    @staticmethod
    def backward(ctx, grad):
        channels_last = grad.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        return tuple(g.contiguous(memory_format=layout) for g in grad.split(ctx.channels, 1))


class PtychoNet(nn.Module):
    """One pattern in, one complex object patch (N x N) out.

    Inputs: the scaled diffraction amplitudes (through sqrt with input_transform
    'sqrt', which lifts the weak dark field) and, with estimate_iterations > 0, the
    real and imaginary parts of a first object estimate made from the pattern and the
    known probe (physics.single_pattern_estimate; the probe is a buffer, saved with
    the weights). The diffraction says everything but is non-local; the estimate is an
    image already in the object's frame, with its fine detail in place, so the network
    only has to correct it (docs/benchmarks.md, "The estimate input").

    A space-to-depth stem (pixel_unshuffle by `stem`) brings N x N to N/stem x N/stem,
    strided 3x3 convolutions go down to N/16 so that every output pixel sees the whole
    pattern (diffraction is non-local; each level convolves twice, the N/2 level
    `n2_convs` times: once by default, a second convolution there cost ~8 % of a
    training step and bought nothing, docs/benchmarks.md), transposed convolutions
    come back up (with `skips`, each level joined by the encoder's features of the
    same size, as in a U-Net), and a pixel_shuffle restores N x N. A stem of 4 has no
    N/2 level, whose per-pixel work is ~40 % of the network's training time on a CPU;
    its last level joins the stacked estimate itself, so the estimate's fine detail
    reaches the output, and convolves twice (docs/benchmarks.md). Two output channels: amplitude (softplus,
    starts at 1) and phase (pi * tanh, starts at 0). The full window is predicted: the
    probe, not a fixed support, limits where the object is constrained.
    """

    def __init__(self, n: int = 64, width: int = 16, norm: str = "batch", input_transform: str = "sqrt",
                 estimate_iterations: int = 10, skips: bool = True, stem: int = 2, n2_convs: int = 1):
        super().__init__()
        if n % 16:
            raise ValueError(f"pattern size {n} must be a multiple of 16")
        if norm not in ("batch", "none") or input_transform not in ("sqrt", "none"):
            raise ValueError(f"unknown norm {norm!r} or input_transform {input_transform!r}")
        if estimate_iterations < 0:
            raise ValueError(f"estimate_iterations must be >= 0, got {estimate_iterations}")
        if stem not in (2, 4) or n2_convs not in (1, 2):
            raise ValueError(f"stem must be 2 or 4 and n2_convs 1 or 2, got {stem} and {n2_convs}")
        w, bn = width, norm == "batch"
        self.n, self.width, self.norm, self.input_transform = n, width, norm, input_transform
        self.estimate_iterations, self.skips, self.stem, self.n2_convs = estimate_iterations, skips, stem, n2_convs
        if estimate_iterations:  # set by the trainer (PINN); loaded with the weights
            self.register_buffer("probe", torch.zeros(n, n, dtype=torch.complex64))
        # channels per level, N/2 down to N/16; a stem of 4 starts at N/4
        widths = [w, 2 * w, 4 * w, 4 * w][stem // 2 - 1:]
        cin_ch = 3 if estimate_iterations else 1
        cin, layers, ends = stem**2 * cin_ch, [], []
        for level, cout in enumerate(widths):
            repeats = n2_convs - 1 if level == 0 and stem == 2 else 1
            layers += [conv(cin, cout, 2 if level else 1, bn), *(conv(cout, cout, 1, bn) for _ in range(repeats))]
            ends.append(len(layers) - 1)
            cin = cout
        self.encoder = nn.Sequential(*layers)
        self.skip_levels = tuple(ends[:-1])  # each level's output but the deepest
        # with a stem of 4 the last level (i = 0) also joins the stacked estimate (its fine
        # detail, which no N/2 level carries; the pattern is not in the object's frame) and
        # convolves twice
        estimate = (cin_ch - 1) * stem**2 if stem == 4 else 0
        self.decoder = nn.Sequential(*(
            up(widths[i + 1], widths[i], bn, widths[i] * skips + (0 if i else estimate), 1 if i or stem == 2 else 2)
            for i in reversed(range(len(widths) - 1))))
        self.head = nn.Conv2d(widths[0], 2 * stem**2, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():  # softplus(b) = 1: start from a transparent object
            self.head.bias.copy_(torch.tensor([math.log(math.e - 1)] * stem**2 + [0.0] * stem**2))

    @classmethod
    def from_config(cls, n: int, model: ModelConfig) -> PtychoNet:
        return cls(n, model.width, model.norm, model.input_transform, model.estimate_iterations, model.skips,
                   model.stem, model.n2_convs)

    def architecture(self) -> dict:
        """What rebuilds this network (the bundle's manifest entry)."""
        return {"name": "PtychoNet", "n": self.n, "width": self.width, "norm": self.norm,
                "input_transform": self.input_transform, "estimate_iterations": self.estimate_iterations,
                "skips": self.skips, "stem": self.stem, "n2_convs": self.n2_convs}

    def settings(self, model: ModelConfig) -> ModelConfig:
        """`model` with this network's architecture in place of its own (a reused
        bundle's network fixes it)."""
        return replace(model, **{k: v for k, v in self.architecture().items() if k not in ("name", "n")})

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The channels the network sees, (B, C, N, N), for scaled amplitudes x (B, N, N);
        unmeasured pixels (x < 0) are seen as zero and left out of the estimate."""
        measured = x.clamp_min(0)
        channels = [measured.sqrt() if self.input_transform == "sqrt" else measured]
        if self.estimate_iterations:
            with torch.no_grad():
                est = physics.single_pattern_estimate(x.float(), self.probe, self.estimate_iterations)
            channels += [est.real.to(x.dtype) - 1, est.imag.to(x.dtype)]
        return torch.stack(channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, N) scaled amplitudes -> amplitude, phase (B, N, N)."""
        return self.from_inputs(self.inputs(x))

    def from_inputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network proper, on channels made by `inputs` (training makes them once per
        pattern: the estimate costs a third of a training step)."""
        z = stacked = F.pixel_unshuffle(inputs, self.stem)
        features = []
        for i, layer in enumerate(self.encoder):
            z = layer(z)
            if self.skips and i in self.skip_levels:
                features.append(z)
        for j, (upsample, relu, merge) in enumerate(self.decoder):
            joined = [relu(upsample(z)), *([features.pop()] if self.skips else []),
                      *([stacked[:, self.stem**2:]] if self.stem == 4 and j == len(self.decoder) - 1 else [])]
            z = merge(Join.apply(*joined) if len(joined) > 1 else joined[0])
        # in float32 NCHW: on the channels-last bf16 tensor the output activations cost ~3x
        z = F.pixel_shuffle(self.head(z).to(torch.float32, memory_format=torch.contiguous_format), self.stem)
        return F.softplus(z[:, 0]), math.pi * torch.tanh(z[:, 1])

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        amp, phase = self(x)
        return torch.polar(amp, phase)


def patch_distance(patches: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Each patch's weighted squared distance to its target up to a global phase,
    min over phi of sum w |patch - exp(i phi) target|^2, over sum w: (...,) for patches
    and targets (..., N, N) and weight (N, N) (the probe's normalised intensity). A
    patch's global phase is free (the counts do not see it, stitching aligns it), so
    the distance does not ask for it."""
    overlap = (weight * patches * targets.conj()).sum((-2, -1)).abs()
    power = (weight * (patches.abs().square() + targets.abs().square())).sum((-2, -1))
    return (power - 2 * overlap) / weight.sum((-2, -1))


class PINN(L.LightningModule):
    """Trains PtychoNet through the forward model: predicted counts |FFT(P * O)|^2 with
    the probe on the photon scale, Poisson NLL against the measured counts, and (for
    gridsize > 1) the overlap constraint tying a group's patches together. A batch
    that carries targets (a teacher's patches: data.teacher_patches) is a taught
    adaptation instead: the loss is each patch's distance to its target
    (patch_distance), the forward model is not needed."""

    def __init__(self, probe: torch.Tensor, nphotons: float | list[float], input_scale: float, model: ModelConfig,
                 gridsize: int = 2, learning_rate: float = 1e-3, schedule: dict | None = None,
                 data_sha256: str = "", bf16: bool = False):
        """probe (N, N) on the photon scale and its scan's nphotons; for K training
        scans, probe (K, N, N) and K nphotons (each group's loss uses its scan's).
        input_scale and the network's estimate probe are the first scan's: scans of
        one instrument setting share them, up to the dose, which the scale removes."""
        super().__init__()
        n = probe.shape[-1]
        photons = [float(v) for v in (nphotons if isinstance(nphotons, (list, tuple)) else [nphotons])]
        # saved in the checkpoint, flat, as plain values (export reads them back)
        self.save_hyperparameters({"nphotons": photons[0], "input_scale": input_scale, "n": n, "gridsize": gridsize,
                                   "learning_rate": learning_rate, "schedule": schedule,
                                   "data_sha256": data_sha256, "bf16": bf16, **asdict(model)})
        # NHWC convolutions: ~10 % faster steps on CPU (benchmarks/epoch_profile.py)
        self.net = PtychoNet.from_config(n, model).to(memory_format=torch.channels_last)
        self.register_buffer("probe", probe.to(torch.complex64))
        if model.estimate_iterations:  # the network's estimate works on its input's scale
            with torch.no_grad():
                self.net.probe.copy_(self.probe.reshape(-1, n, n)[0] * input_scale)
        w = probe.abs().square()
        self.register_buffer("weight", (w / w.amax((-2, -1), keepdim=True)).float())
        self.register_buffer("photons", torch.tensor(photons))

    def group_patches(self, x: torch.Tensor) -> torch.Tensor:
        """The network's patches (B, C, N, N) of each group member; x (B, C, K, N, N) =
        the members' network inputs (PtychoNet.inputs)."""
        b, c, k, n, _ = x.shape
        # the network in bf16 when asked (mixed precision); the physics always in float32
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.hparams.bf16):
            amp, phase = self.net.from_inputs(x.reshape(b * c, k, n, n))
        return torch.polar(amp.float(), phase.float()).reshape(b, c, n, n)

    def group_counts(self, x: torch.Tensor, offsets: torch.Tensor, scans: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Predicted counts of each group member; `scans` (B,) = each group's scan
        (needed when the module holds several scans' probes)."""
        probe, weight = (self.probe, self.weight) if self.probe.dim() == 2 else (
            self.probe[scans][:, None], self.weight[scans][:, None])
        patches = physics.overlap_constraint(self.group_patches(x), offsets, weight, self.hparams.align_phase)
        return physics.predicted_counts(probe, patches)

    def _loss(self, batch):
        x, counts, offsets, scans, *targets = batch
        if targets:  # taught by a refined reconstruction (one scan: its weight is self.weight)
            return patch_distance(self.group_patches(x), targets[0], self.weight).mean()
        lam = self.group_counts(x, offsets, scans)
        if self.hparams.loss == "poisson":
            if self.probe.dim() == 2:
                return physics.poisson_nll(lam, counts, self.hparams.nphotons).mean()
            return (physics.poisson_nll(lam, counts, 1.0) / self.photons[scans][:, None]).mean()
        return physics.amplitude_mae(lam, counts).mean()

    def on_train_epoch_start(self):
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=False, on_epoch=True, sync_dist=True)
        self.loss_sum, self.groups = 0.0, 0  # over the epoch's groups so far

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        # the epoch's mean, logged once, on its last batch: a call of self.log costs ~0.7 ms
        # (~2 % of a CPU step); sync_dist: with several DDP processes every one sees the
        # mean over all
        self.loss_sum, self.groups = self.loss_sum + loss.detach() * len(batch[0]), self.groups + len(batch[0])
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.log("train_loss", self.loss_sum / self.groups, on_step=False, on_epoch=True, batch_size=self.groups,
                     sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch), on_epoch=True, batch_size=len(batch[0]), sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate,
                               fused=self.device.type in ("cpu", "cuda"))
        s = self.hparams.schedule or {"name": "none"}
        sched = torch.optim.lr_scheduler
        if s["name"] == "none":
            return opt
        if s["name"] == "step":
            scheduler = sched.StepLR(opt, step_size=s["step_size"], gamma=s["gamma"])
        elif s["name"] == "cosine":
            scheduler = sched.CosineAnnealingLR(opt, T_max=s["t_max"], eta_min=s["min_lr"])
        else:
            scheduler = sched.ReduceLROnPlateau(opt, mode=s["mode"], factor=s["gamma"], patience=s["patience"],
                                                min_lr=s["min_lr"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch",
                                                   "monitor": s["monitor"]}}

"""Iterative phase retrieval: a compact batched ePIE/rPIE in PyTorch.

The same forward model as the network's physics (exit wave P * O, far field
|FFT_ortho|^2 with the zero frequency at the centre, probe on the photon scale).
Sub-pixel positions are handled by shifting the band-limited probe with a Fourier phase
ramp and cutting the object at the integer part, so the object itself is never
interpolated. Positions are visited in random mini-batches; the updates of a batch are
summed and normalised by the batch's summed probe intensity (the rPIE regularised
step), which keeps a batch of overlapping updates stable.

With engine "lsqml" the steps follow LSQ-ML (Odstrcil, Menzel, Guizar-Sicairos, Opt.
Express 26, 3108, 2018): the far field moves down the Poisson likelihood's gradient by
a step fitted per pattern instead of taking the measured modulus, object and probe move
by least-squares step lengths along the same rPIE directions, and batches are spread
over the scan rather than random (docs/design.md, "Iterative solver").

Measured amplitudes below zero (geometry.UNMEASURED) mark bad detector pixels: the
modulus constraint leaves the model's value there and they add nothing to any figure.

Refinement treats its starting reconstruction (the network's) as a prior: after each
pass the object is pulled toward it, O <- (O + t O_start) / (1 + t) with t = w / V,
where V is the number of full-intensity probe views that light the pixel (the summed
probe intensity over its maximum) and w the strength of the pull in the same units. The
pull and the number of passes are chosen by `refine` from the measured patterns alone;
where the chosen state still leans on the start (the start itself, or a pulled state),
`large_scale_factor` then fits only its slow phase (docs/design.md, "Refinement").
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .config import SolverConfig
from .geometry import apply_ramps, canvas_windows, lit, window_origins
from .physics import counts_of, far_field, poisson_nll, predicted_counts


class Solver:
    """Reconstructs an object (and optionally refines the probe) from measured
    amplitudes at known positions, starting from a given object estimate."""

    def __init__(self, amplitude: np.ndarray, probe: np.ndarray, y: np.ndarray, x: np.ndarray,
                 init_object: np.ndarray, cfg: SolverConfig, prior: np.ndarray | None = None):
        self.cfg = cfg
        self.n = probe.shape[0]
        self.meas = torch.from_numpy(np.ascontiguousarray(amplitude, np.float32))
        self.probe = torch.from_numpy(probe.astype(np.complex64))
        self.obj = torch.from_numpy(init_object.astype(np.complex64)).clone()
        self.flat_index, self.ramp = canvas_windows(y, x, self.n, self.obj.shape)
        self._origins = window_origins(y, x, self.n)[:2]
        self.far_step = torch.full((len(self.meas),), 0.5)  # lsqml: each pattern's last far-field step
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[float] = []
        self.passes = 0
        # with momentum: the object after the last pass, and its velocity
        self.last, self.velocity = (self.obj.clone() if cfg.momentum else None), None
        self.prior, self.views, self._coverage = None, None, None
        self.frozen = None  # (object, its power, a low-pass) while only a smooth factor of it may change
        if prior is not None:  # pixels' probe views, the unit of the pull toward it
            self.prior = torch.from_numpy(prior.astype(np.complex64))
            self.views = torch.from_numpy(self.coverage() / float(self.probe.abs().square().max())).clamp_min(1e-3)

    def _index(self, b):
        return self.flat_index[b].reshape(-1)

    def step(self, refine_probe: bool) -> float:
        """One pass over all positions in random batches; returns the mean Fourier
        amplitude error (a data-fit figure, not the object error)."""
        m = len(self.meas)
        order = self.rng.permutation(m)
        err = 0.0
        flat = self.obj.view(-1)
        lsqml = self.cfg.engine == "lsqml"
        size = self.cfg.batch_size
        batches = self._spread_batches(order) if lsqml else [order[s:s + size] for s in range(0, m, size)]
        for b in map(torch.from_numpy, batches):
            idx = self._index(b)
            patch = flat[idx].reshape(len(b), self.n, self.n)
            probe = apply_ramps(self.probe, self.ramp[b])
            psi = probe * patch
            far = far_field(psi)
            amp = far.abs()
            meas = self.meas[b]
            known = meas >= 0
            err += float(torch.where(known, amp - meas, 0).abs().sum())
            fixed = self._poisson_step(far, amp, meas, known, b) if lsqml else \
                torch.where(known, far * (meas / amp.clamp_min(1e-6)), far)  # the measured modulus, its phase kept
            dpsi = torch.fft.ifft2(torch.fft.ifftshift(fixed, dim=(-2, -1)), norm="ortho") - psi
            # rPIE object direction, summed over the batch on the object canvas
            pw = probe.abs().square()
            num = torch.zeros_like(flat).index_add_(0, idx, (probe.conj() * dpsi).reshape(-1))
            den = torch.zeros(flat.shape, dtype=torch.float32).index_add_(0, idx, pw.reshape(-1))
            a = self.cfg.alpha
            d_obj = num / ((1 - a) * den + a * den.max()).clamp_min(1e-12)
            d_probe = None
            if refine_probe:
                ow = patch.abs().square()
                # direction for the unshifted probe: shift each term back
                back = apply_ramps(patch.conj() * dpsi, self.ramp[b].conj()).sum(0)
                odiv = (1 - a) * ow.sum(0) + a * ow.sum(0).max()
                d_probe = back / odiv.clamp_min(1e-12)
            step_obj, step_probe = self._step_lengths(d_obj[idx].reshape(patch.shape) * probe, patch, d_probe, b,
                                                      dpsi) if lsqml else (1.0, 1.0)
            flat += step_obj * d_obj
            if refine_probe:
                self.probe += step_probe * d_probe
                self._coverage = None
        self.history.append(err / float(self.meas.clamp_min(0).sum()))
        return self.history[-1]

    def _spread_batches(self, order: np.ndarray) -> list[np.ndarray]:
        """LSQ-ML's batches: each spread over the whole scan, so that its windows overlap
        as little as the batch size allows (none where the scan is wide enough) and each
        position's step length is mostly its own. Positions are sorted by the window-sized
        cell they start in (row by row; in `order` within a cell) and dealt out in turn."""
        iy, ix = self._origins
        cells = (iy[order] // self.n) * (ix.max() // self.n + 1) + ix[order] // self.n
        dealt = order[np.argsort(cells, kind="stable")]
        count = -(-len(order) // self.cfg.batch_size)
        return [dealt[k::count] for k in self.rng.permutation(count)]

    def _poisson_step(self, far, amp, meas, known, b) -> torch.Tensor:
        """LSQ-ML's far-field step for Poisson counts: down the likelihood's gradient,
        far * (1 - alpha * xi) with xi = 1 - counts / predicted, alpha per pattern
        minimising the pattern's Poisson NLL along it (a few fixed-point iterations,
        started from the pattern's last alpha, in [0, 1]). Unlike the modulus
        replacement it does not force every pixel onto its noisy count. The predicted
        counts in xi are floored at one photon: below that a pixel's count says little,
        and 1 / predicted would let a few such pixels set the whole pattern's step
        (measured: amplitude SSIM 0.04-0.12 lower without the floor)."""
        pred = amp.square()
        xi = torch.where(known, 1 - meas.square() / pred.clamp_min(1.0), 0)
        alpha = self.far_step[b]
        for _ in range(2):
            ratio = torch.where(known, meas.square() / (1 - alpha[:, None, None] * xi), 0)
            new = (xi * (pred - ratio)).sum((-2, -1)) / (xi.square() * pred).sum((-2, -1)).clamp_min(1e-12)
            alpha = (0.5 * alpha + 0.5 * new).clamp(0, 1)
        self.far_step[b] = alpha
        return far * (1 - alpha[:, None, None] * xi)

    def _step_lengths(self, obj_change, patch, d_probe, b, dpsi) -> tuple[float, float]:
        """LSQ-ML's step lengths: per position the object and probe steps that bring the
        exit wave closest to its target (a 2 x 2 least-squares problem, damped), then
        the batch's steps are their trimmed means (the middle 80 %)."""
        u = obj_change.reshape(len(b), -1)
        chi = dpsi.reshape(len(b), -1)
        if d_probe is None:
            steps = (torch.real((u.conj() * chi).sum(1)) / (u.abs().square().sum(1)).clamp_min(1e-12))[:, None]
        else:
            v = (patch * apply_ramps(d_probe, self.ramp[b])).reshape(len(b), -1)
            uu, vv = u.abs().square().sum(1), v.abs().square().sum(1)
            uv = torch.real((u.conj() * v).sum(1))
            damp = 0.1 * (uu + vv) / 2  # keeps the system well posed where the two directions align
            a = torch.stack([torch.stack([uu + damp, uv], -1), torch.stack([uv, vv + damp], -1)], -2).double()
            rhs = torch.stack([torch.real((u.conj() * chi).sum(1)), torch.real((v.conj() * chi).sum(1))], -1)
            steps = torch.linalg.solve(a, rhs.double()).float()
        steps = steps.clamp(0, 1).sort(0).values
        cut = len(steps) // 10
        middle = steps[cut:len(steps) - cut] if len(steps) > 2 * cut else steps
        mean = middle.mean(0)
        return float(mean[0]), float(mean[-1])

    def coverage(self) -> np.ndarray:
        """Summed probe intensity on the canvas (the stitching weight's counterpart); kept
        until the probe changes (read-only)."""
        if self._coverage is None:
            probe = apply_ramps(self.probe, self.ramp).abs().square()
            den = torch.zeros(self.obj.numel()).index_add_(0, self._index(torch.arange(len(self.meas))),
                                                           probe.reshape(-1))
            self._coverage = den.reshape(self.obj.shape).numpy()
            self._coverage.flags.writeable = False
        return self._coverage

    def run(self, iterations: int | None = None, callback=None, pull: float = 0.0) -> np.ndarray:
        """`iterations` further passes (default: the configured number), each followed by
        a pull of strength `pull` toward the prior; the probe is refined in every pass
        when asked. Returns the object (a view: later passes change it)."""
        for it in range(self.cfg.iterations if iterations is None else iterations):
            self.step(self.cfg.probe_refinement)
            if self.cfg.momentum:
                self._accelerate()
            if pull > 0:
                t = pull / self.views
                self.obj.copy_((self.obj + t * self.prior) / (1 + t))
            if self.frozen is not None:
                self.obj.copy_(self.frozen[0] * self.smooth_factor())
            if self.cfg.momentum:
                self.last = self.obj.clone()
            self.passes += 1
            if callback:
                callback(it, self)
        return self.obj.numpy()

    def only_smooth_changes(self, sigma: float) -> None:
        """From now on the object may change only by a smooth phase factor of what it is
        now (after each pass its ratio to it is low-passed by a Gaussian of `sigma`
        pixels and keeps its phase): the fine detail and the amplitude stay, the slow
        phase follows the data."""
        self.frozen = (self.obj.clone(), self.obj.abs().square(), low_pass(self.obj.shape, sigma))

    def smooth_factor(self) -> torch.Tensor:
        """The smooth phase factor by which the object differs from where
        only_smooth_changes found it (the phase of the low-passed ratio; pixels the
        object leaves near zero count as unchanged)."""
        base, power, low = self.frozen
        ratio = (self.obj * base.conj() + 1e-3 * float(power.mean())) / (power + 1e-3 * float(power.mean()))
        smooth = torch.fft.ifft2(torch.fft.fft2(ratio) * low)
        return smooth / smooth.abs().clamp_min(1e-12)

    def _accelerate(self) -> None:
        """Momentum on the smooth part of the object's change: the change of the last
        pass, low-passed (a Gaussian of cfg.momentum_scale pixels), is added to a
        velocity that decays by cfg.momentum per pass, and the object moves on by it.
        ePIE's local updates fix fine detail within a few passes but carry large-scale
        phase across the scan slowly; this speeds that up without amplifying the
        noise in the fine detail (docs/benchmarks.md)."""
        if self.velocity is None:
            self.smooth = low_pass(self.obj.shape, self.cfg.momentum_scale)
            cov = self.coverage()
            self.lit_mask = torch.from_numpy(lit(cov).astype(np.float32))
            self.velocity = torch.zeros_like(self.obj)
        change = torch.fft.ifft2(torch.fft.fft2((self.obj - self.last) * self.lit_mask) * self.smooth)
        self.velocity = self.cfg.momentum * self.velocity + change
        self.obj += self.cfg.momentum * self.velocity * self.lit_mask

    def nll(self, amplitude: np.ndarray, y: np.ndarray, x: np.ndarray) -> float:
        """pattern_nll of other patterns under the current object and probe: how well
        the object predicts data it was not fitted to."""
        return pattern_nll(self.obj, self.probe, amplitude, y, x)


def pattern_nll(obj, probe, amplitude: np.ndarray, y: np.ndarray, x: np.ndarray, chunk: int = 256) -> float:
    """Poisson negative log-likelihood per photon of patterns (amplitudes at canvas
    positions y, x) under an object and a probe (on the photon scale), relative to the
    saturated model: 0 is a perfect fit; the noise keeps it above 0 for any object."""
    obj, probe = torch.as_tensor(obj, dtype=torch.complex64), torch.as_tensor(probe, dtype=torch.complex64)
    n = probe.shape[-1]
    index, ramp = canvas_windows(y, x, n, obj.shape)
    flat, total, photons = obj.reshape(-1), 0.0, 0.0
    for s in range(0, len(amplitude), chunk):
        b = slice(s, s + chunk)
        patch = flat[index[b].reshape(-1)].reshape(-1, n, n)
        shifted = apply_ramps(probe, ramp[b])
        counts = counts_of(torch.from_numpy(np.ascontiguousarray(amplitude[b], np.float32)).double())
        total += float(poisson_nll(predicted_counts(shifted, patch).double(), counts, 1.0).sum())
        photons += float(counts.clamp_min(0).sum())
    return total / max(photons, 1e-30)


def spread_subset(m: int, fraction: float) -> np.ndarray:
    """Every k-th pattern in scan order (k = 1 / fraction), starting half-way into the
    first k: a subset spread over the whole scan, whose neighbours stay in the rest."""
    k = max(2, int(round(1 / fraction)))
    return np.arange(k // 2, m, k)


def pull_schedule(cfg: SolverConfig, most: int) -> list[float]:
    """The pull toward the prior during each of `most` passes: cfg.pulls from strong to
    weak, cfg.holdout_every passes each, then none."""
    weights = [w for w in cfg.pulls for _ in range(cfg.holdout_every)]
    return (weights + [0.0] * most)[:most]


def large_scale_factor(amplitude: np.ndarray, probe: np.ndarray, y: np.ndarray, x: np.ndarray,
                       fair_start: np.ndarray, held: np.ndarray, cfg: SolverConfig) -> tuple[np.ndarray, list]:
    """The smooth phase factor (cfg.refine_smooth_scale pixels) by which the data ask
    an object that leans on the network to change: its slow phase, which a single
    pattern barely shows, so the network's patches (and the stitch of their phases) get
    it wrong where the overlap is low, and a pull toward the network holds it there
    (docs/design.md, "Refinement").

    Fitted on all but the `held` patterns, starting from `fair_start`, an object made
    without them (the network's stitched without the held-out patches, or a state the
    passes reached on the rest; any object made from them predicts them too well to be
    judged by them): passes with momentum cfg.refine_smooth_momentum that may change
    only that factor, the held-out patterns' Poisson NLL measured every
    cfg.holdout_every passes; the factor at the lowest NLL wins (ones when no pass
    lowered it), the search stopping after cfg.holdout_patience checks without a new
    lowest, or at cfg.refine_smooth_passes.
    Returns the factor and the (passes, NLL per photon) curve."""
    fit = np.setdiff1d(np.arange(len(amplitude)), held)
    # LSQ-ML's Poisson far-field step whatever the engine: it fits the likelihood the
    # held-out patterns judge by (docs/benchmarks.md)
    fitting = dataclasses.replace(cfg, engine="lsqml", momentum=cfg.refine_smooth_momentum)
    solver = Solver(amplitude[fit], probe, y[fit], x[fit], fair_start, fitting)
    solver.only_smooth_changes(cfg.refine_smooth_scale)
    nll = solver.nll(amplitude[held], y[held], x[held])
    curve, best, stale = [(0, nll)], (nll, np.ones(fair_start.shape, np.complex64)), 0
    while solver.passes < cfg.refine_smooth_passes and stale < cfg.holdout_patience:
        solver.run(min(cfg.holdout_every, cfg.refine_smooth_passes - solver.passes))
        nll = solver.nll(amplitude[held], y[held], x[held])
        curve.append((solver.passes, nll))
        stale = stale + 1 if nll >= best[0] else 0
        if nll < best[0]:
            best = (nll, solver.smooth_factor().numpy())
    return best[1], curve


def refine(amplitude: np.ndarray, probe: np.ndarray, y: np.ndarray, x: np.ndarray, start: np.ndarray,
           cfg: SolverConfig, most: int, on_check=None, fair_start: np.ndarray | None = None
           ) -> tuple[Solver, np.ndarray]:
    """Refine `start` toward the measured patterns, as far as the data say.

    A spread-out fraction of the patterns (cfg.holdout_fraction) is held out; the solver
    runs on the rest along pull_schedule (a pull toward `start` that weakens, then
    plain passes), and the held-out patterns' Poisson NLL is measured before the first
    pass and every cfg.holdout_every passes, stopping after cfg.holdout_patience checks
    that did not lower the lowest value by more than the fraction cfg.holdout_tolerance
    (the data have said what they can), or at `most` passes; the passes carry momentum
    cfg.refine_momentum (not the baseline's cfg.momentum). The object (and probe) at
    the lowest value wins: the start itself when no pass improved on it, else that
    state. When it still leans on the network (the start, or a state a pull held), or
    the probe is refined too, it is multiplied by the smooth factor large_scale_factor
    fits (from `fair_start`, the start stitched without the held-out patterns, or from
    the state itself; with cfg.refine_smooth_scale > 0): the data may move the
    network's slow phase, which has far fewer degrees of freedom than its fine detail,
    further than the pull let them (plain passes move it themselves, unless a probe
    refined beside the object takes up part of it). A state the passes reached then
    gets one more pass over all patterns with the pull it had, toward the start times
    that factor. Last, the result is blurred by the width supported_resolution picks
    among cfg.refine_resolution_scales, judged from the same state made without the
    held-out patterns. Returns the finished solver (its `passes` counts those runs, its
    `smooth_curve` the large-scale fit's (passes, NLL) checks or None, its
    `resolution_curve` the (width, NLL) checks or None) and the (passes, pull, NLL per
    photon) curve. Reads nothing but the patterns and the starts.
    on_check(solver) is called at each check (to watch the path)."""
    cfg = cfg.refining()
    held = spread_subset(len(amplitude), cfg.holdout_fraction)
    fit = np.setdiff1d(np.arange(len(amplitude)), held)
    schedule = pull_schedule(cfg, most)
    solver = Solver(amplitude[fit], probe, y[fit], x[fit], start, cfg, prior=start)
    nll = solver.nll(amplitude[held], y[held], x[held])
    curve, best = [(0, np.inf, nll)], (nll, 0, solver.obj.clone(), solver.probe.clone())
    if on_check:
        on_check(solver)
    stale = 0  # checks since the last one that lowered the held-out NLL by more than the tolerance
    while solver.passes < most and stale < cfg.holdout_patience:
        pull = schedule[solver.passes]
        solver.run(min(cfg.holdout_every, most - solver.passes), pull=pull)
        nll = solver.nll(amplitude[held], y[held], x[held])
        curve.append((solver.passes, pull, nll))
        if on_check:
            on_check(solver)
        stale = 0 if nll < best[0] * (1 - cfg.holdout_tolerance) else stale + 1
        if nll < best[0]:
            best = (nll, solver.passes, solver.obj.clone(), solver.probe.clone())
    _, passes, obj, best_probe = best
    smooth, prior = None, start
    # the chosen state still holds the network's slow phase, or shares its slow phase with
    # a probe refined beside it (a slow phase curvature fits the patterns in either)
    leans = passes == 0 or schedule[passes - 1] > 0 or cfg.probe_refinement
    fair = obj.numpy() if passes else fair_start  # the chosen state, made without the held-out patterns
    if leans and fair is not None and cfg.refine_smooth_scale > 0:
        factor, smooth = large_scale_factor(amplitude, best_probe.numpy(), y, x, fair, held, cfg)
        obj, prior, fair = obj * torch.from_numpy(factor), start * factor, fair * factor
    final = Solver(amplitude, best_probe.numpy(), y, x, obj.numpy(), cfg, prior=prior)
    final.history, final.passes, final.smooth_curve = solver.history[:passes], passes, smooth
    if passes:
        final.run(1, pull=schedule[passes - 1])
    final.resolution_curve = None
    if fair is not None and any(cfg.refine_resolution_scales):
        sigma, final.resolution_curve = supported_resolution(fair, best_probe, amplitude[held], y[held], x[held],
                                                             cfg.refine_resolution_scales)
        if sigma:
            final.obj = low_passed(final.obj, sigma)
    return final, np.array(curve)


def low_pass(shape, sigma: float) -> torch.Tensor:
    """Transfer function of a Gaussian of `sigma` pixels on an FFT grid of `shape`."""
    fy, fx = np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :]
    return torch.from_numpy(np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2)).astype(np.float32))


def low_passed(obj: torch.Tensor, sigma: float) -> torch.Tensor:
    """The complex object blurred by a Gaussian of `sigma` pixels."""
    return torch.fft.ifft2(torch.fft.fft2(obj) * low_pass(obj.shape, sigma)).to(obj.dtype)


def supported_resolution(fair: np.ndarray, probe, amplitude: np.ndarray, y: np.ndarray, x: np.ndarray,
                         scales) -> tuple[float, list]:
    """The Gaussian blur (one of `scales`, pixels; 0 = none) of an object made without
    the given (held-out) patterns under which it predicts them best: at low dose the
    finest detail of a reconstruction is mostly noise, and the held-out patterns say
    how fine a detail the data support. The widths are tried from the narrowest up,
    until one predicts worse than the one before. Returns the width and the (width,
    NLL) curve."""
    obj = torch.as_tensor(fair, dtype=torch.complex64)
    curve = []
    for s in sorted(scales):
        curve.append((s, pattern_nll(low_passed(obj, s) if s else obj, probe, amplitude, y, x)))
        if len(curve) > 1 and curve[-1][1] > curve[-2][1]:
            break
    return min(curve, key=lambda c: c[1])[0], curve

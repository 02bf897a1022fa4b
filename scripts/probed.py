"""probed: the canonical scan with the probe an iterative solver refined.

    python -m scripts.probed results/canonical/fly001.npz results/baseline/fly001.npz \
        results/probed/fly001.npz

For scans whose file holds only an approximate probe (dataset setting `refine_probe`):
the baseline, run with probe refinement, ends with a probe that explains the patterns;
this writes the canonical scan again with that probe (on the file probe's scale), so
that the network is trained, and every later stage runs, with it. Patterns, positions
and everything else are copied unchanged.
"""

import json

import numpy as np

from ptycho_lib import cli
from ptycho_lib.io import InputError, read_npz, write_npz
from ptycho_lib.provenance import record
from ptycho_lib.reconstruction import Reconstruction


def main(argv):
    a = cli.parser(__doc__, ("canonical", "canonical NPZ of the scan"),
                   ("solved", "reconstruction NPZ of a solver run with --probe-refinement"),
                   ("output", "canonical NPZ to write")).parse_args(argv)
    scan, rec = read_npz(a.canonical), Reconstruction.load(a.solved)
    probe = rec.extra.get("probe")
    if probe is None:
        raise InputError(a.solved, "holds no refined probe: run the solver with --probe-refinement")
    old = scan["probeGuess"]
    if probe.shape != old.shape:
        raise InputError(a.solved, f"probe {probe.shape} does not match the scan's {old.shape}")
    # the file probe's energy: the photon scale comes from nphotons either way (physics.scale_probe)
    scale = np.linalg.norm(old.astype(np.complex128)) / np.linalg.norm(probe.astype(np.complex128))
    notes = json.loads(str(scan["conversions"]))
    notes["conversions"].append(f"probe replaced by the refined one of {a.solved.name}")
    write_npz(a.output, {**scan, "probeGuess": (probe * scale).astype(np.complex64),
                         "conversions": np.array(json.dumps(notes))}, stored=("diffraction",))
    record(a.output, "probed", {"canonical": a.canonical, "solved": a.solved})


if __name__ == "__main__":
    cli.run(main)

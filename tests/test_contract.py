"""The data contract: legacy forms convert to one canonical file; bad input fails cleanly."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, save_npz
from ptycho_lib.contract import canonicalise, validate
from ptycho_lib.io import InputError, read_npz


def legacy_forms(raw):
    """The same scan in every legacy form the pipeline accepts: (name, arrays, options)."""
    counts = raw["diff3d"]  # (N, N, M) uint16
    first = np.moveaxis(counts, -1, 0)
    amp = np.sqrt(first.astype(np.float64))
    rest = {k: raw[k] for k in ("probeGuess", "objectGuess", "xcoords", "ycoords")}
    nph = float(first.reshape(len(first), -1).sum(1).mean())
    return [
        ("stack-last uint16 counts, diff3d", {**rest, "diff3d": counts}, {}),
        ("stack-first uint32 counts", {**rest, "diffraction": first.astype(np.uint32)}, {}),
        ("float64 counts", {**rest, "diff3d": counts.astype(np.float64)}, {}),
        ("float32 intensity", {**rest, "diffraction": first.astype(np.float32)}, {"measurement": "intensity"}),
        ("float64 amplitude, stack-last",
         {**rest, "diff3d": np.moveaxis(amp, 0, -1), "nphotons": np.float64(nph)}, {}),
        ("canonical", {**{k: v.astype(np.complex64) if v.dtype.kind == "c" else v for k, v in rest.items()},
                       "diffraction": amp.astype(np.float32), "nphotons": np.float64(nph)}, {}),
    ]


def test_every_legacy_form_converts_to_the_same_canonical_arrays(tiny_raw, tmp_path):
    results = []
    for name, arrays, opts in legacy_forms(tiny_raw):
        path = save_npz(tmp_path / "scan.npz", arrays)
        results.append((name, canonicalise(read_npz(path), path, **opts)))
    ref = results[0][1]
    assert ref["diffraction"].shape == (36, 32, 32) and ref["diffraction"].dtype == np.float32
    assert ref["probeGuess"].dtype == np.complex64 and ref["xcoords"].dtype == np.float64
    for name, out in results[1:]:
        for key in ("diffraction", "probeGuess", "objectGuess", "xcoords", "ycoords", "scan_index"):
            np.testing.assert_allclose(out[key], ref[key], rtol=1e-6, err_msg=f"{name}: {key}")
        assert float(out["nphotons"]) == pytest.approx(float(ref["nphotons"]), rel=1e-6), name


def test_conversions_are_recorded(tiny_raw, tmp_path):
    path = save_npz(tmp_path / "scan.npz", tiny_raw)
    record = json.loads(str(canonicalise(read_npz(path), path)["conversions"]))
    assert record["detected"]["layout"] == "stack_last" and record["detected"]["measurement"] == "counts"
    assert "key diff3d -> diffraction" in record["conversions"]
    assert "counts -> amplitude (sqrt)" in record["conversions"]


def test_report_describes_the_file(tiny_raw, tmp_path):
    path = save_npz(tmp_path / "scan.npz", tiny_raw)
    rep = validate(read_npz(path), path)
    assert rep["detected"] == {"key": "diff3d", "layout": "stack_last", "measurement": "counts", "m": 36, "n": 32}
    total = tiny_raw["diff3d"].reshape(-1, 36).sum(0)
    assert rep["total_counts_per_pattern"]["mean"] == pytest.approx(total.mean())
    assert rep["has_object"] is True


def test_square_stack_is_ambiguous_and_names_the_option(tiny_raw, tmp_path):
    m = 32  # as many patterns as pixels: both stack orders fit
    arrays = {**tiny_raw, "diff3d": tiny_raw["diff3d"][:, :, :m], "xcoords": tiny_raw["xcoords"][:m],
              "ycoords": tiny_raw["ycoords"][:m], "scan_index": tiny_raw["scan_index"][:m]}
    path = save_npz(tmp_path / "square.npz", arrays)
    with pytest.raises(InputError, match="set layout: stack_first or stack_last"):
        canonicalise(read_npz(path), path)
    out = canonicalise(read_npz(path), path, layout="stack_last")
    np.testing.assert_allclose(out["diffraction"][3] ** 2, tiny_raw["diff3d"][:, :, 3], rtol=1e-6)


def _bad(raw, case):
    r = dict(raw)
    if case == "missing probe":
        del r["probeGuess"]
    elif case == "NaN in patterns":
        d = r.pop("diff3d").astype(np.float32)
        d[0, 0, 0] = np.nan
        r["diff3d"] = d
    elif case == "negative amplitudes":
        d = np.sqrt(r.pop("diff3d").astype(np.float32))
        d[1, 2, 3] = -1
        r["diff3d"] = d
    elif case == "coordinate length":
        r["xcoords"] = r["xcoords"][:-1]
    elif case == "positions outside object":
        r["xcoords"] = r["xcoords"] + 100
    elif case == "pickled object array":
        r["meta"] = np.array([{"a": 1}], dtype=object)
    return r


BAD = {
    "missing probe": "missing required key 'probeGuess'",
    "NaN in patterns": "contains NaN or Inf",
    "negative amplitudes": "negative values",
    "coordinate length": "xcoords has 35 entries but ycoords has 36",
    "positions outside object": "outside the",
    "pickled object array": "object (pickled) array",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_with_one_line_naming_the_file(tiny_raw, tmp_path, case):
    raw = tmp_path / "bad.npz"
    np.savez(raw, **_bad(tiny_raw, case), allow_pickle=True) if case == "pickled object array" else \
        np.savez(raw, **_bad(tiny_raw, case))
    for script, out in (("validate.py", tmp_path / "bad.json"), ("transpose.py", tmp_path / "bad_canon.npz")):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), str(raw), str(out)],
                              capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and str(raw) in lines[0] and BAD[case] in lines[0], proc.stderr
        assert not out.exists() and list(tmp_path.glob(".*tmp")) == []


def test_checksum_mismatch_fails(tiny_raw, tmp_path):
    raw = save_npz(tmp_path / "scan.npz", tiny_raw)
    proc = subprocess.run([sys.executable, str(REPO / "scripts/validate.py"), str(raw), str(tmp_path / "r.json"),
                           "--sha256", "0" * 64], capture_output=True, text=True)
    assert proc.returncode == 1 and "differs from the expected" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_not_an_npz(tmp_path):
    bad = tmp_path / "notes.npz"
    bad.write_text("this is not a zip file")
    with pytest.raises(InputError, match="not an NPZ file"):
        read_npz(bad)


def test_normalised_amplitudes_are_refused_or_scaled_to_the_given_photons(tiny_raw, tmp_path):
    """PtychoPINN's own normalised amplitudes (max < 1) are no photon counts: without
    nphotons they are refused with one line naming the setting; with it they are scaled
    so the patterns are counts in photons again, as the Poisson model needs."""
    counts = np.moveaxis(tiny_raw["diff3d"], -1, 0).astype(np.float64)
    amp = np.sqrt(counts)
    rest = {k: tiny_raw[k] for k in ("probeGuess", "xcoords", "ycoords")}
    reference = canonicalise({**rest, "diffraction": counts}, "ref.npz")
    path = save_npz(tmp_path / "normalised.npz", {**rest, "diffraction": (amp / amp.max() * 0.9).astype(np.float32)})
    with pytest.raises(InputError, match="normalised.npz: 'diffraction' is normalised.*set nphotons") as e:
        canonicalise(read_npz(path), path)
    assert "\n" not in str(e.value)
    nph = float(reference["nphotons"])
    scaled = canonicalise(read_npz(path), path, nphotons=nph)
    assert float(scaled["nphotons"]) == nph
    np.testing.assert_allclose(scaled["diffraction"], reference["diffraction"], rtol=1e-5, atol=1e-4)
    assert any("scaled" in c for c in json.loads(str(scaled["conversions"]))["conversions"])


def test_all_zero_patterns_are_refused(tiny_raw, tmp_path):
    arrays = {**tiny_raw, "diff3d": np.zeros_like(tiny_raw["diff3d"])}
    path = save_npz(tmp_path / "dark.npz", arrays)
    with pytest.raises(InputError, match="dark.npz: 'diff3d' is all zero"):
        canonicalise(read_npz(path), path)

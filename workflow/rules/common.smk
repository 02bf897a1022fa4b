# Shared helpers: per-dataset settings, the dataset -> model map, and the library
# sources each stage depends on (Snakemake does not see Python imports).
import ast
import os

STAGES = ["recon", "baseline", "refined"]  # PINN, iterative baseline, PINN + refinement


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    stage="|".join(STAGES),
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


def dataset_setting(dataset, key):
    """A dataset's own setting, else the default for all datasets."""
    own = (config["datasets"].get(dataset) or {}).get(key)
    return own if own is not None else config["dataset_defaults"].get(key)


RAW = {
    "npz": "resources/{}.npz",
    "cxi": "resources/{}.cxi",
    "ptychodus": "resources/{}",
}
PTYCHODUS_PRODUCTS = ["product-in.h5", "product.h5"]


def raw_source(dataset):
    """Where a scan's raw data are: the dataset's `path`, else the first of
    resources/NAME.npz, resources/NAME.cxi and resources/NAME/ (a ptychodus folder)
    that exists (resources/NAME.npz when none does: Snakemake then says it is missing).
    """
    own = (config["datasets"].get(dataset) or {}).get("path")
    found = [
        p.format(dataset) for p in RAW.values() if os.path.exists(p.format(dataset))
    ]
    return own or (found + [RAW["npz"].format(dataset)])[0]


def raw_format(dataset):
    """npz, cxi or ptychodus: the dataset's `format`, else from its raw source (a folder
    is a ptychodus scan, a .npz file an NPZ, any other file a CXI/HDF5 file)."""
    fmt = dataset_setting(dataset, "format")
    if fmt and fmt != "auto":
        return fmt
    path = raw_source(dataset)
    if os.path.isdir(path):
        return "ptychodus"
    return "npz" if path.lower().endswith(".npz") else "cxi"


def raw_files(dataset):
    """The user's files of a scan (what convert reads): a ptychodus folder's
    diffraction.h5 and product file, or the one CXI file."""
    path = raw_source(dataset)
    if raw_format(dataset) != "ptychodus":
        return [path]
    products = [
        f"{path}/{n}" for n in PTYCHODUS_PRODUCTS if os.path.exists(f"{path}/{n}")
    ]
    return [
        f"{path}/diffraction.h5",
        (products + [f"{path}/{PTYCHODUS_PRODUCTS[0]}"])[0],
    ]


def contract_input(dataset):
    """The raw NPZ that validate and transpose read: the user's NPZ, or the one convert
    made from a CXI file or a ptychodus folder."""
    if raw_format(dataset) == "npz":
        return raw_source(dataset)
    return f"results/imported/{dataset}.npz"


def imported(dataset):
    return raw_format(dataset) != "npz"


def convert_flags(dataset):
    """Reader options of a dataset as convert.py flags."""
    out = [
        f"--format {raw_format(dataset)}",
        f"--measurement {dataset_setting(dataset, 'measurement')}",
    ]
    for key in ("flip_x", "flip_y", "transpose_positions"):
        if dataset_setting(dataset, key):
            out.append(f"--{key.replace('_', '-')}")
    center = dataset_setting(dataset, "beam_center")
    if center:
        out.append(f"--beam-center {center[0]} {center[1]}")
    if dataset_setting(dataset, "pattern_size"):
        out.append(f"--pattern-size {dataset_setting(dataset, 'pattern_size')}")
    if dataset_setting(dataset, "sha256"):
        out.append(f"--sha256 {dataset_setting(dataset, 'sha256')}")
    return " ".join(out)


def model_of(dataset):
    """The model that reconstructs a dataset (default: one trained on it, same name)."""
    return (config["datasets"].get(dataset) or {}).get("model") or dataset


def training_data(model):
    """The dataset a model is trained on (default: the dataset of the same name)."""
    return (config["models"].get(model) or {}).get("train_data") or model


def sources(script):
    """A stage's script and every local file it imports, directly or through other
    imports (scripts/_cli.py, ptycho_lib/*.py): declared as inputs, so an edit to any
    of them reruns the stage (Snakemake does not see imports), an edit elsewhere not."""
    found, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in found or not os.path.exists(path):
            continue
        found.add(path)
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                # `from . import x` inside ptycho_lib/ or `from ptycho_lib.io import y`
                base = os.path.dirname(path) if node.level else ""
                parts = [p for p in (base, *(node.module or "").split(".")) if p]
                names = [".".join(parts + [a.name]) for a in node.names] + [
                    ".".join(parts)
                ]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "ptycho_lib":
                    todo.append(os.path.join(*parts) + ".py")
                    todo.append(os.path.join(parts[0], "__init__.py"))
                elif os.path.dirname(path) == "scripts":
                    todo.append(os.path.join("scripts", parts[0] + ".py"))
    return sorted(found)


def flags(section, mapping):
    """CLI flags for the config values of one section, e.g. '--max_epochs 20';
    booleans become --name / --no-name and null values are left out."""
    out = []
    for key, flag in mapping.items():
        value = config[section][key]
        if isinstance(value, bool):
            out.append(bool_flag(value, flag[2:]))
        elif value is not None:
            out.append(f"{flag} {value}")
    return " ".join(out)


def bool_flag(value, name):
    return f"--{name}" if value else f"--no-{name}"


def gpu_count(accelerator, devices=1):
    """GPUs a train/infer job requests: the devices when the accelerator is a GPU."""
    return devices if accelerator in ("gpu", "cuda") else 0


def stage_title(stage, dataset):
    return {
        "recon": f"PINN (model {model_of(dataset)})",
        "baseline": f"ePIE baseline ({config['solver']['iterations']} iterations)",
        "refined": f"PINN + {config['solver']['refine_iterations']} ePIE iterations",
    }[stage]


def solver_flags(iterations):
    s = config["solver"]
    return (
        f"--iterations {iterations} --batch-size {s['batch_size']} --alpha {s['alpha']}"
        f" {bool_flag(s['probe_refinement'], 'probe-refinement')} --seed {s['seed']}"
    )

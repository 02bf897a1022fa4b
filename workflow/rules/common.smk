# Shared helpers: per-dataset settings, the dataset -> model map, the command-line flags
# of each stage (written from the declarations in ptycho_lib/config.py) and the library
# sources each stage depends on (Snakemake does not see Python imports).
import ast
import os

from ptycho_lib.config import ADAPTATION, cli_flags
from ptycho_lib.file_types import RESOURCES, detect_format, ptychodus_product
from ptycho_lib.formats import linked_files

# The three reconstructions of a scan, each named the same in its folder, rule, metrics
# key: recon (the network's), baseline (iterative, from a flat
# object) and refined (the network's, refined iteratively).
METHODS = ["recon", "baseline", "refined"]
# each method's name in the report, in plain words
METHOD_NAMES = {
    "recon": "Network",
    "baseline": "Iterative baseline",
    "refined": "Network refined by the solver",
}


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    method="|".join(METHODS),
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


def dataset_settings(dataset):
    """A dataset's settings: its own, else the defaults for all datasets."""
    own = {
        k: v
        for k, v in (config["datasets"].get(dataset) or {}).items()
        if v is not None
    }
    return {**config["dataset_defaults"], **own}


def raw_source(dataset):
    """Where a scan's raw data are: the dataset's `path`, else the first of
    resources/NAME.npz, resources/NAME.cxi and resources/NAME/ (a ptychodus folder)
    that exists (resources/NAME.npz when none does: Snakemake then says it is missing).
    """
    own = (config["datasets"].get(dataset) or {}).get("path")
    found = [
        p.format(dataset)
        for p in RESOURCES.values()
        if os.path.exists(p.format(dataset))
    ]
    return own or (found + [RESOURCES["npz"].format(dataset)])[0]


def raw_format(dataset):
    return detect_format(raw_source(dataset), dataset_settings(dataset)["format"])


def imported(dataset):
    """Whether the scan is a CXI file or ptychodus folder that convert turns into an NPZ."""
    return raw_format(dataset) != "npz"


def raw_files(dataset):
    """The user's files of a scan (what convert reads): a ptychodus folder's
    diffraction.h5 and product file, or the CXI file, and the files they link to."""
    path, fmt = raw_source(dataset), raw_format(dataset)
    own = (
        [path]
        if fmt != "ptychodus"
        else [f"{path}/diffraction.h5", str(ptychodus_product(path))]
    )
    # and the data files in its folder that it links to (edited, they rerun convert)
    return own + [str(p) for p in linked_files(path, fmt)]


def contract_input(dataset):
    """The raw NPZ that validate and transpose read: the user's NPZ, or the one convert
    made from a CXI file or a ptychodus folder."""
    if not imported(dataset):
        return raw_source(dataset)
    return f"results/imported/{dataset}.npz"


def dataset_flags(dataset, program):
    """The dataset's settings as flags of convert, validate or transpose. After
    convert, the NPZ holds amplitudes stacked first, (M, N, N), and the user's file
    has been checked."""
    values = dataset_settings(dataset)
    if program != "convert" and imported(dataset):
        values = {
            **values,
            "measurement": "amplitude",
            "sha256": "",
            "layout": "stack_first",
        }
    return cli_flags("dataset", values, program)


def flags(program, *sections, **replaced):
    """The config sections' settings as flags of a program; `replaced` maps a section
    to settings that replace some of its values (a model's own, an adaptation's)."""
    return " ".join(
        filter(
            None,
            (
                cli_flags(s, {**config[s], **replaced.get(s, {})}, program)
                for s in sections
            ),
        )
    )


def model_of(dataset):
    """The model that reconstructs a dataset (default: one trained on it, same name)."""
    return (config["datasets"].get(dataset) or {}).get("model") or dataset


def scan_file(dataset):
    """The canonical scan every stage after the baseline reads: with `refine_probe`,
    the one carrying the baseline's refined probe."""
    if dataset_settings(dataset)["refine_probe"]:
        return f"results/probed/{dataset}.npz"
    return f"results/canonical/{dataset}.npz"


def probe_refinement(wc):
    """The solver's flag for a dataset whose file holds only an approximate probe."""
    return "--probe-refinement" if dataset_settings(wc.dataset)["refine_probe"] else ""


def training_data(model):
    """The datasets a model is trained on (default: the dataset of the same name)."""
    data = (config["models"].get(model) or {}).get("train_data") or model
    return [data] if isinstance(data, str) else list(data)


def model_settings(model):
    """A model's own data settings (under `models:`), e.g. its simulated_scans."""
    return {
        k: v
        for k, v in (config["models"].get(model) or {}).items()
        if k != "train_data"
    }


def adapts(dataset):
    """Whether the dataset's model is fine-tuned on the dataset before reconstructing."""
    return dataset_settings(dataset)["adapt_epochs"] > 0


def teacher_of(wc):
    """The adapt rule's teacher (the reused model's refined reconstruction), when taught."""
    if dataset_settings(wc.dataset)["adapt_teacher"]:
        return f"results/adapt/{wc.dataset}/teacher.npz"
    return []


def bundle_of(dataset):
    """The model bundle that reconstructs a dataset: the adapted one, else the model's."""
    if adapts(dataset):
        return f"results/adapt/{dataset}/wts.h5.zip"
    return f"results/models/{model_of(dataset)}/wts.h5.zip"


def metrics_of(dataset):
    """The training metrics (metrics.csv) of the bundle that reconstructs a dataset."""
    if adapts(dataset):
        return f"results/adapt/{dataset}/metrics.csv"
    return f"results/train/{model_of(dataset)}/metrics.csv"


def sources(script):
    """A stage's script and every file of ptycho_lib it imports, directly or through
    other modules: declared as inputs, so an edit to any of them reruns the stage
    (Snakemake does not see imports), an edit elsewhere not. The rules run a script
    as `python -m scripts.NAME` from the workflow's directory, so this checkout's
    ptycho_lib is the one imported."""
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
    return sorted(found)


def task_launcher():
    """How the train and adapt rules start a training of several tasks: under the
    SLURM executor (when submitting, and inside the job it runs remotely) srun
    starts one task per device on each node and Lightning takes its ranks from SLURM
    (the `mpi` resource: the job is then not wrapped in a one-task job step); elsewhere
    nothing, and Lightning starts the extra processes itself."""
    ex = config["execution"]
    plugin = workflow.executor_plugin
    submitting = plugin is not None and plugin.name == "slurm"
    in_job = workflow.remote_exec and "SLURM_JOB_ID" in os.environ
    on_slurm = submitting or in_job
    if on_slurm and ex["devices"] * ex["nodes"] > 1:
        return f"srun --ntasks-per-node={ex['devices']} --nodes={ex['nodes']} --kill-on-bad-exit=1"
    return ""


def gpu_count(accelerator, devices=1):
    """GPUs a train/infer job requests: the devices when the accelerator is a GPU."""
    return devices if accelerator in ("gpu", "cuda") else 0


def method_title(method, dataset):
    return {
        "recon": f"network (model {model_of(dataset)}"
        + (
            f", adapted {dataset_settings(dataset)['adapt_epochs']} epochs)"
            if adapts(dataset)
            else ")"
        ),
        "baseline": f"ePIE baseline ({config['solver']['iterations']} passes)",
        "refined": (
            "network refined by ePIE, passes chosen by held-out patterns"
            if config["solver"]["holdout_fraction"]
            else f"network + {config['solver']['refine_iterations']} ePIE passes"
        ),
    }[method]

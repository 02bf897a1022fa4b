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
    return own if own is not None else config["dataset_defaults"][key]


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

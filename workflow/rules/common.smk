# Shared helpers: per-dataset settings, the dataset -> model map, and the library
# sources each stage depends on (Snakemake does not see Python imports).
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


def lib(*modules):
    """Library source files a stage imports, declared as inputs so edits rerun it."""
    return [f"ptycho_lib/{m}.py" for m in ("__init__",) + modules]


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

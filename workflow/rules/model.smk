# Canonical scan -> trained network -> model bundle.


rule train:
    input:
        data=lambda wc: f"results/canonical/{training_data(wc.model)}.npz",
        script="scripts/train.py",
        sources=sources("scripts/train.py"),
    output:
        best="results/train/{model}/best.ckpt",
        last="results/train/{model}/last.ckpt",
        metrics=report(
            "results/train/{model}/metrics.csv",
            caption="../report/training.rst",
            category="Training",
            labels={"model": "{model}", "file": "metrics.csv"},
        ),
        checkpoints=directory("results/train/{model}/checkpoints"),
    log:
        "logs/train/{model}.log",
    benchmark:
        "benchmarks/train/{model}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        accelerator=config["execution"]["accelerator"],
        gpu=gpu_count(
            config["execution"]["accelerator"], config["execution"]["devices"]
        ),
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    params:
        outdir=lambda wc, output: os.path.dirname(output.best),
        flags=" ".join(
            [
                flags(
                    "data",
                    {
                        "gridsize": "--gridsize",
                        "neighbours": "--neighbours",
                        "n_groups": "--n_images",
                        "val_fraction": "--val-fraction",
                        "simulated_scans": "--simulated-scans",
                    },
                ),
                flags(
                    "model",
                    {
                        "width": "--width",
                        "loss": "--loss",
                        "norm": "--norm",
                        "input_transform": "--input-transform",
                        "align_phase": "--align-phase",
                        "estimate_iterations": "--estimate-iterations",
                        "skips": "--skips",
                    },
                ),
                flags(
                    "train",
                    {
                        "max_epochs": "--max_epochs",
                        "batch_size": "--batch_size",
                        "accumulate_grad_batches": "--accumulate-grad-batches",
                        "learning_rate": "--learning-rate",
                        "seed": "--seed",
                        "deterministic": "--deterministic",
                        "checkpoint_save_top_k": "--checkpoint-save-top-k",
                        "checkpoint_monitor": "--checkpoint-monitor",
                        "checkpoint_mode": "--checkpoint-mode",
                        "early_stop_patience": "--early-stop-patience",
                        "logger": "--logger",
                        "scheduler": "--scheduler",
                        "scheduler_step_size": "--scheduler-step-size",
                        "scheduler_gamma": "--scheduler-gamma",
                        "scheduler_patience": "--scheduler-patience",
                        "scheduler_min_lr": "--scheduler-min-lr",
                        "scheduler_t_max": "--scheduler-t-max",
                        "precision": "--precision",
                    },
                ),
                flags(
                    "execution",
                    {
                        "devices": "--devices",
                        "num_workers": "--num-workers",
                        "prefetch_factor": "--prefetch-factor",
                        "persistent_workers": "--persistent-workers",
                    },
                ),
            ]
        ),
    shell:
        "python {input.script} --train_data_file {input.data} --output_dir {params.outdir}"
        " {params.flags} --accelerator {resources.accelerator} --threads {threads} --quiet 2> {log}"


rule export:
    input:
        ckpt="results/train/{model}/best.ckpt",
        script="scripts/export.py",
        sources=sources("scripts/export.py"),
    output:
        "results/models/{model}/wts.h5.zip",
    log:
        "logs/export/{model}.log",
    conda:
        "../envs/ptycho.yaml"
    shell:
        "python {input.script} {input.ckpt} {output} 2> {log}"


rule loss_curve:
    input:
        metrics="results/train/{model}/metrics.csv",
        script="scripts/loss_curve.py",
        sources=sources("scripts/loss_curve.py"),
    output:
        report(
            "results/train/{model}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            labels={"model": "{model}", "file": "loss curve"},
        ),
    log:
        "logs/loss_curve/{model}.log",
    conda:
        "../envs/ptycho.yaml"
    params:
        dpi=config["render"]["dpi"],
    shell:
        "python {input.script} {input.metrics} {output} --title 'model {wildcards.model}'"
        " --dpi {params.dpi} 2> {log}"

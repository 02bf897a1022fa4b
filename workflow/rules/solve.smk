# Iterative reconstructions on the same footing as the network's: an ePIE baseline
# from a flat object (baseline), and the network's reconstruction refined by ePIE (refined).


rule baseline:
    input:
        data="results/canonical/{dataset}.npz",
        sources=sources("scripts/solve.py"),
    output:
        "results/baseline/{dataset}.npz",
    log:
        "logs/baseline/{dataset}.log",
    benchmark:
        "logs/timings/baseline/{dataset}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    params:
        flags=flags("baseline", "solver", "execution"),
        # a scan whose probe is approximate: the baseline refines it for every later stage
        probe=probe_refinement,
    shell:
        "python -m scripts.solve baseline --test-data {input.data} --output {output} {params.flags}"
        " {params.probe} --threads {threads} 2> {log}"


rule probed:
    input:
        data="results/canonical/{dataset}.npz",
        solved="results/baseline/{dataset}.npz",
        sources=sources("scripts/probed.py"),
    output:
        "results/probed/{dataset}.npz",
    log:
        "logs/probed/{dataset}.log",
    conda:
        "../envs/ptycho.yaml"
    shell:
        "python -m scripts.probed {input.data} {input.solved} {output} 2> {log}"


rule refined:
    input:
        data=lambda wc: scan_file(wc.dataset),
        init="results/recon/{dataset}.npz",
        sources=sources("scripts/solve.py"),
    output:
        "results/refined/{dataset}.npz",
    log:
        "logs/refined/{dataset}.log",
    benchmark:
        "logs/timings/refined/{dataset}.tsv"
    conda:
        "../envs/ptycho.yaml"
    threads: config["execution"]["threads"]
    resources:
        mem_mb=config["resources"]["infer"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    params:
        flags=flags("refined", "solver", "execution"),
        # the baseline's probe is closer than the file's, not exact: refined further here
        probe=probe_refinement,
    shell:
        "python -m scripts.solve refined --test-data {input.data} --init {input.init} --output {output}"
        " {params.flags} {params.probe} --threads {threads} 2> {log}"

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
    shell:
        "python -m scripts.solve baseline --test-data {input.data} --output {output} {params.flags}"
        " --threads {threads} 2> {log}"


rule refined:
    input:
        data="results/canonical/{dataset}.npz",
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
    shell:
        "python -m scripts.solve refined --test-data {input.data} --init {input.init} --output {output}"
        " {params.flags} --threads {threads} 2> {log}"

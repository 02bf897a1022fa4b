"""ptycho_lib: physics-informed neural-network ptychography (PtychoPINN method) in
PyTorch + Lightning, the model library of the Snakemake pipeline."""

__version__ = "0.2.0"

"""The train / infer command lines: --help, precedence of config files and flags, the
deprecated flags, and one-line errors that name the flag (and leave nothing behind)."""

import logging

import pytest

from knobs import canonical_tiny, fast_without, metrics, train
from ptycho_lib.cli import run

TRAIN_FLAGS = """--train-data-file --test-data-file --output-dir --max-epochs --n-groups --gridsize --batch-size
--accelerator --devices --deterministic --no-deterministic --num-workers --learning-rate --quiet
--checkpoint-save-top-k --checkpoint-monitor --checkpoint-mode --early-stop-patience --logger --scheduler
--scheduler-step-size --scheduler-gamma --scheduler-patience --scheduler-min-lr --scheduler-t-max
--accumulate-grad-batches --prefetch-factor --persistent-workers --no-persistent-workers --seed --config
--device --disable_mlflow --precision --estimate-iterations --skips --no-skips --stem""".split()
INFER_FLAGS = """--model-path --test-data --output-dir --n-images --accelerator --num-workers --inference-batch-size
--middle-trim --pad-eval --quiet --config""".split()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return canonical_tiny(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.mark.parametrize("program, flags", [("train", TRAIN_FLAGS), ("infer", INFER_FLAGS)])
def test_help_lists_every_flag_with_its_default(program, flags, capsys):
    module = __import__(program)
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split()) + " "
    for flag in flags:
        assert f"{flag} " in text or f"{flag}," in text, flag
    assert ("--batch-size INT, --batch_size INT groups per forward pass (default: 8)" in text if program == "train"
            else "--inference-batch-size INT patterns per forward pass (bounds memory; 0 = the device's own, "
                 "256 on CPU, 4096 on CUDA) (default: 0)" in text)
    if program == "infer":
        assert "--devices" not in text and "--prefetch-factor" not in text  # training-only knobs


def test_flags_override_config_files_which_override_defaults(data, tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train: {max_epochs: 4, scheduler: step, scheduler_step_size: 5}\nunrelated: {x: 1}\n")
    second.write_text("train: {scheduler_step_size: 1}\n")
    out = train(data, tmp_path / "out", "--config", str(first), "--config", str(second), "--scheduler-gamma", "0.1")
    # the second file's step size wins over the first's; FAST's --max_epochs 2 over the first file's 4
    assert [float(r["lr"]) for r in metrics(out)] == pytest.approx([1e-3, 1e-4], rel=1e-6)


def _fails(argv, capsys, program="train"):
    module = __import__(program)
    with pytest.raises(SystemExit) as e:
        run(module.main, argv)
    assert e.value.code != 0
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("flags, message", [
    (["--prefetch-factor", "4"], "error: --prefetch-factor 4 needs --num-workers > 0"),
    (["--persistent-workers"], "error: --persistent-workers needs --num-workers > 0"),
    (["--devices", "2", "--accelerator", "mps"], "error: --devices 2 is not possible with --accelerator mps"),
    (["--checkpoint-save-top-k", "0"], "error: --checkpoint-save-top-k 0 would keep no best checkpoint"),
    (["--batch-size", "0"], "error: --batch-size must be >= 1, got 0"),
    (["--scheduler-gamma", "2"], "error: --scheduler-gamma must be <= 1.0, got 2.0"),
    (["--learning-rate", "0"], "error: --learning-rate must be > 0.0, got 0.0"),
    (["--scheduler", "cosine", "--scheduler-min-lr", "0.01"], "error: --scheduler-min-lr 0.01 must be below"),
    (["--device", "cuda", "--accelerator", "cpu"], "error: --device cuda contradicts --accelerator cpu"),
    (["--disable_mlflow", "--logger", "mlflow"], "error: --disable_mlflow contradicts --logger mlflow"),
    (["--disable_mlflow", "--no-quiet"], "error: --disable_mlflow turns the progress bar off"),
])
def test_bad_values_and_contradictions_fail_in_one_line_naming_the_flag(data, tmp_path, capsys, flags, message):
    err = _fails(["--train-data-file", str(data), "--output-dir", str(tmp_path / "out"), *flags], capsys)
    assert err[-1].startswith(message), err
    assert not (tmp_path / "out").exists()


def test_config_file_errors_name_the_file_and_key(data, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {max_epoch: 3}\n")
    err = _fails(["--train-data-file", str(data), "--output-dir", str(tmp_path / "out"), "--config", str(bad)], capsys)
    assert err[-1] == f"error: --config {bad}: unknown key train.max_epoch"
    bad.write_text("execution: {num_workers: -1}\n")
    err = _fails(["--train-data-file", str(data), "--output-dir", str(tmp_path / "out"), "--config", str(bad)], capsys)
    assert err[-1] == f"error: --config {bad}: execution.num_workers must be >= 0, got -1"


def _deprecations(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("deprecated:")]


def test_deprecated_device_sets_the_accelerator_once_warned_never_overriding_it(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    argv = fast_without("--accelerator")
    import train as train_script
    train_script.main(["--train-data-file", str(data), "--output-dir", str(tmp_path / "a"), *argv, "--device", "cpu"])
    assert _deprecations(caplog) == ["deprecated: --device cpu is taken as --accelerator cpu; use --accelerator"]
    assert any("training on cpu" in r.getMessage() for r in caplog.records)
    assert not any("--accelerator auto" in r.getMessage() for r in caplog.records)  # auto was replaced, not consulted
    caplog.clear()
    train(data, tmp_path / "b", "--device", "cpu")  # FAST gives --accelerator cpu: agreeing, ignored
    assert _deprecations(caplog) == ["deprecated: --device cpu is ignored in favour of --accelerator; drop it"]


def test_deprecated_disable_mlflow_turns_logging_off(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    argv = fast_without("--logger")
    import train as train_script
    out = tmp_path / "out"
    train_script.main(["--train-data-file", str(data), "--output-dir", str(out), *argv, "--disable_mlflow"])
    assert _deprecations(caplog) == ["deprecated: --disable_mlflow is taken as --logger none --quiet; use those"]
    assert not (out / "logs").exists() and len(metrics(out)) == 2


def test_old_spellings_of_flags_still_work_with_one_warning_each(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    import train as train_script
    argv = fast_without("--n-groups", "--batch-size", "--max-epochs")
    train_script.main(["--train_data_file", str(data), "--output_dir", str(tmp_path / "out"), *argv,
                       "--n_images", "16", "--batch_size", "8", "--max_epochs", "1", "--max_epochs", "2"])
    assert sorted(_deprecations(caplog)) == [f"deprecated: --{old} is now spelled --{new}; use that" for old, new in (
        ("batch_size", "batch-size"), ("max_epochs", "max-epochs"), ("n_images", "n-groups"),
        ("output_dir", "output-dir"), ("train_data_file", "train-data-file"))]
    assert len(metrics(tmp_path / "out")) == 2  # the last --max_epochs counted, as with any flag


def test_accelerator_auto_says_which_device_it_picked(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train(data, tmp_path / "out", "--accelerator", "auto")
    picked = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--accelerator auto: using")]
    assert picked == ["--accelerator auto: using cpu (no CUDA or MPS device)"]

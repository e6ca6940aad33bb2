"""The run directory of ``train-cnn``: its files, and the checks that resuming needs.

``config.json``
    Every setting (``monitor`` resolved, ``class_weight``), the input files (path, run_id,
    seed, size, content fingerprint: :meth:`~spectrocnn.dataset.EventFile.identity`), the
    labels (``labels``: kind, classes, the class weights used) and the preprocessing.
``best_model.keras`` (and ``best_model.h5`` with ``legacy_h5``)
    The model of the epoch with the best monitored score, ``val_accuracy`` by default
    (strictly better than every earlier epoch, as Keras' ``ModelCheckpoint(
    save_best_only=True)``; higher, or lower for ``val_loss``); state.json keeps the score
    as ``best_<monitor>`` (:func:`best_key`).
``last_model.keras``, ``state.json``
    The model with its optimizer state after the last completed epoch, the number of
    completed epochs and the best score so far: what ``resume`` continues from.
``history.csv``
    One row per epoch: epoch (counted from 1, as on the console, in state.json and
    metrics.json; runs made before this was so counted from 0, and resuming one renumbers
    its history), loss, accuracy, val_loss, val_accuracy, epoch_time_s (seconds since the
    previous epoch ended, checkpointing included).
``metrics.json``
    The best model on the validation and the training events: accuracy, loss, ROC AUC,
    confusion matrix at 0.5 (other labels: :func:`spectrocnn.metrics.label_metrics`);
    epochs, wall time, training images per second, the seconds spent scoring both samples
    after the last epoch (``score_time_s``), ``warnings`` (one class predicted for every
    validation event).
``accuracy.png``, ``loss.png``, ``roc.png``, ``scores.png``
    The lecture's plots (slides 16-17); for a regression target ``mae.png``, ``loss.png``,
    ``predicted.png``; for multiclass labels the curves only
    (:func:`spectrocnn.model.plots.plot_results`).

Every file is written atomically (temporary name, then rename). A run that fails before
its first epoch completes removes what it wrote (:func:`run_directory`); a later failure
or an interruption keeps the run directory, and ``resume=True`` continues it from its last
completed epoch to the planned number of epochs (same split, same per-epoch shuffling,
optimizer state restored; not bit-identical to an uninterrupted run). ``resume`` with more
``epochs`` than the run planned extends it, a finished run too: the history continues, the
best model is kept unless a later epoch beats it, config.json records the new number of
epochs; fewer epochs than it has completed are refused. It refuses input files that are
not the ones the run recorded (regenerated at the same path: another run_id, seed, size or
content fingerprint).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spectrocnn._atomic import atomic_path, write_json
from spectrocnn.errors import ConfigError, ModelFileError
from spectrocnn.model.trainconfig import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from spectrocnn.dataset import EventFile

__all__ = [
    "RUN_SCHEMA",
    "best_key",
    "check_extension",
    "check_out_dir",
    "check_resume_inputs",
    "completed_epochs",
    "default_run_dir",
    "finished",
    "load_run_config",
    "read_history",
    "read_json",
    "read_state",
    "record_epochs",
    "run_directory",
    "run_preprocessing",
    "truncate_history",
    "versions",
]

log = logging.getLogger(__name__)

#: ``schema`` of config.json.
RUN_SCHEMA = "spectrocnn.run/1"

#: Settings that may differ between a run and its resumption (no effect on the result).
_RESUME_FREE = ("threads",)


def default_run_dir(base: str | os.PathLike = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>`` (with a ``-2``, ``-3`` ... suffix if it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(base) / stamp
    k = 2
    while path.exists():
        path = Path(base) / f"{stamp}-{k}"
        k += 1
    return path


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``what`` names it in the errors.

    Raises
    ------
    ModelFileError
        Unreadable, not text, not JSON, or not an object.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except ValueError as exc:  # UnicodeDecodeError
        raise ModelFileError(f"{path}: the {what} is not a text file ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(f"{path}: the {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: the {what} is not a JSON object")
    return data


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The settings of the run in ``run_dir`` (its config.json).

    Raises
    ------
    ConfigError
        When ``run_dir`` holds no config.json (not a run directory).
    ModelFileError
        When config.json cannot be read.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a train-cnn run directory (no config.json)")
    data = _upgrade_run_config(read_json(path, "run configuration"))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        return TrainConfig(**{k: v for k, v in data.items() if k in names})
    except (TypeError, ConfigError) as exc:
        raise ModelFileError(f"{path}: invalid run configuration ({exc})") from None


def _upgrade_run_config(data: dict[str, Any]) -> dict[str, Any]:
    """The settings of a config.json written before early stopping and ``precision``: such
    runs trained their fixed number of epochs (no patience) in float32 unless
    ``mixed_precision`` said ``bf16``; ``arch`` ``seed`` is read as ``lecture``. Runs made
    before ``class_weight`` and ``monitor`` (issue 22) weighed every event alike and kept
    the best val_accuracy."""
    data = dict(data)
    data.setdefault("class_weight", "none")
    data.setdefault("monitor", "val_accuracy")
    if "patience" not in data:
        data["patience"] = 0
    if "precision" not in data:
        data["precision"] = "bf16" if data.get("mixed_precision") == "bf16" else "fp32"
    return data


def run_preprocessing(model_path: str | os.PathLike) -> tuple[int | None, str | None]:
    """``(input_size, downsample)`` from the config.json of the run directory that holds a
    saved model, or Nones (no config.json, or one that cannot be read: logged); what
    eval-cnn and the attribution take to prepare the images as the run did."""
    path = Path(model_path).resolve().parent / "config.json"
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text())
        size, method = data.get("input_size"), data.get("downsample")
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None, None
    return (int(size) if isinstance(size, int) else None), (
        str(method) if isinstance(method, str) else None
    )


def best_key(monitor: str) -> str:
    """The key of state.json that holds the best score: ``best_val_accuracy`` (as runs
    made before ``monitor``), ``best_val_auc``, ``best_val_loss``."""
    return f"best_{monitor}"


def read_state(run_dir: Path | None) -> dict[str, Any]:
    """state.json of ``run_dir`` (that of a fresh run when None or absent)."""
    path = None if run_dir is None else run_dir / "state.json"
    if path is None or not path.is_file():
        return {"completed_epochs": 0, "best_val_accuracy": None, "best_epoch": 0}
    return read_json(path, "run state")


def completed_epochs(run_dir: str | os.PathLike) -> int:
    """Epochs the run in ``run_dir`` has completed (its state.json; 0 when none or unreadable)."""
    try:
        return int(read_state(Path(run_dir)).get("completed_epochs", 0))
    except (ModelFileError, TypeError, ValueError):
        return 0


def check_out_dir(out: Path, resume: bool, config: TrainConfig) -> None:
    """Refuse an output that is not a directory, a non-empty one unless ``resume``, and a
    resume with other settings than the run's (except :data:`_RESUME_FREE` and epochs).

    Raises
    ------
    ConfigError
        Naming the directory and what to do (another ``--out``, ``--resume``, or the
        settings that differ).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    if not resume:
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(
                f"run directory {out} exists and is not empty; choose another output directory "
                "or continue that run with --resume"
            )
        return
    saved = load_run_config(out)
    a, b = saved.settings(), config.settings()
    if "auto" in (a["monitor"], b["monitor"]):  # resolved from the run's own file
        a["monitor"] = b["monitor"] = max(a["monitor"], b["monitor"], key=lambda m: m != "auto")
    diff = [k for k in a if k not in (*_RESUME_FREE, "epochs") and a[k] != b[k]]
    if diff:
        details = ", ".join(f"{k} {b[k]!r} (run: {a[k]!r})" for k in diff)
        raise ConfigError(f"cannot resume {out} with different settings: {details}")


def check_extension(out: Path, config: TrainConfig, done: int) -> None:
    """Refuse to resume the run in ``out`` with fewer epochs than it has completed.

    More epochs than the run planned extend it (a finished run too): the history goes on,
    the best model is kept unless a later epoch beats it, and config.json records the new
    number (:func:`record_epochs`).

    Raises
    ------
    ConfigError
        When ``config.epochs`` is below ``done``, the epochs completed.
    """
    if config.epochs < done:
        raise ConfigError(
            f"--epochs {config.epochs} is fewer than the {done} epochs run {out} has "
            f"completed; resume with --epochs {done} or more (or without --epochs)"
        )


def finished(out: Path, state: dict[str, Any], done: int, epochs: int) -> bool:
    """Whether the run in ``out`` is complete for a resume that plans ``epochs`` epochs.

    A run that trained all its epochs is complete unless ``epochs`` extends it; a run that
    stopped early (``--patience``) stays complete unless ``epochs`` is more than the run
    planned (config.json), which asks for more training explicitly.
    """
    if state.get("status") != "complete" or not (out / "metrics.json").is_file():
        return False
    if done >= epochs:
        return True
    planned = read_json(out / "config.json", "run configuration").get("epochs", done)
    return bool(state.get("stopped_early")) and epochs <= int(planned)


def record_epochs(path: Path, epochs: int) -> None:
    """Write the planned ``epochs`` of a resumed run into its config.json (``path``)."""
    saved = read_json(path, "run configuration")
    if saved.get("epochs") != epochs:
        log.info("run %s extended from %s to %d epochs", path.parent, saved.get("epochs"), epochs)
        write_json(path, {**saved, "epochs": epochs})


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def check_resume_inputs(out: Path, files: dict[str, EventFile | None]) -> None:
    """Refuse to resume on input files other than those the run recorded in config.json.

    Parameters
    ----------
    out : Path
        The run directory.
    files : dict
        ``"input_file"`` and ``"val_file"`` (config.json's keys) -> the open file, or None.

    Raises
    ------
    ConfigError
        Naming the file and what changed (:func:`spectrocnn.dataset.identity.identity_change`).
    """
    from spectrocnn.dataset.identity import identity_change

    saved = read_json(out / "config.json", "run configuration")
    for key, ev in files.items():
        recorded = saved.get(key)
        if ev is None or not isinstance(recorded, dict):
            continue
        change = identity_change(recorded, ev.identity())
        if change is not None:
            what = "trained" if key == "input_file" else "validated"
            raise ConfigError(
                f"--resume: {_shown(ev.path)} is not the file this run was {what} on "
                f"({change}); start a new run with another --out"
            )


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as column -> per-epoch values (NaN where a value is missing); ``{}``
    when there is none."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            try:
                out.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                out.setdefault(k, []).append(math.nan)
    return out


def truncate_history(path: Path, epochs: int) -> None:
    """Keep the header and the rows of the first ``epochs`` epochs.

    A history.csv of a run made before epochs were counted from 1 (its first ``epoch``
    is 0) is renumbered from 1, so that the rows a resumed run appends continue it.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)[: 1 + epochs] if epochs else []
    if len(lines) > 1 and lines[0].startswith("epoch,") and lines[1].startswith("0,"):
        lines[1:] = [f"{int(r.split(',', 1)[0]) + 1},{r.split(',', 1)[1]}" for r in lines[1:]]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))


@contextmanager
def run_directory(out: Path, resume: bool) -> Iterator[None]:
    """Create the run directory ``out`` (if needed) for a run; on failure, remove what the
    run wrote unless an epoch completed or it resumes one, which keeps the run directory
    for ``--resume`` (logged)."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in out.iterdir()}
    try:
        yield
    except BaseException as exc:
        completed = int(read_state(out).get("completed_epochs", 0)) if out.is_dir() else 0
        if not resume and completed == 0:
            _remove_outputs(out, created, before)
        elif out.is_dir():  # train-cnn prints the command line that resumes it
            log.info(
                "run %s stopped after epoch %d (%s); resume=True continues it",
                out,
                completed,
                type(exc).__name__,
            )
        raise


def _remove_outputs(out: Path, created: bool, before: set[str]) -> None:
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name not in before:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def versions() -> dict[str, str]:
    """Versions of spectrocnn and the libraries that shape a run (config.json)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("spectrocnn", "tensorflow", "tensorflow-cpu", "keras", "numpy", "h5py"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out

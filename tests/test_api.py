"""The public API: the names each part exports (``__all__``), written out here.

A change to a public API is a decision: it changes a line below in the same commit
(docs/design.md 5, "Public API"), and the README or docs/design.md where they name it.
Modeled on scikit-hep's ``particle`` (tests/test_package.py pins its ``__all__``).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import spectrocnn

#: Sorted ``__all__`` of the package, each subpackage and each public top-level module.
PUBLIC_API = {
    "spectrocnn": [
        "ConfigError", "EventFileError", "EventFileNotFoundError", "ModelFileError",
        "ShardError", "SpectrocnnError", "__version__", "simulate_particles",
    ],
    "spectrocnn.simulate": [
        "C_GEV_PER_T_MM", "CallableField", "Crossings", "CylinderLayer", "Detector",
        "EventBatch", "Field", "FieldMap", "Gun", "HIT_COLUMNS", "HIT_MOMENTUM_COLUMNS",
        "HitTable", "LabelThreshold", "Multiplicity", "PARTICLE_COLUMNS", "ParticleGun",
        "ParticleTable", "PlaneLayer", "Simulation", "StopReason", "UniformField",
        "choose_propagator", "concatenate_batches", "highland_theta0", "lecture_detector",
        "load_field_map", "propagate", "simulate_events", "simulate_particles",
        "telescope_detector",
    ],
    "spectrocnn.dataset": [
        "CHUNK_EVENTS", "COMPRESSIONS", "EventFile", "EventFileNotFoundError",
        "EventFileWriter", "ExportResult", "GenerateResult", "ImageSpec", "LabelSpec",
        "PROJECTIONS",
        "SCHEMA", "ShardedResult", "SparseImages", "export_png", "export_trackml",
        "generate_file", "generate_sharded", "open_events", "project", "rasterize",
        "rasterize_sparse", "write_events",
    ],
    "spectrocnn.model": [
        "ARCHITECTURES", "DOWNSAMPLE_METHODS", "EvalResult", "ModelFileError", "TrainConfig",
        "TrainResult", "binary_metrics", "build_model", "downsample", "evaluate",
        "get_architecture", "load_images", "load_run_config", "register_architecture",
        "roc_auc", "roc_curve", "split_indices", "train",
    ],
    "spectrocnn.reco": [
        "CircleFit", "FinderSettings", "FoundTracks", "ReferenceSurface", "TrackFitBatch",
        "TrackFitResult", "TrackFits", "circle_from_moments", "classify_events", "find_tracks",
        "finder_resolution", "finding_performance", "fit_circles", "fit_track", "fit_tracks",
        "fit_truth_tracks", "gluckstern_sigma_k",
    ],
    "spectrocnn.cli": [],
    "spectrocnn.config": [
        "CONFIG_VERSION", "Config", "PRESETS", "config_from_dict", "load_config",
        "preset_config",
    ],
    "spectrocnn.metrics": [
        "best_cut_accuracy", "binary_metrics", "label_metrics", "multiclass_metrics",
        "regression_metrics", "roc_auc", "roc_curve",
    ],
    "spectrocnn.labels": [
        "CLASS_WEIGHTS", "LABEL_KINDS", "LabelSpec", "class_weights", "fraction_text",
        "one_class_warning", "predicted_classes", "require_kind",
    ],
    "spectrocnn.errors": [
        "ConfigError", "EventFileError", "EventFileNotFoundError", "ModelFileError",
        "ShardError", "SpectrocnnError",
    ],
    "spectrocnn.seeds": ["SEED_BOUND", "check_seed", "new_seed", "stream"],
    "spectrocnn.display": [
        "draw_event", "event_figure", "hit_count_norm", "layer_outlines", "momentum_ticks",
        "trajectories",
    ],
    "spectrocnn.torchdata": [
        "EventFileDataset", "FreshEventsDataset", "TRUTH_FIELDS", "epoch_seed",
    ],
}  # fmt: skip
#: The commands: each public module of spectrocnn.cli exports its parser and its entry point.
COMMANDS = ["eval_cnn", "export_events", "fit_tracks", "gen_events", "show_event", "train_cnn"]
#: Modules that need an optional extra, and the package it brings.
OPTIONAL = {"spectrocnn.torchdata": "torch"}


def _import(name: str):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    return importlib.import_module(name)


def _all_modules() -> list[str]:
    names = ["spectrocnn"]
    names += [m.name for m in pkgutil.walk_packages(spectrocnn.__path__, "spectrocnn.")]
    return sorted(n for n in names if n != "spectrocnn.__main__")


def test_every_part_is_pinned():
    """Each subpackage and each public top-level module has its row in PUBLIC_API."""
    top = {f"spectrocnn.{m.name}" for m in pkgutil.iter_modules(spectrocnn.__path__)}
    public = {n for n in top if not n.rsplit(".", 1)[1].startswith("_")}
    assert public | {"spectrocnn"} == set(PUBLIC_API)


@pytest.mark.parametrize("name", sorted(PUBLIC_API))
def test_public_api_is_pinned(name):
    """``__all__`` is exactly the names written out above, without repeats."""
    module = _import(name)
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"
    assert sorted(module.__all__) == PUBLIC_API[name], (
        f"{name}.__all__ changed: update PUBLIC_API in tests/test_api.py if you mean it"
    )


def test_the_commands_are_pinned():
    """The public modules of spectrocnn.cli are the commands, each ``build_parser, main``."""
    cli = importlib.import_module("spectrocnn.cli")
    found = sorted(m.name for m in pkgutil.iter_modules(cli.__path__) if m.name[0] != "_")
    assert found == COMMANDS
    for name in COMMANDS:
        module = importlib.import_module(f"spectrocnn.cli.{name}")
        assert sorted(module.__all__) == ["build_parser", "main"], name


@pytest.mark.parametrize("name", _all_modules())
def test_every_module_has_all_and_its_names_exist(name):
    """Every module (private ones too: their ``__all__`` is what the rest of the package may
    take from them) says what it exports, and every name it lists is there."""
    module = _import(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it lacks: {missing}"


def test_import_spectrocnn_stays_light():
    """``import spectrocnn`` (what every command does first) imports the errors and nothing
    else of the package, and no NumPy; ``spectrocnn.simulate_particles`` comes on first use."""
    code = (
        "import sys\n"
        "import spectrocnn\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('spectrocnn', 'numpy', 'scipy', 'h5py', 'tensorflow', 'keras', 'matplotlib', "
        "'torch')))\n"
        "from spectrocnn.simulate import simulate_particles\n"
        "assert spectrocnn.simulate_particles is simulate_particles\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['spectrocnn', 'spectrocnn.errors']"

"""Bad inputs of every command: exit code, one-line message, no output, nothing damaged.

:data:`CASES` is the table of ``docs/errors.md``; :func:`test_docs_table_is_current`
checks that the document shows exactly this table. After changing a case, regenerate the
table with ``python tests/test_errors.py > /tmp/table.md`` and paste it between the
markers of ``docs/errors.md``.

Every row runs the command in-process through its ``main(argv)`` (a few also in a real
process, to see the real stderr) and checks: the exit code; stderr is one line,
``<command>: error: ...`` (``WARNING`` for a row that succeeds) containing the message;
no traceback; no file appears, disappears or changes in the output directory (which holds
a file ``old.h5`` beforehand) nor among the inputs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from spectrocnn.cli import eval_cnn, fit_tracks, gen_events, show_event, train_cnn

MAINS = {
    "gen-events": gen_events,
    "train-cnn": train_cnn,
    "eval-cnn": eval_cnn,
    "show-event": show_event,
    "fit-tracks": fit_tracks,
}


@dataclass(frozen=True)
class Case:
    """One bad input.

    ``args`` and ``message`` may name the files of the test world as ``{name}``
    (:data:`DOC_NAMES` lists them); ``env`` is the output directory's condition:
    ``readonly``, ``full`` (a tmpfs with about 4 KiB free), ``small`` (an empty 12 MiB
    tmpfs), ``enospc`` (writes fail with ENOSPC, simulated in-process) or ``""`` (an
    ordinary directory).
    """

    id: str
    command: str
    bad: str
    args: str
    code: int
    message: str
    env: str = ""


C = Case
CASES: list[Case] = [
    # -- gen-events: flags
    C("gen-n-negative", "gen-events", "negative --n", "--n -5 --out {out}", 2,
      "--n must be a positive integer, got -5"),
    C("gen-n-zero", "gen-events", "--n 0", "--n 0 --out {out}", 2,
      "--n must be a positive integer, got 0"),
    C("gen-n-text", "gen-events", "--n not a number", "--n abc --out {out}", 2,
      "--n must be a positive integer, got 'abc'"),
    C("gen-no-out", "gen-events", "--out missing", "--n 5", 2,
      "the following arguments are required: --out"),
    C("gen-unknown-flag", "gen-events", "unknown flag", "--n 5 --out {out} --bogus", 2,
      "unrecognized arguments: --bogus"),
    C("gen-image-size-0", "gen-events", "--image-size 0", "--n 5 --out {out} --image-size 0",
      2, "--image-size must be an integer in [1, 16384], got 0"),
    C("gen-image-size-huge", "gen-events", "--image-size beyond 16384 (HDF5 chunk limit)",
      "--n 5 --out {out} --image-size 70000", 2,
      "--image-size must be an integer in [1, 16384], got 70000"),
    C("gen-workers-0", "gen-events", "--workers 0", "--n 5 --out {out} --workers 0", 2,
      "--workers must be a positive integer, got 0"),
    C("gen-seed-negative", "gen-events", "--seed -1", "--n 5 --out {out} --seed -1", 2,
      "--seed must be an integer in [0, 2**64), got -1"),
    C("gen-seed-too-large", "gen-events", "--seed 2**64",
      "--n 5 --out {out} --seed 18446744073709551616", 2,
      "--seed must be an integer in [0, 2**64), got 18446744073709551616"),
    C("gen-compression", "gen-events", "unknown --compression",
      "--n 5 --out {out} --compression foo", 2, "invalid choice: 'foo'"),
    C("gen-preset", "gen-events", "unknown --preset", "--n 5 --out {out} --preset nosuch", 2,
      "unknown preset 'nosuch'"),
    # -- gen-events: configuration
    C("gen-config-missing", "gen-events", "missing config file",
      "--n 5 --out {out} --config {no_config}", 2, "config file '{no_config}' does not exist"),
    C("gen-config-syntax", "gen-events", "bad TOML syntax",
      "--n 5 --out {out} --config {cfg_syntax}", 2,
      "config file '{cfg_syntax}' is not valid TOML"),
    C("gen-config-unknown-key", "gen-events", "unknown top-level key",
      "--n 5 --out {out} --config {cfg_unknown}", 2,
      "{cfg_unknown}: unknown key 'bogus_key' in the top level"),
    C("gen-config-unknown-gun-key", "gen-events", "unknown key in [gun]",
      "--n 5 --out {out} --config {cfg_unknown_gun}", 2,
      "unknown key 'gun.p_GeV' in [gun]"),
    C("gen-config-wrong-type", "gen-events", "string where a number belongs",
      "--n 5 --out {out} --config {cfg_type}", 2,
      "n_particles must be a positive integer, got 'ten'"),
    C("gen-config-p-reversed", "gen-events", "momentum range reversed",
      "--n 5 --out {out} --config {cfg_p_reversed}", 2,
      "gun.p_low_GeV must be a non-empty range with min < max, got [0.5, 0.1]"),
    C("gen-config-p-negative", "gen-events", "negative momentum",
      "--n 5 --out {out} --config {cfg_p_negative}", 2,
      "gun.p_high_GeV must lie >= 0.0, got [-1.0, 5.0]"),
    C("gen-config-resolution", "gen-events", "negative resolution",
      "--n 5 --out {out} --config {cfg_resolution}", 2,
      "detector.resolution_um must be >= 0, got -5.0"),
    C("gen-config-efficiency", "gen-events", "efficiency > 1",
      "--n 5 --out {out} --config {cfg_efficiency}", 2,
      "detector.efficiency must be in [0, 1], got 1.5"),
    C("gen-config-no-layers", "gen-events", "empty layer list",
      "--n 5 --out {out} --config {cfg_no_layers}", 2,
      "detector.layers must hold at least one layer, got none"),
    C("gen-config-duplicate-layers", "gen-events", "two layers with the same radius",
      "--n 5 --out {out} --config {cfg_duplicate}", 2,
      "detector layers 0 and 1 are the same surface (cylinders of radius_mm 50.0)"),
    C("gen-config-radius", "gen-events", "negative layer radius",
      "--n 5 --out {out} --config {cfg_radius}", 2,
      "detector.layers[0].radius_mm must be positive, got -50.0"),
    C("gen-config-field-nan", "gen-events", "NaN in the uniform field",
      "--n 5 --out {out} --config {cfg_field_nan}", 2,
      "field.B_T must be a list of 3 finite numbers, got [0.0, 0.0, nan]"),
    C("gen-config-window", "gen-events", "image window reversed",
      "--n 5 --out {out} --config {cfg_window}", 2,
      "image.window_mm must be [x_min, x_max, y_min, y_max] with min < max"),
    C("gen-fieldmap-nan", "gen-events", "NaN in a field map",
      "--n 5 --out {out} --config {cfg_map_nan}", 2,
      "field map {map_nan}: B_T contains NaN or inf"),
    C("gen-fieldmap-shape", "gen-events", "field map B_T shape mismatch",
      "--n 5 --out {out} --config {cfg_map_shape}", 2,
      "field map {map_shape}: B_T must have shape (4, 4, 4, 3), got (4, 4, 3, 3)"),
    C("gen-fieldmap-missing", "gen-events", "missing field map file",
      "--n 5 --out {out} --config {cfg_map_missing}", 2,
      "field map '{no_map}' does not exist"),
    C("gen-fieldmap-not-npz", "gen-events", "field map is not .npz",
      "--n 5 --out {out} --config {cfg_map_text}", 2,
      "field map '{map_text}' is not a readable .npz file"),
    # -- gen-events: output
    C("gen-out-exists", "gen-events", "existing --out without --overwrite",
      "--n 5 --out {old}", 2, "output file '{old}' exists (overwrite it with --overwrite)"),
    C("gen-out-no-dir", "gen-events", "--out in a missing directory",
      "--n 5 --out {outdir}/missing/new.h5", 2,
      "output directory '{outdir}/missing' does not exist"),
    C("gen-out-is-dir", "gen-events", "--out is a directory", "--n 5 --out {outdir}", 2,
      "output '{outdir}' is a directory, expected a file name"),
    C("gen-readonly", "gen-events", "read-only output directory",
      "--n 8 --out {out} --image-size 64 --workers 1", 1,
      "cannot create a file in '{outdir}'", "readonly"),
    C("gen-readonly-overwrite", "gen-events", "read-only directory, --overwrite",
      "--n 8 --out {old} --overwrite --image-size 64 --workers 1", 1,
      "cannot create a file in '{outdir}'", "readonly"),
    C("gen-full-disk", "gen-events", "full disk (tmpfs), --overwrite",
      "--n 64 --out {old} --overwrite --image-size 64 --workers 1", 1,
      "cannot write '{old}': No space left on device", "full"),
    C("gen-disk-fills", "gen-events", "disk fills up while writing (12 MiB tmpfs)",
      "--n 2000 --out {out} --image-size 64 --workers 2", 1,
      "cannot write '{out}': No space left on device", "small"),
    C("gen-disk-fills-overwrite", "gen-events", "disk fills up while writing, --overwrite",
      "--n 2000 --out {old} --overwrite --image-size 64 --workers 1", 1,
      "cannot write '{old}': No space left on device", "small"),
    C("gen-enospc", "gen-events", "writes fail with ENOSPC",
      "--n 8 --out {out} --image-size 64 --workers 1", 1,
      "cannot write '{out}': No space left on device", "enospc"),
    C("gen-enospc-overwrite", "gen-events", "writes fail with ENOSPC, --overwrite",
      "--n 8 --out {old} --overwrite --image-size 64 --workers 1", 1,
      "cannot write '{old}': No space left on device", "enospc"),
    # -- train-cnn
    C("train-missing", "train-cnn", "missing input file", "{missing} --out {run}", 2,
      "event file '{missing}' does not exist"),
    C("train-empty", "train-cnn", "empty (0-byte) file", "{empty} --out {run}", 1,
      "{empty}: an empty file, expected a spectrocnn event file"),
    C("train-text", "train-cnn", "text file, not HDF5", "{text} --out {run}", 1,
      "{text}: not an HDF5 file, expected a spectrocnn event file"),
    C("train-foreign", "train-cnn", "HDF5 file of another kind", "{foreign} --out {run}", 1,
      "{foreign}: not a spectrocnn event file (no 'schema' attribute"),
    C("train-schema", "train-cnn", "another schema version", "{schema2} --out {run}", 1,
      "{schema2}: schema is 'spectrocnn.events/2', expected 'spectrocnn.events/1'"),
    C("train-truncated", "train-cnn", "truncated file", "{truncated} --out {run}", 1,
      "{truncated}: cannot open the HDF5 file, it is truncated or corrupt"),
    C("train-corrupt-chunk", "train-cnn", "corrupted gzip chunk of image 3",
      "{corrupt} --out {run} --input-size 16", 1, "{corrupt}: image 3 is corrupt"),
    C("train-zero-events", "train-cnn", "file with zero events", "{zero} --out {run}", 2,
      "training file {zero} holds no events"),
    C("train-epochs-0", "train-cnn", "--epochs 0", "{good} --epochs 0", 2,
      "--epochs must be a positive integer, got 0"),
    C("train-batch-size-0", "train-cnn", "--batch-size 0", "{good} --batch-size 0", 2,
      "--batch-size must be a positive integer, got 0"),
    C("train-val-fraction", "train-cnn", "--val-fraction 1.5", "{good} --val-fraction 1.5", 2,
      "--val-fraction must be between 0 and 1 (exclusive), got 1.5"),
    C("train-val-and-fraction", "train-cnn", "--val and --val-fraction together",
      "{good} --val {good} --val-fraction 0.3", 2,
      "argument --val-fraction: not allowed with argument --val"),
    C("train-arch", "train-cnn", "unknown --arch", "{good} --out {run} --arch nope", 2,
      "unknown architecture 'nope'"),
    C("train-input-size-large", "train-cnn", "--input-size larger than the images",
      "{good} --out {run} --input-size 128", 2,
      "input size 128 is larger than the 64x64 images"),
    C("train-input-size-divisor", "train-cnn", "--input-size not dividing the images",
      "{good} --out {run} --input-size 20", 2,
      "input size 20 cannot be max-pooled from 64x64 images"),
    C("train-seed-negative", "train-cnn", "--seed -1", "{good} --seed -1", 2,
      "--seed must be an integer in [0, 2**63), got -1"),
    C("train-out-is-file", "train-cnn", "--out is an existing file", "{good} --out {old}", 2,
      "output {old} exists and is not a directory"),
    C("train-out-not-empty", "train-cnn", "--out is a non-empty directory",
      "{good} --out {outdir}", 2, "run directory {outdir} exists and is not empty"),
    C("train-resume-not-run", "train-cnn", "--resume on a directory that is no run",
      "{good} --resume --out {not_run}", 2,
      "{not_run} is not a train-cnn run directory (no config.json)"),
    C("train-resume-corrupt", "train-cnn", "--resume with a corrupt config.json",
      "{good} --resume --out {bad_run}", 1, "cannot read the run configuration"),
    C("train-readonly", "train-cnn", "read-only output directory",
      "{good} --out {run} --input-size 16", 1, ": '{run}'", "readonly"),
    # -- eval-cnn
    C("eval-missing-model", "eval-cnn", "missing model file", "{no_model} {good}", 2,
      "model file '{no_model}' does not exist"),
    C("eval-missing", "eval-cnn", "missing event file", "{model} {missing}", 2,
      "event file '{missing}' does not exist"),
    C("eval-empty", "eval-cnn", "empty (0-byte) file", "{model} {empty}", 1,
      "{empty}: an empty file, expected a spectrocnn event file"),
    C("eval-text", "eval-cnn", "text file, not HDF5", "{model} {text}", 1,
      "{text}: not an HDF5 file"),
    C("eval-schema", "eval-cnn", "another schema version", "{model} {schema2}", 1,
      "{schema2}: schema is 'spectrocnn.events/2'"),
    C("eval-truncated", "eval-cnn", "truncated file", "{model} {truncated}", 1,
      "{truncated}: cannot open the HDF5 file, it is truncated or corrupt"),
    C("eval-corrupt-chunk", "eval-cnn", "corrupted gzip chunk of image 3",
      "{seed16} {corrupt} --out {outdir}/eval", 1, "{corrupt}: image 3 is corrupt"),
    C("eval-zero-events", "eval-cnn", "file with zero events", "{model} {zero}", 2,
      "event file {zero} holds no events"),
    C("eval-threads-0", "eval-cnn", "--threads 0", "{model} {good} --threads 0", 2,
      "--threads must be a positive integer, got 0"),
    C("eval-out-is-file", "eval-cnn", "--out is an existing file",
      "{model} {good} --out {old}", 2, "output {old} exists and is not a directory"),
    C("eval-explain-negative", "eval-cnn", "--explain -1", "{model} {good} --explain -1", 2,
      "--explain must be an integer >= 0, got -1"),
    C("eval-explain-text", "eval-cnn", "--explain not a number",
      "{model} {good} --explain all", 2, "--explain must be an integer >= 0, got 'all'"),
    C("eval-explain-fraction", "eval-cnn", "--explain not an integer",
      "{seed16} {good} --explain 2.5 --out {outdir}/eval", 2,
      "--explain must be an integer >= 0, got '2.5'"),
    # -- show-event
    C("show-missing", "show-event", "missing input file", "{missing} --out {png}", 2,
      "event file '{missing}' does not exist"),
    C("show-foreign", "show-event", "HDF5 file of another kind", "{foreign} --out {png}", 1,
      "{foreign}: not a spectrocnn event file"),
    C("show-truncated", "show-event", "truncated file", "{truncated} --out {png}", 1,
      "{truncated}: cannot open the HDF5 file, it is truncated or corrupt"),
    C("show-corrupt-chunk", "show-event", "corrupted gzip chunk of image 3",
      "{corrupt} --index 3 --out {png}", 1,
      "{corrupt}: cannot read images 3:4"),
    C("show-zero-events", "show-event", "file with zero events", "{zero} --out {png}", 2,
      "event file {zero} holds no events"),
    C("show-index-range", "show-event", "--index out of range", "{good} --index 16", 2,
      "--index 16 with --grid 1 needs events up to 16, but {good} holds 16 (0 to 15)"),
    C("show-index-negative", "show-event", "--index -1", "{good} --index -1", 2,
      "--index must be an integer >= 0, got -1"),
    C("show-grid-0", "show-event", "--grid 0", "{good} --grid 0", 2,
      "--grid must be a positive integer, got 0"),
    C("show-grid-range", "show-event", "--grid reaching past the last event",
      "{good} --index 10 --grid 8", 2, "--index 10 with --grid 8 needs events up to 17"),
    C("show-out-no-dir", "show-event", "--out in a missing directory",
      "{good} --out {outdir}/missing/x.png", 2,
      "--out directory '{outdir}/missing' does not exist"),
    C("show-readonly", "show-event", "read-only output directory", "{good} --out {png}", 1,
      "cannot write '{png}'", "readonly"),
    C("show-full-disk", "show-event", "full disk (tmpfs)", "{good} --out {png}", 1,
      "cannot write '{png}': No space left on device", "full"),
    C("show-enospc", "show-event", "writes fail with ENOSPC", "{good} --out {png}", 1,
      "cannot write '{png}': No space left on device", "enospc"),
    # -- fit-tracks
    C("fit-missing", "fit-tracks", "missing input file", "{missing}", 2,
      "event file '{missing}' does not exist"),
    C("fit-text", "fit-tracks", "text file, not HDF5", "{text}", 1,
      "{text}: not an HDF5 file"),
    C("fit-schema", "fit-tracks", "another schema version", "{schema2}", 1,
      "{schema2}: schema is 'spectrocnn.events/2'"),
    C("fit-truncated", "fit-tracks", "truncated file", "{truncated}", 1,
      "{truncated}: cannot open the HDF5 file, it is truncated or corrupt"),
    C("fit-corrupt-chunk", "fit-tracks", "corrupted gzip chunk of /hits/layer", "{corrupt}", 1,
      "{corrupt}: cannot read hits/layer"),
    C("fit-zero-events", "fit-tracks", "file with zero events", "{zero}", 2,
      "event file {zero} holds no events"),
    C("fit-no-truth-planes", "fit-tracks", "--no-truth on a telescope of planes",
      "{telescope} --no-truth", 2, "fit-tracks --no-truth finds tracks in a barrel of cylinders"),
    C("fit-unknown-flag", "fit-tracks", "unknown flag", "{good} --bogus", 2,
      "unrecognized arguments: --bogus"),
    C("fit-nan-hits", "fit-tracks", "NaN/inf in /hits/x (the fit goes on)", "{nan_hits}", 0,
      "4 hits with a NaN or infinite x or y in {nan_hits} were left out"),
]  # fmt: skip
del C

#: Placeholders of ``args`` and ``message`` -> what docs/errors.md shows.
DOC_NAMES = {
    "good": "events.h5",
    "telescope": "telescope.h5",
    "missing": "missing.h5",
    "empty": "empty.h5",
    "text": "text.h5",
    "foreign": "foreign.h5",
    "schema2": "schema2.h5",
    "truncated": "truncated.h5",
    "corrupt": "corrupt.h5",
    "zero": "zero.h5",
    "nan_hits": "nan_hits.h5",
    "model": "model.keras",
    "seed16": "seed16.keras",
    "no_model": "missing.keras",
    "not_run": "not_a_run",
    "bad_run": "bad_run",
    "no_config": "missing.toml",
    "no_map": "missing.npz",
    "map_nan": "nan.npz",
    "map_shape": "shape.npz",
    "map_text": "text.npz",
    "outdir": "OUT",
    "out": "OUT/new.h5",
    "old": "OUT/old.h5",
    "run": "OUT/run",
    "png": "OUT/new.png",
}

#: Configuration files of the test world: name -> TOML text.
CONFIGS = {
    "cfg_syntax": "n_particles = [1, 2\n",
    "cfg_unknown": "n_particles = 10\nbogus_key = 1\n",
    "cfg_unknown_gun": "[gun]\np_GeV = [1.0, 2.0]\n",
    "cfg_type": 'n_particles = "ten"\n',
    "cfg_p_reversed": "[gun]\np_low_GeV = [0.5, 0.1]\n",
    "cfg_p_negative": "[gun]\np_high_GeV = [-1.0, 5.0]\n",
    "cfg_resolution": "[detector]\nresolution_um = -5.0\n",
    "cfg_efficiency": "[detector]\nefficiency = 1.5\n",
    "cfg_no_layers": "[detector]\nlayers = []\n",
    "cfg_duplicate": "[[detector.layers]]\nradius_mm = 50.0\n" * 2,
    "cfg_radius": '[[detector.layers]]\nkind = "cylinder"\nradius_mm = -50.0\n',
    "cfg_field_nan": "[field]\nB_T = [0.0, 0.0, nan]\n",
    "cfg_window": "[image]\nwindow_mm = [210.0, -210.0, -210.0, 210.0]\n",
    "cfg_map_nan": '[field]\nmap = "nan.npz"\n',
    "cfg_map_shape": '[field]\nmap = "shape.npz"\n',
    "cfg_map_missing": '[field]\nmap = "missing.npz"\n',
    "cfg_map_text": '[field]\nmap = "text.npz"\n',
}
DOC_NAMES.update({k: f"{k[4:]}.toml" for k in CONFIGS})

#: Rows also run in a real process: the real stderr, no traceback, no TensorFlow.
PROCESS_ROWS = {"gen-config-p-reversed", "train-input-size-large", "eval-text", "fit-nan-hits"}


# -- the table in docs/errors.md ------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
BEGIN, END = "<!-- cases:begin -->", "<!-- cases:end -->"


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def render_table() -> str:
    """The Markdown table of :data:`CASES` (what docs/errors.md shows between the markers)."""
    lines = [
        "| id | command line | bad input | exit | stderr (one line) contains |",
        "|---|---|---|---|---|",
    ]
    for c in CASES:
        level = "WARNING" if c.code == 0 else "error"
        args = c.args.format(**DOC_NAMES)
        msg = f"{c.command}: {level}: ... " + c.message.format(**DOC_NAMES)
        cells = [c.id, _cell(f"{c.command} {args}"), c.bad, str(c.code), _cell(msg)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def test_docs_table_is_current():
    text = DOCS.read_text()
    assert BEGIN in text and END in text, f"{DOCS} lacks the {BEGIN} ... {END} markers"
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert shown == render_table(), (
        f"{DOCS} does not show the current table: run `python tests/test_errors.py`"
    )


def test_cases_are_many_distinct_and_cover_every_command():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) >= 30
    assert {c.command for c in CASES} == set(MAINS)
    assert {c.env for c in CASES} == {"", "readonly", "full", "small", "enospc"}
    names = set(DOC_NAMES)
    for c in CASES:
        for text in (c.args, c.message):
            text.format(**{k: "" for k in names})  # every placeholder is known


# -- the test world -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """The input files of the table, in one directory: placeholder -> path."""
    from spectrocnn.config import preset_config
    from spectrocnn.dataset import ImageSpec, generate_file, open_events, write_events
    from spectrocnn.dataset.eventfile import slice_batch

    d = tmp_path_factory.mktemp("world")
    p = {k: str(d / v) for k, v in DOC_NAMES.items() if not v.startswith("OUT")}
    generate_file(preset_config("lecture").with_image_size(64), 16, p["good"], seed=1, workers=1)
    generate_file(
        preset_config("telescope").with_image_size(32), 4, p["telescope"], seed=1, workers=1
    )
    Path(p["empty"]).write_bytes(b"")
    Path(p["text"]).write_text("event,x,y\n1,2.0,3.0\n" * 50)
    with h5py.File(p["foreign"], "w") as f:
        f["data"] = np.arange(10)
    shutil.copy(p["good"], p["schema2"])
    with h5py.File(p["schema2"], "a") as f:
        f.attrs["schema"] = "spectrocnn.events/2"
    data = Path(p["good"]).read_bytes()
    Path(p["truncated"]).write_bytes(data[: len(data) // 2])
    shutil.copy(p["good"], p["corrupt"])
    with h5py.File(p["corrupt"], "r") as f:  # garbage into two gzip chunks, on disk
        chunks = [f["images"].id.get_chunk_info(3), f["hits/layer"].id.get_chunk_info(0)]
    with open(p["corrupt"], "r+b") as fh:
        for info in chunks:
            fh.seek(info.byte_offset + 2)  # keep the zlib header: the deflate data is bad
            fh.write(b"\xff" * (info.size - 2))
    with open_events(p["good"]) as ev:
        batch, config = ev.truth(0, 1), ev.config
    write_events(p["zero"], slice_batch(batch, 0, 0), ImageSpec(size=64), config=config)
    shutil.copy(p["good"], p["nan_hits"])
    with h5py.File(p["nan_hits"], "a") as f:
        x = f["hits/x"][:]
        x[[0, 1, 20, 300]] = [np.nan, np.inf, -np.inf, np.nan]
        f["hits/x"][:] = x
        px = f["particles/px"][:]
        px[[0, 5]] = [np.nan, np.inf]
        f["particles/px"][:] = px
    Path(p["model"]).write_bytes(b"not a model")
    from spectrocnn.model.architectures import build_model

    build_model("seed", 16).save(p["seed16"])  # untrained, 16x16 input
    os.mkdir(p["not_run"])
    os.mkdir(p["bad_run"])
    Path(p["bad_run"], "config.json").write_text("{not json")
    for name, text in CONFIGS.items():
        Path(p[name]).write_text(text)
    grid = np.linspace(-300.0, 300.0, 4)
    field = np.zeros((4, 4, 4, 3))
    field[..., 2] = 2.0
    field_nan = field.copy()
    field_nan[1, 2, 3, 2] = np.nan
    np.savez(p["map_nan"], x_mm=grid, y_mm=grid, z_mm=grid, B_T=field_nan)
    np.savez(p["map_shape"], x_mm=grid, y_mm=grid, z_mm=grid, B_T=field[:, :, :3])
    Path(p["map_text"]).write_text("not a field map\n")
    return p


def _snapshot(directory: str | Path) -> dict[str, tuple[int, int, str]]:
    """Every file below ``directory`` (hidden ones too): path -> (size, mtime, sha256)."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.stat(path)
            digest = ""
            if os.path.isfile(path):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            out[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns, digest)
    return out


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def output_dir(tmp_path, request):
    """A function making the output directory (holding old.h5) in the condition asked for."""
    mounted: list[Path] = []
    chmodded: list[Path] = []

    def make(env: str) -> Path:
        out = tmp_path / "OUT"
        out.mkdir()
        if env in ("", "enospc"):
            (out / "old.h5").write_bytes(b"an existing file that must survive\n")
        elif env in ("full", "small"):
            if not _mount_tmpfs(out, "256k" if env == "full" else "12m"):
                pytest.skip("a full disk needs permission to mount a small tmpfs (root); the "
                            "enospc rows cover the same code in-process")  # fmt: skip
            mounted.append(out)
            (out / "old.h5").write_bytes(b"an existing file that must survive\n")
            if env == "full":
                st = os.statvfs(out)
                free = st.f_bavail * st.f_frsize
                (out / "filler").write_bytes(b"\0" * max(0, free - 4096))  # 4 KiB left
        elif env == "readonly":
            if os.geteuid() != 0:
                (out / "old.h5").write_bytes(b"an existing file that must survive\n")
                out.chmod(0o555)
                chmodded.append(out)
            elif _mount_tmpfs(out, "1m"):
                mounted.append(out)
                (out / "old.h5").write_bytes(b"an existing file that must survive\n")
                cmd = ["mount", "-o", "remount,ro", str(out)]
                if subprocess.run(cmd, capture_output=True).returncode:
                    pytest.skip("cannot remount the tmpfs read-only")
            else:
                pytest.skip("as root, a read-only directory needs permission to mount a tmpfs")
        else:  # pragma: no cover
            raise ValueError(env)
        return out

    yield make
    for path in chmodded:
        path.chmod(0o755)
    for path in mounted:
        _umount(path)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _names(world: dict[str, str], out: Path) -> dict[str, str]:
    return {
        **world,
        "outdir": str(out),
        "out": str(out / "new.h5"),
        "old": str(out / "old.h5"),
        "run": str(out / "run"),
        "png": str(out / "new.png"),
    }


def _check_line(case: Case, err: str, names: dict[str, str]) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    level = "WARNING" if case.code == 0 else "error"
    assert lines[0].startswith(f"{case.command}: {level}: "), err
    assert case.message.format(**names) in lines[0], err


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer:UserWarning")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, output_dir, capsys, monkeypatch):
    out = output_dir(case.env)
    names = _names(world, out)
    argv = [a.format(**names) for a in shlex.split(case.args)]
    monkeypatch.chdir(out)  # default outputs would land here
    if case.env == "enospc":
        import matplotlib.figure

        from spectrocnn.dataset import EventFileWriter

        monkeypatch.setattr(EventFileWriter, "_write_encoded", _no_space)
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _no_space)
    before_out, before_in = _snapshot(out), _snapshot(os.path.dirname(world["good"]))
    # in a process of its own: a crash (HDF5 on a full disk) must not take pytest along
    if case.id in PROCESS_ROWS or case.code == 0 or case.env in ("full", "small"):
        proc = _run_process(case.command, argv)
        assert proc.returncode == case.code, proc.stderr
        err = proc.stderr
    else:
        assert MAINS[case.command].main(argv) == case.code, capsys.readouterr().err
        err = capsys.readouterr().err
    _check_line(case, err, names)
    assert _snapshot(out) == before_out
    assert _snapshot(os.path.dirname(world["good"])) == before_in


def _run_process(command: str, argv: list[str]) -> subprocess.CompletedProcess:
    module = MAINS[command].__name__
    code = (
        f"import sys\nfrom {module} import main\nrc = main()\n"
        "sys.exit(99 if 'tensorflow' in sys.modules else rc)\n"  # 99: TensorFlow imported
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )


def test_debug_shows_the_traceback(world, tmp_path):
    proc = _run_process("fit-tracks", [world["truncated"], "--debug"])
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("fit-tracks: error: ")


def test_fit_tracks_json_stays_valid_json_without_auc(tmp_path, capsys):
    """A file of one class has no ROC AUC: --json prints null, not NaN (invalid JSON)."""
    from spectrocnn.config import config_from_dict
    from spectrocnn.dataset import generate_file

    path = tmp_path / "one_class.h5"
    config = config_from_dict({"high_fraction": 0.0, "image": {"size": 32}})
    generate_file(config, 6, path, seed=1, workers=1)
    assert fit_tracks.main([str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out, parse_constant=pytest.fail)
    assert result["roc_auc"] is None and result["n_events"] == 6
    assert fit_tracks.main([str(path)]) == 0
    assert "ROC AUC n/a" in capsys.readouterr().out


if __name__ == "__main__":  # print the table of docs/errors.md
    sys.stdout.write(render_table())


def test_every_error_class_lives_in_errors_and_maps_to_its_exit_code(capsys):
    """The documented hierarchy: usage errors exit 2, unreadable files exit 1."""
    import spectrocnn
    import spectrocnn.dataset
    import spectrocnn.errors as errors
    import spectrocnn.model
    from spectrocnn.cli._common import run

    assert spectrocnn.dataset.EventFileNotFoundError is errors.EventFileNotFoundError
    assert spectrocnn.model.ModelFileError is errors.ModelFileError
    expected = {"ConfigError": 2, "EventFileNotFoundError": 2, "EventFileError": 1,
                "ModelFileError": 1, "SpectrocnnError": None}  # fmt: skip
    assert sorted(expected) == sorted(errors.__all__)
    for name, code in expected.items():
        cls = getattr(errors, name)
        assert getattr(spectrocnn, name) is cls
        assert issubclass(cls, errors.SpectrocnnError)
        if code is None:  # the base class is never raised itself
            continue

        def body(argv, cls=cls, name=name):
            raise cls(f"bad value {name}")

        assert run("prog", body, []) == code, name
        assert capsys.readouterr().err == f"prog: error: bad value {name}\n"

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
import zipfile
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
    ordinary directory); or a condition of the inputs: ``locked`` (another process holds
    ``{locked}`` open for writing) or ``unreadable`` (a row skipped for root, who reads
    files without read permission).
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
      "unrecognized arguments: --bogus (gen-events --help lists the options)"),
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
      "gun.p_low_GeV must be a range [min, max] with min <= max"),
    C("gen-config-p-negative", "gen-events", "negative momentum",
      "--n 5 --out {out} --config {cfg_p_negative}", 2,
      "gun.p_high_GeV must lie >= 0.0, got [-1.0, 5.0]"),
    C("gen-config-resolution", "gen-events", "negative resolution",
      "--n 5 --out {out} --config {cfg_resolution}", 2,
      "detector.resolution_um must be >= 0, got -5.0"),
    C("gen-config-efficiency", "gen-events", "efficiency > 1",
      "--n 5 --out {out} --config {cfg_efficiency}", 2,
      "detector.efficiency must be in [0, 1], got 1.5"),
    C("gen-config-material", "gen-events", "unknown layer material",
      "--n 5 --out {out} --config {cfg_material}", 2,
      "detector.material 'lead' is not a known material (known: silicon)"),
    C("gen-config-layer-material", "gen-events", "unknown material of one layer",
      "--n 5 --out {out} --config {cfg_layer_material}", 2,
      "detector.layers[0].material 'silicn' is not a known material (known: silicon); "
      "did you mean 'silicon'?"),
    C("gen-config-thickness-mm", "gen-events", "negative thickness_mm",
      "--n 5 --out {out} --config {cfg_thickness_mm}", 2,
      "detector.thickness_mm must be >= 0, got -0.3"),
    C("gen-config-layer-thickness-mm", "gen-events", "negative thickness_mm of one layer",
      "--n 5 --out {out} --config {cfg_layer_thickness_mm}", 2,
      "detector.layers[0].thickness_mm must be >= 0, got -0.3"),
    C("gen-config-thickness-both", "gen-events", "both thickness_mm and thickness_x0",
      "--n 5 --out {out} --config {cfg_thickness_both}", 2,
      "detector: give either thickness_mm or thickness_x0, not both (got thickness_mm = 0.3, "
      "thickness_x0 = 0.01)"),
    C("gen-config-layer-thickness-both", "gen-events",
      "both thickness_mm and thickness_x0 in one layer",
      "--n 5 --out {out} --config {cfg_layer_thickness_both}", 2,
      "detector.layers[0]: give either thickness_mm or thickness_x0, not both (got "
      "thickness_mm = 0.3, thickness_x0 = 0.01)"),
    C("gen-config-energy-loss", "gen-events", "non-boolean energy_loss",
      "--n 5 --out {out} --config {cfg_energy_loss}", 2,
      "detector.energy_loss must be true or false, got 'yes'"),
    C("gen-config-layer-energy-loss", "gen-events", "non-boolean energy_loss of one layer",
      "--n 5 --out {out} --config {cfg_layer_energy_loss}", 2,
      "detector.layers[0].energy_loss must be true or false, got 1"),
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
    C("gen-config-hit-mm-negative", "gen-events", "negative hit radius in mm",
      "--n 5 --out {out} --config {cfg_hit_mm_negative}", 2,
      "image.hit_radius_mm must be a finite number >= 0, got -1.5"),
    C("gen-config-hit-mm-large", "gen-events", "hit radius in mm of more than 64 pixels",
      "--n 5 --out {out} --config {cfg_hit_mm_large}", 2,
      "image.hit_radius_mm 500 is 320 pixels of 1.562 mm at size 512, more than 64"),
    C("gen-config-hit-both", "gen-events", "hit radius in pixels and in mm that disagree",
      "--n 5 --out {out} --config {cfg_hit_both}", 2,
      "image.hit_radius_px = 3 disagrees with image.hit_radius_mm = 3.125 (2 pixels at size "
      "512); give only one of them"),
    C("gen-config-projection", "gen-events", "unknown image projection (axes swapped)",
      "--n 5 --out {out} --config {cfg_projection}", 2,
      "image.projection must be one of 'xy', 'xz', 'yz', got 'zx'; did you mean 'xz'?"),
    C("gen-config-projection-key", "gen-events", "misspelt [image] projection key",
      "--n 5 --out {out} --config {cfg_projection_key}", 2,
      "unknown key 'image.projektion' in [image]; did you mean 'projection'?"),
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
      "field map '{map_text}' is not an .npz file (not a zip archive, or a truncated one)"),
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
    # -- gen-events: particles the gun cannot shoot (issue 14)
    C("gen-particle-gamma", "gen-events", "neutral gun particle (photon)",
      "--n 5 --out {out} --config {cfg_gamma}", 2,
      "gun.particle 'gamma' has charge 0: a neutral particle leaves no hits"),
    C("gen-particle-pi0", "gen-events", "neutral gun particle (pi0)",
      "--n 5 --out {out} --config {cfg_pi0}", 2, "gun.particle 'pi0' has charge 0"),
    C("gen-particle-n", "gen-events", "neutral gun particle (neutron)",
      "--n 5 --out {out} --config {cfg_neutron}", 2, "gun.particle 'n' has charge 0"),
    C("gen-particle-KL", "gen-events", "neutral gun particle (K(L)0)",
      "--n 5 --out {out} --config {cfg_kl0}", 2, "gun.particle 'K(L)0' has charge 0"),
    C("gen-particle-quark", "gen-events", "a quark (fractional charge, confined)",
      "--n 5 --out {out} --config {cfg_quark}", 2,
      "gun.particle 'u' has charge 2/3: a quark carries colour and is never a free particle"),
    C("gen-particle-gluon", "gen-events", "a gluon",
      "--n 5 --out {out} --config {cfg_gluon}", 2,
      "gun.particle 'g' has charge 0: a gluon carries colour and is never a free particle"),
    C("gen-no-args", "gen-events", "no arguments at all", "", 2,
      "the following arguments are required: --n, --out (usage: gen-events --n N --out "
      "FILE.h5 [options]; gen-events --help lists every option)"),
    C("gen-config-binary", "gen-events", "config file is binary, not text",
      "--n 5 --out {out} --config {cfg_binary}", 2,
      "config file '{cfg_binary}' is not a TOML text file (not UTF-8"),
    C("gen-config-dir", "gen-events", "config file is a directory",
      "--n 5 --out {out} --config {outdir}", 2, "config file '{outdir}' is a directory"),
    C("gen-config-unreadable", "gen-events", "config file without read permission (not root)",
      "--n 5 --out {out} --config {cfg_unreadable}", 2,
      "config file '{cfg_unreadable}' cannot be read: no read permission", "unreadable"),
    C("gen-fieldmap-empty", "gen-events", "field map is an empty file",
      "--n 5 --out {out} --config {cfg_map_empty}", 2,
      "field map '{map_empty}' is an empty file, expected an .npz archive"),
    C("gen-fieldmap-truncated", "gen-events", "field map cut short",
      "--n 5 --out {out} --config {cfg_map_truncated}", 2,
      "field map '{map_truncated}' is not an .npz file (not a zip archive, or a truncated one)"),
    C("gen-fieldmap-corrupt", "gen-events", "field map .npz with a garbage array",
      "--n 5 --out {out} --config {cfg_map_corrupt}", 2,
      "field map '{map_corrupt}' is a corrupt .npz file"),
    C("gen-fieldmap-dir", "gen-events", "field map is a directory",
      "--n 5 --out {out} --config {cfg_map_dir}", 2,
      "field map '{map_dir}' cannot be read: it is a directory"),
    C("gen-fieldmap-unreadable", "gen-events", "field map without read permission (not root)",
      "--n 5 --out {out} --config {cfg_map_unreadable}", 2,
      "field map '{map_unreadable}' cannot be read: no read permission", "unreadable"),
    # -- gen-events: multiplicity, several guns, kinematics, labels (issue 19)
    C("gen-mult-distribution", "gen-events", "unknown multiplicity distribution",
      "--n 5 --out {out} --config {cfg_mult_dist}", 2,
      "n_particles.distribution must be 'poisson' or 'uniform', got 'gauss'"),
    C("gen-mult-poisson-mean", "gen-events", "Poisson mean 0",
      "--n 5 --out {out} --config {cfg_mult_mean}", 2,
      "n_particles.mean must be a number in (0, 100000] (the Poisson mean), got 0"),
    C("gen-mult-uniform-range", "gen-events", "uniform multiplicity from 0",
      "--n 5 --out {out} --config {cfg_mult_range}", 2,
      "n_particles.range must be 2 integers [a, b] with 1 <= a <= b <= 100000 "
      "(both included), got [0, 5]"),
    C("gen-mult-uniform-float", "gen-events", "uniform multiplicity range of floats",
      "--n 5 --out {out} --config {cfg_mult_float}", 2,
      "n_particles.range must be 2 integers [a, b] with 1 <= a <= b <= 100000 "
      "(both included), got [5.5, 15]"),
    C("gen-mult-key", "gen-events", "range given to a Poisson multiplicity",
      "--n 5 --out {out} --config {cfg_mult_key}", 2,
      "unknown key 'n_particles.range' for a poisson multiplicity (keys: distribution, mean)"),
    C("gen-gun-momentum", "gen-events", "unknown gun.momentum",
      "--n 5 --out {out} --config {cfg_gun_momentum}", 2,
      "gun.momentum must be one of 'p', 'pt', got 'pT'"),
    C("gen-gun-eta-reversed", "gen-events", "gun.eta reversed",
      "--n 5 --out {out} --config {cfg_gun_eta}", 2,
      "gun.eta must be a range [min, max] with min <= max (min == max: a fixed value), "
      "got [2.0, 1.0]"),
    C("gen-gun-eta-and-dip", "gen-events", "gun.eta and gun.dip_deg both",
      "--n 5 --out {out} --config {cfg_gun_eta_dip}", 2,
      "gun: give either dip_deg or eta, not both, got dip_deg=[0.0, 0.0] eta=[-1.0, 1.0]"),
    C("gen-gun-charge-sign", "gen-events", "unknown gun.charge_sign",
      "--n 5 --out {out} --config {cfg_gun_sign}", 2,
      "gun.charge_sign must be one of 'random', '+', '-', got 'plus'"),
    C("gen-gun-pt-dip-90", "gen-events", "p_T momentum with a 90 degree dip",
      "--n 5 --out {out} --config {cfg_gun_pt_dip}", 2,
      "gun.dip_deg must lie within (-90, 90) when the momentum is given as p_T"),
    C("gen-label-threshold", "gen-events", "negative label threshold",
      "--n 5 --out {out} --config {cfg_label_threshold}", 2,
      "label.threshold_GeV must be a finite number > 0, got -1.0"),
    C("gen-label-variable", "gen-events", "unknown label variable",
      "--n 5 --out {out} --config {cfg_label_variable}", 2,
      "label.variable must be one of 'p', 'pt', got 'E'"),
    C("gen-label-unknown-key", "gen-events", "misspelt key in [label]",
      "--n 5 --out {out} --config {cfg_label_key}", 2,
      "unknown key 'label.treshold_GeV' in [label]; did you mean 'threshold_GeV'?"),
    C("gen-guns-no-label", "gen-events", "[[guns]] without [label]",
      "--n 5 --out {out} --config {cfg_guns_no_label}", 2,
      "[[guns]] need a [label] table (threshold_GeV, variable)"),
    C("gen-guns-and-gun", "gen-events", "[[guns]] and [gun] both",
      "--n 5 --out {out} --config {cfg_guns_and_gun}", 2,
      "give either [gun] or [[guns]], not both"),
    C("gen-guns-high-fraction", "gen-events", "high_fraction with [[guns]]",
      "--n 5 --out {out} --config {cfg_guns_high}", 2,
      "high_fraction is the recipe of the single [gun]; with [[guns]] the label comes from "
      "[label], got high_fraction=0.3"),
    C("gen-guns-empty", "gen-events", "guns = [] (no gun)",
      "--n 5 --out {out} --config {cfg_guns_empty}", 2,
      "guns must be a non-empty array of tables ([[guns]]), got []"),
    C("gen-guns-particle", "gen-events", "neutral particle in [[guns]]",
      "--n 5 --out {out} --config {cfg_guns_pi0}", 2,
      "guns[0].particle 'pi0' has charge 0: a neutral particle leaves no hits"),
    C("gen-guns-charge-sign", "gen-events", "unknown guns[].charge_sign",
      "--n 5 --out {out} --config {cfg_guns_sign}", 2,
      "guns[0].charge_sign must be one of 'random', '+', '-', got 'both'"),
    C("gen-guns-fraction", "gen-events", "guns[].fraction > 1",
      "--n 5 --out {out} --config {cfg_guns_fraction}", 2,
      "guns[0].fraction must be a number in (0, 1], got 1.5"),
    C("gen-guns-fraction-sum", "gen-events", "fractions not summing to 1",
      "--n 5 --out {out} --config {cfg_guns_sum}", 2,
      "guns: the fractions must sum to 1, got [0.5, 0.3] (sum 0.8)"),
    C("gen-guns-fraction-and-count", "gen-events", "fraction and count in one gun",
      "--n 5 --out {out} --config {cfg_guns_both}", 2,
      "guns[0]: give exactly one of fraction and count, got fraction=1.0 count=2"),
    C("gen-guns-mixed", "gen-events", "one gun with a fraction, one with a count",
      "--n 5 --out {out} --config {cfg_guns_mixed}", 2,
      "guns: give every gun a fraction or every gun a count, got ['fraction', 'count']"),
    C("gen-guns-count", "gen-events", "guns[].count = 0",
      "--n 5 --out {out} --config {cfg_guns_count}", 2,
      "guns[0].count must be an integer in [1, 100000], got 0"),
    C("gen-guns-count-n-particles", "gen-events", "n_particles with counted guns",
      "--n 5 --out {out} --config {cfg_guns_count_n}", 2,
      "n_particles is not used when the guns give counts (each event holds the sum of "
      "the counts), got n_particles=5"),
    C("gen-guns-p-and-pt", "gen-events", "p_GeV and pt_GeV both",
      "--n 5 --out {out} --config {cfg_guns_p_pt}", 2,
      "guns[0]: give exactly one of p_GeV and pt_GeV, got p_GeV=[1.0, 2.0] pt_GeV=[0.5, 2.0]"),
    C("gen-guns-no-momentum", "gen-events", "neither p_GeV nor pt_GeV",
      "--n 5 --out {out} --config {cfg_guns_no_p}", 2,
      "guns[0]: give exactly one of p_GeV and pt_GeV, got p_GeV=None pt_GeV=None"),
    C("gen-guns-pt-zero", "gen-events", "p_T range from 0",
      "--n 5 --out {out} --config {cfg_guns_pt_zero}", 2,
      "guns[0].pt_GeV must be positive, got [0.0, 2.0]"),
    C("gen-guns-eta-and-dip", "gen-events", "eta and dip_deg both in a gun",
      "--n 5 --out {out} --config {cfg_guns_eta_dip}", 2,
      "guns[0]: give either dip_deg or eta, not both, got dip_deg=[0.0, 0.0] eta=[-1.0, 1.0]"),
    C("gen-guns-eta-text", "gen-events", "eta range with text",
      "--n 5 --out {out} --config {cfg_guns_eta_text}", 2,
      "guns[0].eta must be a list of 2 numbers [min, max], got [-1.0, 'x']"),
    C("gen-guns-unknown-key", "gen-events", "misspelt key in [[guns]]",
      "--n 5 --out {out} --config {cfg_guns_key}", 2,
      "unknown key 'guns[0].etta' in [[guns]]; did you mean 'eta'?"),
    C("gen-guns-eta-huge", "gen-events", "eta beyond 15",
      "--n 5 --out {out} --config {cfg_guns_eta_huge}", 2,
      "guns[0].eta must lie within [-15.0, 15.0], got [0.0, 1000.0]"),
    # -- train-cnn
    C("train-missing", "train-cnn", "missing input file", "{missing} --out {run}", 2,
      "event file '{missing}' does not exist"),
    C("train-empty", "train-cnn", "empty (0-byte) file", "{empty} --out {run}", 1,
      "{empty}: an empty file, expected a spectrocnn event file"),
    C("train-text", "train-cnn", "text file, not HDF5", "{text} --out {run}", 1,
      "{text}: not an HDF5 file, expected a spectrocnn event file"),
    C("train-foreign", "train-cnn", "HDF5 file of another kind", "{foreign} --out {run}", 1,
      "{foreign}: not a spectrocnn event file (no 'schema' attribute"),
    C("train-schema", "train-cnn", "another schema version", "{schema3} --out {run}", 1,
      "{schema3}: schema is 'spectrocnn.events/3', expected 'spectrocnn.events/2'"),
    C("train-truncated", "train-cnn", "truncated file", "{truncated} --out {run}", 1,
      "{truncated}: cannot open the HDF5 file: it is truncated"),
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
      "input size 128 is larger than the 64x64 images of {good} (downsampling only); set "
      "--input-size to 64 or less"),
    C("train-input-size-divisor", "train-cnn", "--input-size not dividing the images",
      "{good} --out {run} --input-size 20", 2,
      "input size 20 cannot be max-pooled from 64x64 images of {good}: set --input-size to a "
      "divisor of 64 (e.g. 64, 32, 16, 8), or use --downsample nearest"),
    C("train-patience-negative", "train-cnn", "--patience -1", "{good} --patience -1", 2,
      "--patience must be a non-negative integer, got -1"),
    C("train-patience-text", "train-cnn", "--patience not a number", "{good} --patience x", 2,
      "--patience must be a non-negative integer, got 'x'"),
    C("train-precision", "train-cnn", "unknown --precision", "{good} --precision fp16", 2,
      "argument --precision: invalid choice: 'fp16'"),
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
      "{good} --resume --out {bad_run}", 1, "the run configuration is not valid JSON"),
    C("train-resume-fewer-epochs", "train-cnn", "--resume with fewer --epochs than completed",
      "{good} --out {done_run} --resume --epochs 2", 2,
      "--epochs 2 is fewer than the 3 epochs run {done_run} has completed; resume with "
      "--epochs 3 or more (or without --epochs)"),
    C("train-readonly", "train-cnn", "read-only output directory",
      "{good} --out {run} --input-size 16", 1, ": '{run}'", "readonly"),
    C("train-foreign-shard", "train-cnn", "sharded file with a shard of another run (seed 2)",
      "{foreign_shard} --out {run} --input-size 8", 1,
      "{foreign_shard}: shard shard-00001-of-00003.h5 belongs to another run (seed 2, expected 1)"),
    C("train-resume-other-file", "train-cnn", "--resume on a file regenerated with another seed",
      "{good} --resume --out {other_run}", 2,
      "--resume: {good} is not the file this run was trained on (seed 1, was 2); start a new "
      "run with another --out"),
    C("train-no-args", "train-cnn", "no arguments at all", "", 2,
      "the following arguments are required: FILE.h5, or --generate (usage: train-cnn FILE.h5 "
      "[options], or train-cnn --generate [CONFIG.toml] [options]; train-cnn --help lists "
      "every option)"),
    C("train-generate-and-file", "train-cnn", "an event file and --generate together",
      "{good} --generate --out {run}", 2,
      "an event file ({good}) and --generate together: train on the file, or on fresh events "
      "with --generate, not both"),
    C("train-events-per-epoch-alone", "train-cnn", "--events-per-epoch without --generate",
      "{good} --events-per-epoch 100 --out {run}", 2,
      "--events-per-epoch without --generate: it sets the simulated events of --generate"),
    C("train-val-events-alone", "train-cnn", "--val-events without --generate",
      "{good} --val-events 100 --out {run}", 2,
      "--val-events without --generate: it sets the simulated events of --generate"),
    C("train-preset-alone", "train-cnn", "--preset without --generate",
      "{good} --preset telescope --out {run}", 2,
      "--preset without --generate: an event file has its own configuration"),
    C("train-generate-val", "train-cnn", "--generate with a --val file",
      "--generate --val {good} --out {run}", 2,
      "--val with --generate: the validation events are simulated (--val-events M)"),
    C("train-generate-cache-mb", "train-cnn", "--generate with --cache-mb",
      "--generate --cache-mb 100 --out {run}", 2,
      "--cache-mb with --generate: fresh events are simulated into memory every epoch "
      "(--events-per-epoch N sets how many)"),
    C("train-generate-lit-cache", "train-cnn", "--generate with --lit-cache",
      "--generate --lit-cache {outdir}/lit --out {run}", 2,
      "--lit-cache with --generate: fresh events are simulated into memory"),
    C("train-generate-missing-config", "train-cnn", "--generate with a missing config file",
      "--generate {missing} --out {run}", 2, "config file '{missing}' does not exist"),
    C("train-generate-events-0", "train-cnn", "--generate --events-per-epoch 0",
      "--generate --events-per-epoch 0 --out {run}", 2,
      "--events-per-epoch must be a positive integer, got 0"),
    C("train-generate-input-size", "train-cnn", "--generate, --input-size above the image size",
      "--generate --input-size 1024 --arch lecture --out {run}", 2,
      "input size 1024 is larger than the 512x512 images of the events simulated from the "
      "lecture configuration (--generate) (downsampling only); set --input-size to 512 or less"),
    C("train-polar-xz", "train-cnn", "--arch polar on images of the x-z plane",
      "{xz} --arch polar --out {run}", 2,
      '--arch polar on {xz}: the images show the x-z plane ([image] projection = "xz"), where '
      "the beam line is the line x = 0, not a point: polar images need x-y images; use --arch "
      "lecture or --arch auto"),
    C("train-generate-polar-yz", "train-cnn", "--generate --arch polar, [image] projection yz",
      "--generate {cfg_yz} --arch polar --out {run}", 2,
      "--arch polar on the events simulated from the lecture configuration (--generate): the "
      'images show the y-z plane ([image] projection = "yz"), where the beam line is the line '
      "y = 0, not a point"),
    C("train-locked", "train-cnn", "event file held open for writing by another process",
      "{locked} --out {run}", 1,
      "{locked}: cannot open the HDF5 file: it is locked, probably being written by another "
      "process: wait until that process has finished (if nothing writes it, "
      "HDF5_USE_FILE_LOCKING=FALSE skips the lock)", "locked"),
    C("train-left-open", "train-cnn", "event file whose writer stopped without closing it",
      "{left_open} --out {run}", 1,
      "{left_open}: cannot open the HDF5 file: it was left open for writing (another process "
      "is writing it, or its writer stopped without closing it: then `h5clear -s FILE` "
      "clears the flag)"),
    C("train-unreadable", "train-cnn", "event file without read permission (not root)",
      "{unreadable} --out {run}", 1,
      "{unreadable}: cannot read the event file: no read permission", "unreadable"),
    C("train-dir", "train-cnn", "event file is a directory", "{not_run} --out {run}", 1,
      "event file '{not_run}' is a directory"),
    C("train-corrupt-superblock", "train-cnn", "HDF5 signature, garbage after it",
      "{garbled} --out {run}", 1, "{garbled}: cannot open the HDF5 file: it is corrupt"),
    C("train-val-input-size", "train-cnn", "--input-size larger than the --val file's images",
      "{good} --val {telescope} --input-size 64 --out {run}", 2,
      "input size 64 is larger than the 32x32 images of {telescope} (downsampling only); set "
      "--input-size to 32 or less"),
    C("train-cache-mb-0", "train-cnn", "--cache-mb 0", "{good} --cache-mb 0", 2,
      "--cache-mb must be a positive number of MB, got 0"),
    C("train-cache-mb-text", "train-cnn", "--cache-mb not a number", "{good} --cache-mb lots",
      2, "--cache-mb must be a positive number of MB, got 'lots'"),
    C("train-cache-mb-inf", "train-cnn", "--cache-mb inf", "{good} --cache-mb inf", 2,
      "--cache-mb must be a positive number of MB, got inf"),
    C("train-resume-cache-mb", "train-cnn", "--resume with another --cache-mb than the run's",
      "{good} --out {done_run} --resume --cache-mb 7", 2,
      "cannot resume {done_run} with different settings: cache_mb 7 (run: 512)"),
    C("train-corrupt-chunk-streamed", "train-cnn",
      "corrupted gzip chunk of image 3, found while streaming (--cache-mb below the images)",
      "{corrupt} --out {run} --input-size 16 --cache-mb 0.001", 1,
      "{corrupt}: image 3 is corrupt"),
    # -- eval-cnn
    C("train-monitor-auc-regression", "train-cnn", "--monitor val_auc on a regression target",
      "{regression} --out {run} --monitor val_auc", 2,
      "--monitor val_auc (ROC AUC) needs binary labels; {regression} has regression labels"),
    C("train-class-weight-regression", "train-cnn",
      "--class-weight balanced on a regression target",
      "{regression} --out {run} --class-weight balanced", 2,
      "--class-weight balanced needs binary or multiclass labels; {regression} has "
      "regression labels"),
    C("train-monitor-unknown", "train-cnn", "unknown --monitor", "{good} --monitor val_auroc",
      2, "invalid choice: 'val_auroc'"),
    C("train-class-weight-unknown", "train-cnn", "unknown --class-weight",
      "{good} --class-weight auto", 2, "invalid choice: 'auto'"),
    C("train-val-other-labels", "train-cnn", "--val file of other labels than the training file",
      "{good} --val {multiclass} --out {run}", 2,
      "--val {multiclass} has multiclass (3 classes: e, mu, pi) labels, the training file "
      "{good} binary labels: validate on a file with the same labels"),
    C("train-label-kind", "train-cnn", "/labels with an unknown label_kind attribute",
      "{bad_label_kind} --out {run}", 1,
      "{bad_label_kind}: /labels attributes: label kind must be one of binary, multiclass, "
      "regression, got 'ordinal'"),
    C("eval-missing-model", "eval-cnn", "missing model file", "{no_model} {good}", 2,
      "model file '{no_model}' does not exist"),
    C("eval-missing", "eval-cnn", "missing event file", "{model} {missing}", 2,
      "event file '{missing}' does not exist"),
    C("eval-empty", "eval-cnn", "empty (0-byte) file", "{model} {empty}", 1,
      "{empty}: an empty file, expected a spectrocnn event file"),
    C("eval-text", "eval-cnn", "text file, not HDF5", "{model} {text}", 1,
      "{text}: not an HDF5 file"),
    C("eval-schema", "eval-cnn", "another schema version", "{model} {schema3}", 1,
      "{schema3}: schema is 'spectrocnn.events/3'"),
    C("eval-truncated", "eval-cnn", "truncated file", "{model} {truncated}", 1,
      "{truncated}: cannot open the HDF5 file: it is truncated"),
    C("eval-corrupt-chunk", "eval-cnn", "corrupted gzip chunk of image 3",
      "{seed16} {corrupt} --out {outdir}/eval", 1, "{corrupt}: image 3 is corrupt"),
    C("eval-zero-events", "eval-cnn", "file with zero events", "{model} {zero}", 2,
      "event file {zero} holds no events"),
    C("eval-cache-mb-negative", "eval-cnn", "--cache-mb -1", "{model} {good} --cache-mb -1",
      2, "--cache-mb must be a positive number of MB, got -1"),
    C("eval-threads-0", "eval-cnn", "--threads 0", "{model} {good} --threads 0", 2,
      "--threads must be a positive integer, got 0"),
    C("eval-out-is-file", "eval-cnn", "--out is an existing file",
      "{model} {good} --out {old}", 2, "output {old} exists and is not a directory"),
    C("eval-foreign-shard", "eval-cnn", "sharded file with a shard of another run (seed 2)",
      "{seed16} {foreign_shard} --out {outdir}/eval", 1,
      "{foreign_shard}: shard shard-00001-of-00003.h5 belongs to another run (seed 2, expected 1)"),
    C("eval-no-args", "eval-cnn", "no arguments at all", "", 2,
      "the following arguments are required: MODEL, FILE.h5 (usage: eval-cnn MODEL FILE.h5 "
      "[options]; eval-cnn --help lists every option)"),
    C("eval-not-model", "eval-cnn", "model file that is no model", "{model} {good}", 1,
      "{model}: not a Keras model file (a .keras model is a zip archive; this file is not "
      "one, or is truncated)"),
    C("eval-empty-model", "eval-cnn", "empty model file", "{empty_model} {good}", 1,
      "{empty_model}: an empty file, not a Keras model file"),
    C("eval-event-file-as-model", "eval-cnn", "an event file given as the model",
      "{good} {good}", 1, "{good}: an event file, not a Keras model file (arguments swapped?)"),
    C("eval-model-suffix", "eval-cnn", "model file of another format (.npz)",
      "{map_nan} {good}", 2,
      "model file '{map_nan}' ends in '.npz'; Keras loads .keras and .h5 model files "
      "(rename it to .keras?)"),
    C("eval-model-dir", "eval-cnn", "model is a directory", "{not_run} {good}", 1,
      "model file '{not_run}' is a directory (a TensorFlow SavedModel?)"),
    C("eval-locked", "eval-cnn", "event file held open for writing by another process",
      "{seed16} {locked}", 1, "{locked}: cannot open the HDF5 file: it is locked", "locked"),
    C("eval-input-size", "eval-cnn", "--input-size the model does not take",
      "{seed16} {good} --input-size 32 --out {outdir}/eval", 2,
      "--input-size 32 does not match {seed16}, which takes 16x16 images"),
    C("eval-downsample", "eval-cnn", "unknown --downsample", "{seed16} {good} --downsample foo",
      2, "argument --downsample: invalid choice: 'foo'"),
    C("eval-explain-negative", "eval-cnn", "--explain -1", "{model} {good} --explain -1", 2,
      "--explain must be an integer >= 0, got -1"),
    C("eval-explain-text", "eval-cnn", "--explain not a number",
      "{model} {good} --explain all", 2, "--explain must be an integer >= 0, got 'all'"),
    C("eval-explain-fraction", "eval-cnn", "--explain not an integer",
      "{seed16} {good} --explain 2.5 --out {outdir}/eval", 2,
      "--explain must be an integer >= 0, got '2.5'"),
    # -- show-event
    C("eval-model-labels", "eval-cnn", "a regression model on a file of binary labels",
      "{reg16} {good}", 2,
      "{reg16} predicts regression labels (1 linear output); {good} has binary labels: "
      "evaluate it on a file with the labels it was trained on"),
    C("eval-polar-xz", "eval-cnn", "a polar model on images of the x-z plane",
      "{polar16} {xz}", 2,
      '{polar16} is a polar network, on {xz}: the images show the x-z plane ([image] '
      'projection = "xz"), where the beam line is the line x = 0, not a point: polar images '
      "need x-y images; evaluate it on x-y images, or train another on these (train-cnn "
      "--arch lecture)"),
    C("eval-explain-regression", "eval-cnn", "--explain on a regression target",
      "{reg16} {regression} --explain 2", 2,
      "--explain needs binary labels; {regression} has regression labels"),
    C("show-missing", "show-event", "missing input file", "{missing} --out {png}", 2,
      "event file '{missing}' does not exist"),
    C("show-foreign", "show-event", "HDF5 file of another kind", "{foreign} --out {png}", 1,
      "{foreign}: not a spectrocnn event file"),
    C("show-truncated", "show-event", "truncated file", "{truncated} --out {png}", 1,
      "{truncated}: cannot open the HDF5 file: it is truncated"),
    C("show-corrupt-chunk", "show-event", "corrupted gzip chunk of image 3",
      "{corrupt} --index 3 --out {png}", 1,
      "{corrupt}: cannot read images 3:4"),
    C("show-projection", "show-event", "/images with an unknown projection attribute",
      "{bad_projection} --out {png}", 1,
      "{bad_projection}: /images has projection 'rz', expected one of 'xy', 'xz', 'yz'"),
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
    C("show-foreign-shard", "show-event", "sharded file with a shard of another run (seed 2)",
      "{foreign_shard} --index 300 --out {png}", 1,
      "{foreign_shard}: shard shard-00001-of-00003.h5 belongs to another run (seed 2, expected 1)"),
    C("show-no-args", "show-event", "no arguments at all", "", 2,
      "the following arguments are required: FILE.h5 (usage: show-event FILE.h5 [options]; "
      "show-event --help lists every option)"),
    C("show-format", "show-event", "--out of an unknown picture format",
      "{good} --out {outdir}/x.bmp", 2,
      "--out '{outdir}/x.bmp' has extension '.bmp'; the picture formats are avif, eps, gif, "
      "jpeg, jpg, pdf, png, ps, svg, svgz, tif, tiff, webp"),
    C("show-no-extension", "show-event", "--out without an extension", "{good} --out {outdir}/x",
      2, "--out '{outdir}/x' has no extension; the picture formats are avif, eps"),
    C("show-locked", "show-event", "event file held open for writing by another process",
      "{locked} --out {png}", 1, "{locked}: cannot open the HDF5 file: it is locked", "locked"),
    C("show-label-kind", "show-event", "/labels with an unknown label_kind attribute",
      "{bad_label_kind} --out {png}", 1,
      "{bad_label_kind}: /labels attributes: label kind must be one of binary, multiclass, "
      "regression, got 'ordinal'"),
    # -- fit-tracks
    C("fit-missing", "fit-tracks", "missing input file", "{missing}", 2,
      "event file '{missing}' does not exist"),
    C("fit-text", "fit-tracks", "text file, not HDF5", "{text}", 1,
      "{text}: not an HDF5 file"),
    C("fit-schema", "fit-tracks", "another schema version", "{schema3}", 1,
      "{schema3}: schema is 'spectrocnn.events/3'"),
    C("fit-truncated", "fit-tracks", "truncated file", "{truncated}", 1,
      "{truncated}: cannot open the HDF5 file: it is truncated"),
    C("fit-corrupt-chunk", "fit-tracks", "corrupted gzip chunk of /hits/layer", "{corrupt}", 1,
      "{corrupt}: cannot read hits/layer"),
    C("fit-zero-events", "fit-tracks", "file with zero events", "{zero}", 2,
      "event file {zero} holds no events"),
    C("fit-no-truth-tilted", "fit-tracks", "--no-truth with planes not parallel to the field",
      "{tilted} --no-truth", 2,
      "track finding needs planes parallel to the field (z); layer 0 has normal [0.6, 0.0, 0.8]"),
    C("fit-field-map", "fit-tracks", "file made with a field map (truth association)",
      "{field_map}", 2,
      "fit-tracks (with or without --no-truth) needs a uniform field along z "
      "(field.B_T = [0, 0, B]); {field_map} was made with the field map dipole.npz"),
    C("fit-field-map-no-truth", "fit-tracks", "file made with a field map, --no-truth",
      "{field_map} --no-truth", 2,
      "fit-tracks (with or without --no-truth) needs a uniform field along z "
      "(field.B_T = [0, 0, B]); {field_map} was made with the field map dipole.npz"),
    C("fit-field-tilted", "fit-tracks", "file made with a uniform field not along z",
      "{field_tilted}", 2,
      "fit-tracks (with or without --no-truth) needs a uniform field along z; {field_tilted} "
      "was made with field.B_T = [0.0, 1.0, 2.0]"),
    C("fit-unknown-flag", "fit-tracks", "unknown flag", "{good} --bogus", 2,
      "unrecognized arguments: --bogus (fit-tracks --help lists the options)"),
    C("fit-nan-hits", "fit-tracks", "NaN/inf in /hits/x (the fit goes on)", "{nan_hits}", 0,
      "4 hits with a NaN or infinite x or y in {nan_hits} were left out"),
    C("fit-foreign-shard", "fit-tracks", "sharded file with a shard of another run (seed 2)",
      "{foreign_shard}", 1,
      "{foreign_shard}: shard shard-00001-of-00003.h5 belongs to another run (seed 2, expected 1)"),
    C("fit-no-args", "fit-tracks", "no arguments at all", "", 2,
      "the following arguments are required: FILE.h5 (usage: fit-tracks FILE.h5 [options]; "
      "fit-tracks --help lists every option)"),
    C("fit-regression", "fit-tracks", "file of regression labels (fit-tracks compares with "
      "binary labels)", "{regression}", 2,
      "fit-tracks (it scores events against the file's labels) needs binary labels; "
      "{regression} has regression labels (n_hits / 16)"),
    C("fit-no-layers", "fit-tracks", "file whose configuration records no detector layers",
      "{no_layers}", 2,
      "fit-tracks needs the detector layers (their resolutions) from the file's "
      "configuration; {no_layers} records none"),
    C("fit-left-open", "fit-tracks", "event file whose writer stopped without closing it",
      "{left_open}", 1, "{left_open}: cannot open the HDF5 file: it was left open for writing"),
    C("fit-locked", "fit-tracks", "event file held open for writing by another process",
      "{locked}", 1, "{locked}: cannot open the HDF5 file: it is locked", "locked"),
]  # fmt: skip
del C

#: Placeholders of ``args`` and ``message`` -> what docs/errors.md shows.
DOC_NAMES = {
    "good": "events.h5",
    "telescope": "telescope.h5",
    "tilted": "tilted.h5",
    "field_map": "field_map.h5",
    "field_tilted": "field_tilted.h5",
    "missing": "missing.h5",
    "empty": "empty.h5",
    "text": "text.h5",
    "foreign": "foreign.h5",
    "schema3": "schema3.h5",
    "truncated": "truncated.h5",
    "corrupt": "corrupt.h5",
    "zero": "zero.h5",
    "bad_projection": "bad_projection.h5",
    "nan_hits": "nan_hits.h5",
    "model": "model.keras",
    "empty_model": "empty.keras",
    "locked": "locked.h5",
    "left_open": "left_open.h5",
    "unreadable": "unreadable.h5",
    "garbled": "garbled.h5",
    "seed16": "seed16.keras",
    "reg16": "regression16.keras",
    "polar16": "polar16.keras",
    "xz": "xz.h5",
    "regression": "regression.h5",
    "multiclass": "multiclass.h5",
    "bad_label_kind": "bad_label_kind.h5",
    "no_layers": "no_layers.h5",
    "no_model": "missing.keras",
    "not_run": "not_a_run",
    "bad_run": "bad_run",
    "other_run": "run_on_other_data",
    "done_run": "finished_run",
    "foreign_shard": "eA/events.h5",
    "no_config": "missing.toml",
    "no_map": "missing.npz",
    "map_nan": "nan.npz",
    "map_shape": "shape.npz",
    "map_text": "text.npz",
    "map_empty": "empty.npz",
    "map_truncated": "truncated.npz",
    "map_corrupt": "corrupt.npz",
    "map_dir": "map_dir.npz",
    "map_unreadable": "unreadable.npz",
    "outdir": "OUT",
    "out": "OUT/new.h5",
    "old": "OUT/old.h5",
    "run": "OUT/run",
    "png": "OUT/new.png",
}

#: Configuration files of the test world: name -> TOML text.
#: Pieces of the [[guns]] configurations of issue 19.
_LABEL = "[label]\nthreshold_GeV = 1.0\n"
_PION = '[[guns]]\nparticle = "pi+"\n'
_FRACTION = "fraction = 1.0\npt_GeV = [0.5, 2.0]\n"

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
    "cfg_material": '[detector]\nmaterial = "lead"\n',
    "cfg_layer_material": '[[detector.layers]]\nradius_mm = 50.0\nmaterial = "silicn"\n',
    "cfg_thickness_mm": "[detector]\nthickness_mm = -0.3\n",
    "cfg_layer_thickness_mm": "[[detector.layers]]\nradius_mm = 50.0\nthickness_mm = -0.3\n",
    "cfg_thickness_both": "[detector]\nthickness_mm = 0.3\nthickness_x0 = 0.01\n",
    "cfg_layer_thickness_both": (
        "[[detector.layers]]\nradius_mm = 50.0\nthickness_mm = 0.3\nthickness_x0 = 0.01\n"
    ),
    "cfg_energy_loss": '[detector]\nenergy_loss = "yes"\n',
    "cfg_layer_energy_loss": "[[detector.layers]]\nradius_mm = 50.0\nenergy_loss = 1\n",
    "cfg_duplicate": "[[detector.layers]]\nradius_mm = 50.0\n" * 2,
    "cfg_radius": '[[detector.layers]]\nkind = "cylinder"\nradius_mm = -50.0\n',
    "cfg_field_nan": "[field]\nB_T = [0.0, 0.0, nan]\n",
    "cfg_window": "[image]\nwindow_mm = [210.0, -210.0, -210.0, 210.0]\n",
    "cfg_hit_mm_negative": "[image]\nhit_radius_mm = -1.5\n",
    "cfg_hit_mm_large": "[image]\nhit_radius_mm = 500.0\n",
    "cfg_hit_both": "[image]\nhit_radius_mm = 3.125\nhit_radius_px = 3\n",
    "cfg_projection": '[image]\nprojection = "zx"\n',
    "cfg_projection_key": '[image]\nprojektion = "xz"\n',
    "cfg_yz": '[image]\nprojection = "yz"\n',
    "cfg_map_nan": '[field]\nmap = "nan.npz"\n',
    "cfg_map_shape": '[field]\nmap = "shape.npz"\n',
    "cfg_map_missing": '[field]\nmap = "missing.npz"\n',
    "cfg_map_text": '[field]\nmap = "text.npz"\n',
    "cfg_gamma": '[gun]\nparticle = "gamma"\n',
    "cfg_pi0": '[gun]\nparticle = "pi0"\n',
    "cfg_neutron": '[gun]\nparticle = "n"\n',
    "cfg_kl0": '[gun]\nparticle = "K(L)0"\n',
    "cfg_quark": '[gun]\nparticle = "u"\n',
    "cfg_gluon": '[gun]\nparticle = "g"\n',
    "cfg_map_empty": '[field]\nmap = "empty.npz"\n',
    "cfg_map_truncated": '[field]\nmap = "truncated.npz"\n',
    "cfg_map_corrupt": '[field]\nmap = "corrupt.npz"\n',
    "cfg_map_dir": '[field]\nmap = "map_dir.npz"\n',
    "cfg_map_unreadable": '[field]\nmap = "unreadable.npz"\n',
    "cfg_unreadable": "n_particles = 10\n",
    "cfg_mult_dist": 'n_particles = {distribution = "gauss", mean = 3.0}\n',
    "cfg_mult_mean": 'n_particles = {distribution = "poisson", mean = 0}\n',
    "cfg_mult_range": 'n_particles = {distribution = "uniform", range = [0, 5]}\n',
    "cfg_mult_float": 'n_particles = {distribution = "uniform", range = [5.5, 15]}\n',
    "cfg_mult_key": 'n_particles = {distribution = "poisson", mean = 3.0, range = [1, 5]}\n',
    "cfg_gun_momentum": '[gun]\nmomentum = "pT"\n',
    "cfg_gun_eta": "[gun]\neta = [2.0, 1.0]\n",
    "cfg_gun_eta_dip": "[gun]\neta = [-1.0, 1.0]\ndip_deg = [0.0, 0.0]\n",
    "cfg_gun_sign": '[gun]\ncharge_sign = "plus"\n',
    "cfg_gun_pt_dip": '[gun]\nmomentum = "pt"\ndip_deg = [-90.0, 10.0]\n',
    "cfg_label_threshold": "[label]\nthreshold_GeV = -1.0\n",
    "cfg_label_variable": _LABEL + 'variable = "E"\n',
    "cfg_label_key": "[label]\ntreshold_GeV = 1.0\n",
    "cfg_guns_no_label": _PION + _FRACTION,
    "cfg_guns_and_gun": '[gun]\nparticle = "mu-"\n' + _LABEL + _PION + _FRACTION,
    "cfg_guns_high": "high_fraction = 0.3\n" + _LABEL + _PION + _FRACTION,
    "cfg_guns_empty": "guns = []\n" + _LABEL,
    "cfg_guns_pi0": _LABEL + '[[guns]]\nparticle = "pi0"\n' + _FRACTION,
    "cfg_guns_sign": _LABEL + _PION + _FRACTION + 'charge_sign = "both"\n',
    "cfg_guns_fraction": _LABEL + _PION + "fraction = 1.5\npt_GeV = [0.5, 2.0]\n",
    "cfg_guns_sum": _LABEL
    + _PION
    + "fraction = 0.5\npt_GeV = [0.5, 2.0]\n"
    + _PION
    + "fraction = 0.3\npt_GeV = [1.0, 2.0]\n",
    "cfg_guns_both": _LABEL + _PION + _FRACTION + "count = 2\n",
    "cfg_guns_mixed": _LABEL + _PION + _FRACTION + _PION + "count = 2\npt_GeV = [1.0, 2.0]\n",
    "cfg_guns_count": _LABEL + _PION + "count = 0\npt_GeV = [0.5, 2.0]\n",
    "cfg_guns_count_n": "n_particles = 5\n" + _LABEL + _PION + "count = 2\npt_GeV = [0.5, 2.0]\n",
    "cfg_guns_p_pt": _LABEL + _PION + _FRACTION + "p_GeV = [1.0, 2.0]\n",
    "cfg_guns_no_p": _LABEL + _PION + "fraction = 1.0\n",
    "cfg_guns_pt_zero": _LABEL + _PION + "fraction = 1.0\npt_GeV = [0.0, 2.0]\n",
    "cfg_guns_eta_dip": _LABEL + _PION + _FRACTION + "eta = [-1.0, 1.0]\ndip_deg = [0.0, 0.0]\n",
    "cfg_guns_eta_text": _LABEL + _PION + _FRACTION + 'eta = [-1.0, "x"]\n',
    "cfg_guns_eta_huge": _LABEL + _PION + _FRACTION + "eta = [0.0, 1000.0]\n",
    "cfg_guns_key": _LABEL + _PION + _FRACTION + "etta = [-1.0, 1.0]\n",
}
DOC_NAMES.update({k: f"{k[4:]}.toml" for k in CONFIGS})
DOC_NAMES["cfg_binary"] = "binary.toml"

#: Rows also run in a real process: the real stderr, no traceback, no TensorFlow.
PROCESS_ROWS = {
    "gen-config-p-reversed",
    "train-input-size-large",
    "eval-text",
    "fit-nan-hits",
    "gen-particle-gamma",
    "gen-no-args",
    "train-locked",
    "eval-not-model",
    "show-format",
}
#: Rows run in a real process that loads TensorFlow: its start-up lines, Keras' warnings and
#: eval-cnn's warnings must not add lines to the one-line error.
TF_PROCESS_ROWS = {"eval-corrupt-chunk", "eval-input-size"}


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
    assert {c.env for c in CASES} == {
        "",
        "readonly",
        "full",
        "small",
        "enospc",
        "locked",
        "unreadable",
    }
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
    shutil.copy(p["telescope"], p["tilted"])  # the same file, its planes tilted in z
    with h5py.File(p["tilted"], "a") as f:
        config = json.loads(f.attrs["config"])
        for layer in config["detector"]["layers"]:
            layer["normal"] = [0.6, 0.0, 0.8]
        f.attrs["config"] = json.dumps(config)
    for name, fld in (("field_map", {"map": "dipole.npz"}), ("field_tilted", {"B_T": [0, 1, 2]})):
        shutil.copy(p["telescope"], p[name])  # the same file, as if made in another field
        with h5py.File(p[name], "a") as f:
            config = json.loads(f.attrs["config"])
            config["field"] = {**fld, "stepper_tolerance_mm": 1e-4}
            f.attrs["config"] = json.dumps(config)
    Path(p["empty"]).write_bytes(b"")
    Path(p["text"]).write_text("event,x,y\n1,2.0,3.0\n" * 50)
    with h5py.File(p["foreign"], "w") as f:
        f["data"] = np.arange(10)
    shutil.copy(p["good"], p["schema3"])
    with h5py.File(p["schema3"], "a") as f:
        f.attrs["schema"] = "spectrocnn.events/3"
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
    shutil.copy(p["good"], p["bad_projection"])
    with h5py.File(p["bad_projection"], "a") as f:
        f["images"].attrs["projection"] = "rz"
    shutil.copy(p["good"], p["nan_hits"])
    with h5py.File(p["nan_hits"], "a") as f:
        x = f["hits/x"][:]
        x[[0, 1, 20, 300]] = [np.nan, np.inf, -np.inf, np.nan]
        f["hits/x"][:] = x
        px = f["particles/px"][:]
        px[[0, 5]] = [np.nan, np.inf]
        f["particles/px"][:] = px
    Path(p["model"]).write_bytes(b"not a model")
    Path(p["empty_model"]).write_bytes(b"")
    shutil.copy(p["good"], p["locked"])  # held open for writing by the "locked" rows
    shutil.copy(p["good"], p["unreadable"])
    os.chmod(p["unreadable"], 0)
    Path(p["garbled"]).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    left_open = (  # a writer that stops without closing: HDF5 marks the file open for write
        "import h5py, os, sys; f = h5py.File(sys.argv[1], 'w', libver='latest'); "
        "f['x'] = [1]; f.flush(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", left_open, p["left_open"]], check=True)
    from spectrocnn.model.architectures import build_model

    build_model("seed", 16).save(p["seed16"])  # untrained, 16x16 input
    with open_events(p["good"]) as ev:
        build_model("polar", 16, window_mm=ev.window_mm).save(p["polar16"])
    shutil.copy(p["good"], p["xz"])  # the same images, as if of the x-z plane
    with h5py.File(p["xz"], "a") as f:
        f["images"].attrs["projection"] = "xz"
    _own_label_files(p)
    os.mkdir(p["not_run"])
    os.mkdir(p["bad_run"])
    Path(p["bad_run"], "config.json").write_text("{not json")
    _foreign_shard_and_other_run(d, p)
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
    Path(p["map_empty"]).write_bytes(b"")
    npz = Path(p["map_nan"]).read_bytes()
    Path(p["map_truncated"]).write_bytes(npz[: len(npz) // 2])
    with zipfile.ZipFile(p["map_corrupt"], "w") as z:
        for name in ("x_mm", "y_mm", "z_mm", "B_T"):
            z.writestr(f"{name}.npy", b"\x93NUMPY garbage")
    os.mkdir(p["map_dir"])
    shutil.copy(p["map_nan"], p["map_unreadable"])
    os.chmod(p["map_unreadable"], 0)
    Path(p["cfg_binary"]).write_bytes(b"\xff\xfe\x00\x01 binary")
    os.chmod(p["cfg_unreadable"], 0)
    return p


def _own_label_files(p: dict[str, str]) -> None:
    """events.h5 with your own labels (issue 22): a regression target, three classes, an
    unknown label_kind; without detector layers; a regression model of 16x16 input."""
    from spectrocnn.labels import LabelSpec
    from spectrocnn.model.architectures import build_model

    build_model("lecture", 16, labels=LabelSpec("regression")).save(p["reg16"])
    own = {
        "regression": (np.arange(16) / 16.0, {"label_kind": "regression",
                                             "label_name": "n_hits / 16"}),
        "multiclass": (np.arange(16) % 3, {"label_kind": "multiclass", "n_classes": 3,
                                          "class_names": ["e", "mu", "pi"]}),
        "bad_label_kind": (np.zeros(16), {"label_kind": "ordinal"}),
    }  # fmt: skip
    for name, (values, attrs) in own.items():
        shutil.copy(p["good"], p[name])
        with h5py.File(p[name], "a") as f:
            del f["labels"]
            f["labels"] = values
            f["labels"].attrs.update(attrs)
    shutil.copy(p["good"], p["no_layers"])
    with h5py.File(p["no_layers"], "a") as f:
        config = json.loads(f.attrs["config"])
        del config["detector"]["layers"]
        f.attrs["config"] = json.dumps(config)


def _foreign_shard_and_other_run(d: Path, p: dict[str, str]) -> None:
    """eA/events.h5: 600 events in 3 shards (seed 1), shard 1 replaced by that of a run of
    seed 2 (issue 15); a run directory interrupted after epoch 1 of training on a file of
    seed 2 at the path of events.h5 (which has seed 1)."""
    from _helpers import make_sharded

    from spectrocnn.dataset import open_events
    from spectrocnn.model.train import RUN_SCHEMA, TrainConfig

    make_sharded(d / "eA", 600, 3, seed=1)
    make_sharded(d / "eB", 600, 3, seed=2)
    shutil.copyfile(d / "eB" / "shard-00001-of-00003.h5", d / "eA" / "shard-00001-of-00003.h5")
    shutil.rmtree(d / "eB")
    with open_events(p["good"]) as ev:
        was = {**ev.identity(), "seed": 2, "run_id": "0" * 32}
    settings = TrainConfig(input=p["good"], epochs=2, input_size=16, seed=3).settings()
    os.mkdir(p["other_run"])
    config = {"schema": RUN_SCHEMA, **settings, "input_file": was, "val_file": None}
    Path(p["other_run"], "config.json").write_text(json.dumps(config))
    state = {"completed_epochs": 1, "best_val_accuracy": 0.5, "best_epoch": 1}
    Path(p["other_run"], "state.json").write_text(json.dumps(state))
    os.mkdir(p["done_run"])  # a finished 3-epoch run on events.h5
    with open_events(p["good"]) as ev:
        identity = ev.identity()
    settings = TrainConfig(input=p["good"], epochs=3, input_size=16, seed=3, cache_mb=512)
    config = {"schema": RUN_SCHEMA, **settings.settings(), "input_file": identity,
              "val_file": None}  # fmt: skip
    Path(p["done_run"], "config.json").write_text(json.dumps(config))
    state = {"completed_epochs": 3, "best_val_accuracy": 0.5, "best_epoch": 2,
             "status": "complete"}  # fmt: skip
    Path(p["done_run"], "state.json").write_text(json.dumps(state))


def _snapshot(directory: str | Path) -> dict[str, tuple[int, int, str]]:
    """Every file below ``directory`` (hidden ones too): path -> (size, mtime, sha256)."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.stat(path)
            digest = ""
            if os.path.isfile(path) and os.access(path, os.R_OK):
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
        if env in ("", "enospc", "locked", "unreadable"):
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
def test_bad_input(case, world, output_dir, capsys, monkeypatch, request):
    if case.env == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file without read permission (tests/test_eventfile.py "
                    "simulates it)")  # fmt: skip
    out = output_dir(case.env)
    names = _names(world, out)
    if case.env == "locked":
        _hold_open_for_writing(world["locked"], request)
    argv = [a.format(**names) for a in shlex.split(case.args)]
    monkeypatch.chdir(out)  # default outputs would land here
    if case.env == "enospc":
        import matplotlib.figure

        from spectrocnn.dataset import EventFileWriter

        monkeypatch.setattr(EventFileWriter, "_write_encoded", _no_space)
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _no_space)
    before_out, before_in = _snapshot(out), _snapshot(os.path.dirname(world["good"]))
    # in a process of its own: a crash (HDF5 on a full disk) must not take pytest along
    if case.id in PROCESS_ROWS | TF_PROCESS_ROWS or case.code == 0 or case.env in ("full", "small"):
        proc = _run_process(case.command, argv, tensorflow=case.id in TF_PROCESS_ROWS)
        assert proc.returncode == case.code, proc.stderr
        err = proc.stderr
    else:
        assert MAINS[case.command].main(argv) == case.code, capsys.readouterr().err
        err = capsys.readouterr().err
    _check_line(case, err, names)
    assert _snapshot(out) == before_out
    assert _snapshot(os.path.dirname(world["good"])) == before_in


def _hold_open_for_writing(path: str, request: pytest.FixtureRequest) -> None:
    """Another process opens ``path`` for writing (HDF5 locks it) until the test ends."""
    code = (
        "import h5py, sys; f = h5py.File(sys.argv[1], 'a'); print('open', flush=True); "
        "sys.stdin.read(); f.close()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    def release() -> None:
        proc.stdin.close()
        proc.wait(timeout=60)

    request.addfinalizer(release)
    assert proc.stdout.readline().strip() == "open"


def _run_process(
    command: str, argv: list[str], tensorflow: bool = False
) -> subprocess.CompletedProcess:
    """Run the command in a process (without TF_CPP_* from the environment); exit code 99
    if it imported TensorFlow without ``tensorflow``."""
    module = MAINS[command].__name__
    code = f"import sys\nfrom {module} import main\nrc = main()\n"
    if not tensorflow:
        code += "sys.exit(99 if 'tensorflow' in sys.modules else rc)\n"  # 99: TF imported
    else:
        code += "sys.exit(rc)\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300, env=env
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
    assert spectrocnn.dataset.shards.ShardError is errors.ShardError
    expected = {"ConfigError": 2, "EventFileNotFoundError": 2, "EventFileError": 1,
                "ModelFileError": 1, "ShardError": 1, "SpectrocnnError": None}  # fmt: skip
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

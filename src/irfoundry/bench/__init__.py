"""Measurements on this machine, one module per benchmark (``irfoundry bench NAME``).

Every benchmark module offers the same three functions, which ``irfoundry bench`` and the scripts in
``benchmarks/`` call:

* ``add_arguments(parser) -> parser``: its command-line options;
* ``run(args: dict) -> dict``: the measurement, options as a dict (``vars(namespace)``); returns a
  JSON-ready result (``"ok": False`` when a built-in check failed) and writes the files its options ask for
  (strict JSON, :func:`irfoundry.jsonio.write_json`);
* ``format_table(result) -> str``: what the command prints.

Modules: :mod:`irfoundry.bench.train` (training / inference throughput of every host),
:mod:`irfoundry.bench.metrics` (metrics engine against the naive reference),
:mod:`irfoundry.bench.foundation` (foundation-model cost with and without the feature cache),
:mod:`irfoundry.bench.step_cost` (a method's training step and export against the plain host). Studies
over seeds (FDEP's gain) are :mod:`irfoundry.study`. Import
heavy packages inside ``run`` where possible: the CLI imports every module to build its parser.
"""

from __future__ import annotations

"""Studies: seeds x datasets x hosts x arms, each arm a set of config overrides, into one resumable results file.

* :mod:`irfoundry.study.spec` -- the spec (YAML; shipped ones in ``irfoundry/configs/studies``);
* :mod:`irfoundry.study.runner` -- trains, selects on validation, evaluates on test, appends a row per run;
* :mod:`irfoundry.study.stats` -- mean / std over seeds, paired differences with Student-t intervals;
* :mod:`irfoundry.study.report` -- per-arm tables and paired comparisons (plain text and Markdown).

Command line: ``irfoundry study run SPEC --out results.json`` and ``irfoundry study summary results.json``.
"""

from irfoundry.study.report import format_markdown, format_table, summarize
from irfoundry.study.runner import load_results, run_study
from irfoundry.study.spec import RunKey, StudySpec, list_specs, load_spec
from irfoundry.study.stats import mean_std, paired_difference

__all__ = ["RunKey", "StudySpec", "format_markdown", "format_table", "list_specs", "load_results", "load_spec",
           "mean_std", "paired_difference", "run_study", "summarize"]

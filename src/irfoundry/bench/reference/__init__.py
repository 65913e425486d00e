"""References the metrics engine is measured against (``irfoundry bench metrics`` and the test suite).

* :mod:`~irfoundry.bench.reference.naive_metrics`: a deliberately naive, independent implementation of the
  IRSTD metrics (scikit-image labelling, plain loops; needs the ``test`` extra);
* :mod:`~irfoundry.bench.reference.perturb`: realistic perturbed predictions made from real masks.
"""

"""Training methods: how a batch becomes a loss, and what is exported (see :mod:`irfoundry.methods.base`)."""

from irfoundry.methods.base import Method, build_method, list_methods, register_method
from irfoundry.methods import fdep, lesps, pal, semprior, simir_distill, supervised  # noqa: F401  (registers them)

__all__ = ["Method", "build_method", "list_methods", "register_method"]

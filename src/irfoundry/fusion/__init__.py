"""Fusion modules that feed frozen foundation features into a host network during training.

* :class:`SAMF` / :class:`SAMFStack`: FDEP's semantic-aware fusion (arXiv 2512.05511), reconstructed.
"""

from irfoundry.fusion.samf import SAMF, SAMFStack

__all__ = ["SAMF", "SAMFStack"]

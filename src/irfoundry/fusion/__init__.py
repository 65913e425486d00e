"""Fusion modules that feed frozen foundation features into a host network during training.

* :class:`SAMF` / :class:`SAMFStack`: FDEP's semantic-aware fusion (arXiv 2512.05511), reconstructed.
* :class:`SCAM` / :func:`modulate`: semantic-prior KD's affine modulator of a host's encoder stages
  (arXiv 2605.14346), from the released code.
"""

from irfoundry.fusion.samf import SAMF, SAMFStack
from irfoundry.fusion.scam import SCAM, modulate

__all__ = ["SAMF", "SAMFStack", "SCAM", "modulate"]

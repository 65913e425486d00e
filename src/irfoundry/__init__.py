"""irfoundry: single-frame infrared small-target detection (IRSTD / SIRST).

A frozen vision foundation model teaches a small IRSTD network during training only;
the small network ships alone. See README.md for the quickstart.
"""

__version__ = "0.1.0"

from irfoundry.errors import IRFoundryError  # noqa: E402

__all__ = ["IRFoundryError", "__version__"]

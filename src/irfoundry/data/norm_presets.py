"""Published normalisation statistics, so weights trained elsewhere run on the images they expect.

Reference checkpoints carry no statistics; each toolbox normalises with fixed per-dataset values
(``(x - mean) / std`` on 0-255 grey). These are BasicIRSTD's and LESPS' ``get_img_norm_cfg``
(XinyiYing/BasicIRSTD ``utils.py``; XinyiYing/LESPS ``utils.py``, which adds ``SIRST3``). A checkpoint must
be run with the statistics it was trained with: a BasicIRSTD ACM trained on SIRST3 scored IoU 0.15 instead
of 0.65 on NUAA-SIRST with the identity normalisation (issue 17).

``parse_norm("sirst3")`` or ``parse_norm("95.010,41.511")`` -> ``{"mean", "std", "source"}`` in irfoundry's
[0, 1] units (the 0-255 values divided by 255).
"""

from __future__ import annotations

import difflib

from irfoundry.errors import ConfigError

__all__ = ["NORM_PRESETS", "parse_norm"]

#: preset -> (mean, std) on 0-255 grey, and where they come from
NORM_PRESETS: dict[str, tuple[float, float, str]] = {
    "nuaa-sirst": (101.06385040283203, 34.619606018066406, "BasicIRSTD / LESPS get_img_norm_cfg('NUAA-SIRST')"),
    "nudt-sirst": (107.80905151367188, 33.02274703979492, "BasicIRSTD / LESPS get_img_norm_cfg('NUDT-SIRST')"),
    "irstd-1k": (87.4661865234375, 39.71953201293945, "BasicIRSTD / LESPS get_img_norm_cfg('IRSTD-1K')"),
    "sirst3": (95.010, 41.511, "LESPS get_img_norm_cfg('SIRST3')"),
    "nudt-sirst-sea": (43.62403869628906, 18.91838264465332, "BasicIRSTD get_img_norm_cfg('NUDT-SIRST-Sea')"),
    "sirst4": (62.10432052612305, 23.96998405456543, "BasicIRSTD get_img_norm_cfg('SIRST4')"),
}


def parse_norm(text: str) -> dict:
    """A preset name (case-insensitive) or ``MEAN,STD`` on 0-255 grey -> ``{"mean", "std", "source"}`` in
    [0, 1] units. Raises :class:`ConfigError` naming the presets for anything else."""
    key = str(text).strip().lower()
    if key in NORM_PRESETS:
        mean, std, source = NORM_PRESETS[key]
        return {"mean": mean / 255.0, "std": std / 255.0, "source": f"preset {key}: {source}, 0-255 {mean}/{std}"}
    parts = key.split(",")
    try:
        mean, std = (float(p) for p in parts)
    except ValueError:
        close = difflib.get_close_matches(key, list(NORM_PRESETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"--norm {text!r} is neither MEAN,STD (0-255 grey, e.g. 95.010,41.511) nor a preset "
                          f"({', '.join(NORM_PRESETS)}).{hint}") from None
    if not (0 <= mean <= 255 and 0 < std <= 255):
        raise ConfigError(f"--norm {text!r}: mean must lie in [0, 255] and std in (0, 255] (0-255 grey values)")
    return {"mean": mean / 255.0, "std": std / 255.0, "source": f"given: 0-255 {mean}/{std}"}

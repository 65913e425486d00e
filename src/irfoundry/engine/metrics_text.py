"""How metrics are shown: the field's print of a metrics dict (percent, Fa x 1e-6) and its list-free view for
tables, reports and ``--json``."""

from __future__ import annotations

from typing import Any


#: how the field prints each scalar: (label, scale, unit)
PRINTED = {"iou": ("IoU", 100.0, ""), "niou": ("nIoU", 100.0, ""), "pd": ("Pd", 100.0, ""),
           "fa": ("Fa", 1e6, " x1e-6"), "hse": ("HSE", 1.0, ""), "target_precision": ("target precision", 100.0, ""),
           "target_f1": ("target F1", 100.0, "")}


def format_metrics(result: dict[str, Any]) -> str:
    """``metrics.json`` as the field prints it: IoU / nIoU / Pd / HSE in percent, Fa x 1e-6, two decimals;
    undefined metrics as ``n/a`` with the reason on their own line."""
    def cell(key: str) -> str:
        label, scale, unit = PRINTED[key]
        v = result.get(key)
        return f"{label} n/a" if v is None else f"{label} {v * scale:.2f}{unit}"

    head = (f"{result.get('n_images')} images, {result.get('n_targets', '?')} targets, threshold "
            f"{result.get('threshold')}" + (f", padding {result['padding']}" if result.get("padding") else ""))
    lines = [head, "  " + "  ".join(cell(k) for k in ("iou", "niou", "pd", "fa", "hse")),
             "  " + "  ".join(cell(k) for k in ("target_precision", "target_f1"))
             + f"  images with a false alarm {result.get('images_with_false_alarm', '?')}"]
    lines += [f"  {k} undefined: {why}" for k, why in (result.get("undefined") or {}).items()]
    return "\n".join(lines)


def summary_view(result: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json`` without its lists, for the report's table and the CLI's print: the HSE parts as
    ``hse_s_pix``, ``hse_s_tgt``, ``hse_fa_ref`` and the curve grid as ``hse_thresholds`` text."""
    table = {k: v for k, v in result.items() if k not in ("hse_detail", "thresholds", "sets")}
    if "sets" in result:
        table["sets"] = {name: summary_view(m) for name, m in result["sets"].items()}
    detail = result.get("hse_detail") or {}
    for k in ("s_pix", "s_tgt", "fa_ref"):
        if k in detail:
            table[f"hse_{k}"] = detail[k]
    thresholds = result.get("thresholds") or []
    if thresholds:
        table["hse_thresholds"] = f"{thresholds[0]:g}..{thresholds[-1]:g} ({len(thresholds)})"
    return table

"""Image clusters of semantic-prior KD, fitted on training images only and assigned to any other image.

The released recipe (``utils/generate_cluster_csv.py`` of yuanhang-yao/semantic-prior, MIT), on the 55
statistics of :mod:`irfoundry.data.image_stats`:

1. missing values -> the column's median; drop columns of variance <= 1e-10, then of every pair with
   |Pearson r| >= 0.95 (strongest pairs first) the column of lower variance;
2. standardise (``StandardScaler``); PCA to 90 % of the variance, clamped to 2..20 components
   (``random_state=1``); KMeans (k = 256, ``random_state=1``, ``n_init=1``, ``max_iter=300``);
3. rank the filtered standardised columns by their mutual information with those clusters
   (``mutual_info_classif``, ``random_state=1``, + 1e-6 x the ANOVA F value as a tie-break), keep the top
   32, and run 1-2 again on them alone: the final cluster ids.

The reference fits all of this on every image of SIRST3, test images included. Here :func:`fit_clusters`
sees the training images only; :class:`ClusterModel` keeps every fitted piece (medians, kept columns, the
scaler, the PCA, the centres) as plain arrays (JSON, no pickles) and assigns any image to the nearest centre
in that space (:meth:`ClusterModel.assign`): validation and test images never influence the clusters.
``k`` must not exceed the number of training images (the reference's 256 suits SIRST3's 1402; a small
dataset needs a smaller ``k``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from irfoundry.errors import ConfigError, DataError

__all__ = ["ClusterModel", "ClusterSettings", "fit_clusters", "statistics_table"]

LOW_VARIANCE = 1e-10


@dataclass(frozen=True)
class ClusterSettings:
    """The recipe's constants (defaults: the released values)."""

    k: int = 256
    correlation: float = 0.95
    pca_variance: float = 0.9
    pca_min: int = 2
    pca_max: int = 20
    top_features: int = 32
    seed: int = 1


def _fill_missing(x: np.ndarray, medians: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 copy of ``x`` (the reference's precision) with non-finite values -> the column medians."""
    x = np.array(x, dtype=np.float32)
    if medians is None:
        with np.errstate(all="ignore"):
            medians = np.nanmedian(x, axis=0) if np.isnan(x).any() else np.median(x, axis=0)
        medians = np.nan_to_num(medians).astype(np.float32)
    rows, cols = np.nonzero(~np.isfinite(x))
    x[rows, cols] = medians[cols]
    return x, medians


def _filter_columns(x: np.ndarray, correlation: float) -> np.ndarray:
    """Indices of the columns kept: variance above :data:`LOW_VARIANCE`, one of each highly correlated pair."""
    var = x.var(axis=0)
    kept = np.flatnonzero(var > LOW_VARIANCE)
    if kept.size <= 1:
        return kept
    with np.errstate(all="ignore"):
        corr = np.nan_to_num(np.corrcoef(x[:, kept], rowvar=False))
    i, j = np.triu_indices(kept.size, k=1)
    strong = np.abs(corr[i, j]) >= correlation
    order = np.argsort(-np.abs(corr[i, j])[strong], kind="stable")
    keep = np.ones(kept.size, dtype=bool)
    for a, b in zip(i[strong][order], j[strong][order]):
        if keep[a] and keep[b]:
            keep[b if var[kept[a]] >= var[kept[b]] else a] = False
    return kept[keep]


@dataclass
class ClusterModel:
    """Everything fitted on the training images, as arrays; :meth:`assign` places any image.

    ``columns``: the statistics used (names); ``medians``: their fill values; ``scale_mean`` / ``scale_std``:
    the standardisation; ``pca_mean`` / ``pca_components``: the projection (``n_components x columns``);
    ``centres``: ``k x n_components``; ``train_ids`` / ``train_labels``: the fitted images and their clusters.
    """

    columns: list[str]
    medians: np.ndarray
    scale_mean: np.ndarray
    scale_std: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray
    centres: np.ndarray
    train_ids: list[str]
    train_labels: np.ndarray
    settings: ClusterSettings

    @property
    def k(self) -> int:
        return int(self.centres.shape[0])

    def embed(self, table: dict[str, np.ndarray] | np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """Statistics (``n x len(names)``, or a dict name -> column) -> the PCA space (``n x components``)."""
        if isinstance(table, dict):
            x = np.stack([np.asarray(table[c], dtype=np.float64) for c in self.columns], axis=1)
        else:
            names = list(names or [])
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise DataError(f"image statistics lack the clustering columns {missing}")
            x = np.asarray(table, dtype=np.float64)[:, [names.index(c) for c in self.columns]]
        x, _ = _fill_missing(x, self.medians.astype(np.float32))
        z = np.nan_to_num((x.astype(np.float64) - self.scale_mean) / self.scale_std)
        return (z - self.pca_mean) @ self.pca_components.T

    def assign(self, table, names: Sequence[str] | None = None) -> np.ndarray:
        """The nearest centre's index of every row (``n`` ints)."""
        e = self.embed(table, names)
        d = ((e[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return d.argmin(axis=1)

    def to_json(self) -> dict:
        return {"format": "irfoundry.clusters/1", "settings": self.settings.__dict__, "columns": self.columns,
                **{k: getattr(self, k).tolist() for k in ("medians", "scale_mean", "scale_std", "pca_mean",
                                                          "pca_components", "centres", "train_labels")},
                "train_ids": self.train_ids}

    def save(self, path: str | Path) -> Path:
        from irfoundry.jsonio import write_json

        return write_json(self.to_json(), path)

    @classmethod
    def load(cls, path: str | Path) -> "ClusterModel":
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != "irfoundry.clusters/1":
                raise ValueError(f"format {doc.get('format')!r}")
            arrays = {k: np.asarray(doc[k], dtype=np.int64 if k == "train_labels" else np.float64)
                      for k in ("medians", "scale_mean", "scale_std", "pca_mean", "pca_components", "centres",
                                "train_labels")}
            return cls(columns=list(doc["columns"]), train_ids=list(doc["train_ids"]),
                       settings=ClusterSettings(**doc["settings"]), **arrays)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read clusters file {path} ({exc}); write it with 'irfoundry data clusters'") from None


def _fit_stage(x: np.ndarray, names: list[str], s: ClusterSettings) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, medians = _fill_missing(x)
    kept = _filter_columns(x, s.correlation)
    x = x[:, kept]
    scaler = StandardScaler().fit(x)
    z = np.nan_to_num(scaler.transform(x))
    cum = np.cumsum(PCA(random_state=s.seed).fit(z).explained_variance_ratio_)
    n = min(max(s.pca_min, int(np.searchsorted(cum, s.pca_variance) + 1)), s.pca_max, z.shape[1], z.shape[0])
    pca = PCA(n_components=n, random_state=s.seed).fit(z)
    embedded = pca.transform(z)
    km = KMeans(n_clusters=s.k, random_state=s.seed, n_init=1, max_iter=300).fit(embedded)
    return {"columns": [names[i] for i in kept], "medians": medians[kept], "z": z, "scaler": scaler, "pca": pca,
            "kmeans": km}


def fit_clusters(ids: Sequence[str], table: np.ndarray, names: Sequence[str],
                 settings: ClusterSettings = ClusterSettings()) -> ClusterModel:
    """Fit the two-stage recipe on training images: ``table`` is ``n x len(names)`` statistics of ``ids``."""
    from sklearn.feature_selection import f_classif, mutual_info_classif

    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2 or x.shape != (len(ids), len(names)):
        raise DataError(f"statistics table of shape {x.shape} for {len(ids)} images and {len(names)} columns")
    if not 1 <= settings.k <= len(ids):
        raise ConfigError(f"clusters: k = {settings.k} needs at least as many training images, got {len(ids)}; "
                          f"choose k <= {len(ids)} (--k)")
    first = _fit_stage(x, list(names), settings)
    z, labels = first["z"], first["kmeans"].labels_
    scores = np.full(z.shape[1], -np.inf)
    valid = z.var(axis=0) > LOW_VARIANCE
    if valid.any() and len(np.unique(labels)) > 1:
        with np.errstate(all="ignore"):
            f_values = np.nan_to_num(f_classif(z[:, valid], labels)[0], nan=0.0, posinf=0.0, neginf=0.0)
        mi = mutual_info_classif(z[:, valid], labels, random_state=settings.seed)
        scores[valid] = np.nan_to_num(mi) + 1e-6 * f_values
    top = [first["columns"][i] for i in np.argsort(-scores, kind="stable")[: settings.top_features]]
    second = _fit_stage(x[:, [list(names).index(c) for c in top]], top, settings)
    scaler, pca = second["scaler"], second["pca"]
    return ClusterModel(columns=second["columns"], medians=second["medians"], scale_mean=scaler.mean_,
                        scale_std=scaler.scale_, pca_mean=pca.mean_, pca_components=pca.components_,
                        centres=second["kmeans"].cluster_centers_, train_ids=list(ids),
                        train_labels=second["kmeans"].labels_.astype(np.int64), settings=settings)


def statistics_table(samples: Sequence) -> tuple[list[str], np.ndarray]:
    """``(ids, n x 55 float32 table)`` of :func:`irfoundry.data.image_stats.image_statistics` over dataset
    samples (anything with ``id`` and ``image`` path); an unreadable image is a :class:`DataError` naming it."""
    from irfoundry.data.image_stats import FEATURE_NAMES, image_statistics
    from irfoundry.data.io import read_image

    ids, rows = [], []
    for sample in samples:
        stats = image_statistics(read_image(sample.image))
        ids.append(sample.id)
        rows.append([stats[k] for k in FEATURE_NAMES])
    if not rows:
        raise DataError("no images to compute statistics of (empty split)")
    return ids, np.asarray(rows, dtype=np.float32)

"""The 55 grey-level statistics per image that semantic-prior KD clusters its training images by
(arXiv 2605.14346; code yuanhang-yao/semantic-prior ``utils/generate_cluster_csv.py``, MIT).

Computed on the 8-bit grey image (``float`` images in [0, 1] are rounded to 8 bits first, as the
reference reads PNGs with OpenCV): size, mean, std, dynamic range, RMS contrast, histogram entropy;
Laplacian variance, Tenengrad, gradient mean / std / orientation entropy (36 magnitude-weighted bins);
auto-Canny edge density (thresholds 0.66 / 1.33 x the median), Shi-Tomasi corner density and 3 x 3 peak
density above mean + std (per megapixel); GLCM contrast / homogeneity / energy / correlation (32 levels,
distances 1 / 2 / 4, four angles, symmetric, normalised, averaged) and entropy; local contrast (|G_1.5 -
G_7|); radial power spectrum log-slope (middle 80 % of frequencies) and high-frequency ratio (f >= 0.3);
noise sigma (1.4826 MAD of the residual to G_1.2), illumination non-uniformity (std of G_21 / dynamic
range); tail ratios (p95 / p99 - p50 over the robust std), skewness, excess kurtosis, p05 / p25 / p75,
Gini; edge anisotropy, mean gradient on the edge band; uniform LBP (8, 1) entropy / uniformity / largest
bin / non-empty bins; Gabor energy mean / std / orientation anisotropy (21 x 21, sigma 2, wavelengths 4 / 8,
four orientations, aspect 0.5); spectral centroid / bandwidth / flatness; box-counting fractal dimension of
the edges; MSCN mean / variance / kurtosis / horizontal pair product; multi-scale variance slope and
ratio (sigmas 1 / 2 / 4 / 8); Otsu threshold, foreground ratio, between-class variance.

The constants are the released code's; the numerics are library calls: OpenCV for the filters, Canny,
corners and Otsu (as the reference), scikit-image for GLCM and LBP. Needs the ``pointsup`` extra (OpenCV).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["FEATURE_NAMES", "image_statistics"]

EPS = 1e-8


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        from irfoundry.errors import ConfigError

        raise ConfigError(f"image statistics need OpenCV ({exc}): pip install 'irfoundry[pointsup]'") from None
    return cv2


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _fit_slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def _radial_spectrum(img01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean power per integer radius of the centred 2-D spectrum, from radius 2; frequency = radius /
    (max side / 2)."""
    power = np.abs(np.fft.fftshift(np.fft.fft2(img01))) ** 2
    h, w = power.shape
    yy, xx = np.ogrid[:h, :w]
    r = np.sqrt((yy - h // 2) ** 2 + (xx - w // 2) ** 2).astype(np.int64).ravel()
    radial = np.bincount(r, power.ravel()) / (np.bincount(r) + EPS)
    freq = np.arange(radial.size) / (max(h, w) / 2.0 + EPS)
    return freq[2:], radial[2:]


def _gini(x: np.ndarray) -> float:
    x = np.sort(x.astype(np.float64).ravel() - x.min())
    total = x.sum()
    if total <= EPS:
        return 0.0
    n = x.size
    return float(2.0 * (np.arange(1, n + 1) * x).sum() / (n * total) - (n + 1.0) / n)


def _box_counting_dimension(edges: np.ndarray) -> float:
    h, w = edges.shape
    top = int(np.floor(np.log2(min(h, w)))) if min(h, w) > 0 else 1
    sizes = [2**k for k in range(1, top)]
    if len(sizes) < 2:
        return 0.0
    counts = []
    for s in sizes:
        blocks = edges[: h // s * s, : w // s * s].reshape(h // s, s, w // s, s)
        counts.append(int((blocks.max(axis=(1, 3)) > 0).sum()))
    return _fit_slope(np.log(1.0 / np.asarray(sizes, float)), np.log(np.asarray(counts, float) + EPS))


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """The 55 statistics (:data:`FEATURE_NAMES`, in that order) of one grey image (``H x W``, uint8, or float
    in [0, 1])."""
    cv2 = _cv2()
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    img = np.asarray(image)
    u8 = img if img.dtype == np.uint8 else np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    u8 = np.ascontiguousarray(u8)
    f = u8.astype(np.float32)
    h, w = u8.shape
    npix = float(h * w)
    mean, std = float(f.mean()), float(f.std())
    dyn = float(f.max() - f.min())
    hist = np.bincount(u8.ravel(), minlength=256).astype(np.float64)
    s = {"image_width": float(w), "image_height": float(h), "mean": mean, "std": std, "dynamic_range": dyn,
         "rms_contrast": std / (mean + EPS), "entropy_global": _entropy(hist / (hist.sum() + EPS))}

    gx, gy = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx**2 + gy**2)
    angle = (np.arctan2(gy, gx) + np.pi) % (2 * np.pi)
    ohist, _ = np.histogram(angle.ravel(), bins=36, range=(0, 2 * np.pi), weights=mag.ravel())
    s.update(laplacian_var=float(cv2.Laplacian(u8, cv2.CV_64F).var()), tenengrad=float((mag**2).mean()),
             grad_mean=float(mag.mean()), grad_std=float(mag.std()),
             grad_orient_entropy=_entropy(ohist / (ohist.sum() + EPS)))

    med = np.median(u8)
    edges = cv2.Canny(u8, int(max(0, 0.66 * med)), int(min(255, 1.33 * med))) > 0
    corners = cv2.goodFeaturesToTrack(u8, maxCorners=1000, qualityLevel=0.01, minDistance=3)
    peaks = int(((u8 == cv2.dilate(u8, np.ones((3, 3), np.uint8))) & (u8 >= mean + std)).sum())
    per_mpix = 1e6 / (npix + EPS)
    s.update(edge_density=float(edges.sum() / (npix + EPS)),
             corner_density_Mpix=float((0 if corners is None else len(corners)) * per_mpix),
             peak_density_Mpix=float(peaks * per_mpix))

    q = (u8.astype(np.float32) / 255.0 * 31).astype(np.uint8)
    glcm = graycomatrix(q, distances=[1, 2, 4], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32,
                        symmetric=True, normed=True)
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        s[f"glcm_{prop}"] = float(graycoprops(glcm, prop).mean())
    p = glcm / (glcm.sum() + EPS)
    s["glcm_entropy"] = float(-(p * np.log(p + EPS)).sum())
    s["local_contrast_mean"] = float(np.abs(cv2.GaussianBlur(f, (0, 0), 1.5) - cv2.GaussianBlur(f, (0, 0), 7.0)).mean())

    freq, radial = _radial_spectrum(f / 255.0)
    lo, hi = int(0.1 * len(freq)), int(0.9 * len(freq))
    slope = _fit_slope(np.log(freq[lo:hi] + EPS), np.log(radial[lo:hi] + EPS)) if hi > lo + 5 else 0.0
    s.update(psd_log_slope=slope, psd_hf_ratio=float((radial[freq >= 0.3].sum() + EPS) / (radial.sum() + EPS)))

    residual = f - cv2.GaussianBlur(f, (0, 0), 1.2)
    s.update(noise_sigma=float(1.4826 * np.median(np.abs(residual - np.median(residual)))),
             illum_nonuniform=float(cv2.GaussianBlur(f, (0, 0), 21.0).std() / (dyn + EPS)))

    p05, p25, p50, p75, p95, p99 = (float(v) for v in np.percentile(f, [5, 25, 50, 75, 95, 99]))
    robust = float(1.4826 * np.median(np.abs(f - p50)) + EPS)
    z = (f - mean) / (std + EPS)
    s.update(p95_minus_p50_over_robuststd=(p95 - p50) / (robust + EPS),
             p99_minus_p50_over_robuststd=(p99 - p50) / (robust + EPS), skewness=float((z**3).mean()),
             kurtosis=float((z**4).mean()) - 3.0, p05=p05, p25=p25, p75=p75, gini_intensity=_gini(f))

    ex, ey = float(np.abs(gx).sum()), float(np.abs(gy).sum())
    e8 = edges.astype(np.uint8)
    k3 = np.ones((3, 3), np.uint8)
    band = (cv2.dilate(e8, k3) - cv2.erode(e8, k3)) > 0
    s.update(edge_anisotropy=abs(ex - ey) / (ex + ey + EPS), edge_band_grad_mean=float(mag[band].mean() if band.any() else 0.0))

    lbp = local_binary_pattern(u8, P=8, R=1.0, method="uniform")
    lhist, _ = np.histogram(lbp.ravel(), bins=10, range=(0, 10), density=True)
    s.update(lbp_entropy=_entropy(lhist), lbp_uniformity=float((lhist**2).sum()), lbp_maxbin=float(lhist.max()),
             lbp_nonzero_bins=float((lhist > 0).sum()))

    energies = np.array([[float(np.abs(cv2.filter2D(f, cv2.CV_32F, cv2.getGaborKernel((21, 21), 2.0, theta, lam, 0.5, 0,
                                                                                         ktype=cv2.CV_32F))).mean())
                          for lam in (4.0, 8.0)] for theta in (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)], np.float32)
    per_orientation = energies.sum(axis=1)
    s.update(gabor_energy_mean=float(energies.mean()), gabor_energy_std=float(energies.std()),
             gabor_anisotropy=float((per_orientation.max() - per_orientation.min())
                                    / (per_orientation.max() + per_orientation.min() + EPS)))

    pw = np.clip(radial.astype(np.float64), EPS, None)
    fr = np.clip(freq.astype(np.float64), EPS, None)
    centroid = float((fr * pw).sum() / (pw.sum() + EPS))
    s.update(psd_centroid=centroid, psd_bandwidth=float(np.sqrt(((fr - centroid) ** 2 * pw).sum() / (pw.sum() + EPS))),
             psd_flatness=float(np.exp(np.log(pw).mean()) / (pw.mean() + EPS)))
    s["fractal_dim_edges"] = _box_counting_dimension(e8)

    mu = cv2.GaussianBlur(f, (0, 0), 7 / 6)
    var = np.clip(cv2.GaussianBlur(f * f, (0, 0), 7 / 6) - mu * mu, 0, None)
    mscn = (f - mu) / (np.sqrt(var) + 1.0)
    mvar = float(mscn.var())
    s.update(mscn_mean=float(mscn.mean()), mscn_var=mvar,
             mscn_kurtosis=float(ndimage.uniform_filter(mscn**4, size=7).mean() / (mvar + EPS) ** 2 - 3.0),
             mscn_pair_h=float((mscn[:, :-1] * mscn[:, 1:]).mean()))

    sigmas = np.array([1.0, 2.0, 4.0, 8.0])
    variances = np.array([float(cv2.GaussianBlur(f, (0, 0), sg).var()) for sg in sigmas])
    s.update(ms_var_slope=_fit_slope(np.log(sigmas + EPS), np.log(variances + EPS)),
             ms_var_ratio_s1_over_sN=float((variances[0] + EPS) / (variances[-1] + EPS)))

    thresh, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_OTSU)
    pr = hist / (hist.sum() + EPS)
    omega, mu_c = np.cumsum(pr), np.cumsum(pr * np.arange(256))
    s.update(otsu_thresh=float(thresh), otsu_fg_ratio=float((u8 >= thresh).mean()),
             otsu_between_var=float(np.max((mu_c[-1] * omega - mu_c) ** 2 / (omega * (1 - omega) + EPS))))
    return {k: s[k] for k in FEATURE_NAMES}


FEATURE_NAMES = (
    "image_width", "image_height", "mean", "std", "dynamic_range", "rms_contrast", "entropy_global",
    "laplacian_var", "tenengrad", "grad_mean", "grad_std", "grad_orient_entropy",
    "edge_density", "corner_density_Mpix", "peak_density_Mpix",
    "glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation", "glcm_entropy",
    "local_contrast_mean", "psd_log_slope", "psd_hf_ratio", "noise_sigma", "illum_nonuniform",
    "p95_minus_p50_over_robuststd", "p99_minus_p50_over_robuststd", "skewness", "kurtosis", "p05", "p25", "p75",
    "gini_intensity", "edge_anisotropy", "edge_band_grad_mean",
    "lbp_entropy", "lbp_uniformity", "lbp_maxbin", "lbp_nonzero_bins",
    "gabor_energy_mean", "gabor_energy_std", "gabor_anisotropy",
    "psd_centroid", "psd_bandwidth", "psd_flatness", "fractal_dim_edges",
    "mscn_mean", "mscn_var", "mscn_kurtosis", "mscn_pair_h", "ms_var_slope", "ms_var_ratio_s1_over_sN",
    "otsu_thresh", "otsu_fg_ratio", "otsu_between_var",
)
"""The statistics' names, in the released code's column order."""

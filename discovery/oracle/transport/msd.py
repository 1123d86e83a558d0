"""Self-diffusivity from unwrapped trajectories: mean squared displacement (MSD) and its linear fit.

Pure numpy (plus scipy's Student t quantile); no MD engine. Protocol (science.md section 3):

- MSD(t) averaged over molecules and over every time origin (the FFT algorithm, O(n log n) per molecule);
- optionally the centre-of-mass drift of the molecules removed first;
- D = slope / 6 of a straight-line fit over the diffusive window only: the ballistic start (MSD ~ t^2) is
  skipped and the window stops at ``end_fraction`` (default 30 %) of the run, where the number of
  independent time origins is still large;
- the log-log slope over the same window must be ~1, and the molecules must have moved far enough
  (``length_scale_A``), otherwise the run never became diffusive and the value is censored
  (``converged`` False, ``reason`` says why);
- 95 % interval: the wider of two estimates, one with the molecules as independent units, one with
  time blocks of the run (each analysed with the same window); either alone when the other is not
  possible (too few molecules, or a run too short for blocks).

Units: positions in Angstrom, times in ps; 1 A^2/ps = 1e-8 m^2/s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

A2_PER_PS_IN_M2_PER_S = 1e-8
MIN_MOLECULES_FOR_MOLECULE_ERRORS = 5
TIME_BLOCKS = 5


@dataclass(frozen=True)
class MSDFit:
    """A self-diffusivity estimate and the evidence that it is one.

    ``d_m2_s`` is the fitted value; when ``converged`` is False it is a censored number (read ``reason``)
    and ``apparent_d_m2_s`` = MSD / 6t at the end of the window, an upper bound when the motion is
    sub-diffusive (caged). ``ci95`` is the half-width of the 95 % interval, m^2/s.
    """

    d_m2_s: float
    ci95: float
    converged: bool
    reason: str
    slope: float  # log-log slope of the mean MSD over the fit window (1 = diffusive, 2 = ballistic)
    fit_window_ps: tuple[float, float]
    apparent_d_m2_s: float
    rms_displacement_A: float  # sqrt(MSD) at the end of the fit window
    error_units: str  # "molecules" or "time blocks"
    n_units: int
    drift_removed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def msd_per_molecule(positions: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """MSD over all time origins, per molecule: (n_lags, n_molecules) from (n_frames, n_molecules, 3).

    FFT algorithm: MSD(m) = S1(m) - 2 S2(m), S2 the position autocorrelation (zero-padded FFT) and S1 a
    running sum of squared positions; exact, and O(n log n) instead of O(n^2).
    """
    x = np.asarray(positions, dtype=float)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"positions must be (n_frames, n_molecules, 3), got {x.shape}")
    n = x.shape[0]
    max_lag = n - 1 if max_lag is None else min(max_lag, n - 1)
    x = x - x[0]  # translation does not change displacements; it keeps the squares well conditioned
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=size, axis=0)
    s2 = np.fft.irfft(f * f.conj(), n=size, axis=0)[:n].sum(axis=2) / (n - np.arange(n))[:, None]
    d = (x**2).sum(axis=2)  # (n, n_molecules)
    d = np.vstack([d, np.zeros((1, d.shape[1]))])
    q = 2.0 * d[:n].sum(axis=0)
    s1 = np.empty((n, x.shape[1]))
    for m in range(n):  # the classic recursion; a cumulative-sum form loses digits
        q = q - d[m - 1] - d[n - m]
        s1[m] = q / (n - m)
    return (s1 - 2.0 * s2)[: max_lag + 1]


def remove_drift(positions: np.ndarray) -> np.ndarray:
    """Positions relative to the molecules' common centre (equal weights: one species)."""
    x = np.asarray(positions, dtype=float)
    return x - (x.mean(axis=1, keepdims=True) - x[:1].mean(axis=1, keepdims=True))


def self_diffusivity(positions: np.ndarray, dt_ps: float, *, length_scale_A: float | None = None,
                     reach: float = 2.0, start_ratio: float = 0.2, start_fraction: float = 0.05,
                     end_fraction: float = 0.3, window_ps: tuple[float, float] | None = None,
                     remove_com_drift: bool = True, slope_tolerance: float = 0.2, max_rel_ci: float = 0.5) -> MSDFit:
    """D from unwrapped centre-of-mass positions (n_frames, n_molecules, 3) in A sampled every ``dt_ps``.

    Fit window, first rule that applies:
    - ``window_ps`` as given;
    - with ``length_scale_A`` (e.g. the unit cell's smallest width): it ends where the rms displacement
      reaches ``reach`` x ``length_scale_A`` (the molecules have crossed the pore structure a few times)
      and starts at ``start_ratio`` x its end. A window fixed in physical time, not in fractions of the
      run, is what lets longer runs converge: the variance of the slope grows with window / run length;
    - otherwise [``start_fraction``, ``end_fraction``] x the run length.
    It never ends after ``end_fraction`` of the run (few independent time origins beyond that).

    Converged only when the log-log slope is within ``slope_tolerance`` of 1, the rms displacement at the
    window's end reaches ``length_scale_A`` (the molecule has left its cage) and the 95 % half-width is at
    most ``max_rel_ci`` of the value.
    """
    x = np.asarray(positions, dtype=float)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] < 8 or not np.all(np.isfinite(x)):
        raise ValueError(f"need finite positions (n_frames >= 8, n_molecules, 3), got shape {x.shape}")
    if dt_ps <= 0:
        raise ValueError("dt_ps must be positive")
    n_frames, n_mol, _ = x.shape
    if remove_com_drift:
        if n_mol < 2:
            raise ValueError("drift removal needs at least 2 molecules")
        x = remove_drift(x)
    last = max(1, int(end_fraction * (n_frames - 1)))
    msd_all = msd_per_molecule(x, last)  # (lags, molecules)
    lo, hi = _window(msd_all.mean(axis=1), dt_ps, n_frames, length_scale_A, reach, start_ratio, start_fraction,
                     end_fraction, window_ps)
    t = np.arange(lo, hi + 1) * dt_ps

    # The value uses all the data (the mean of per-molecule slopes is the slope of the mean MSD). Its error
    # takes the wider of two estimates: molecules as units miss what moves them together (the shared
    # thermostat, guest-guest collisions; repeated IRMOF-1 runs scattered ~2x more than they predict), time
    # blocks catch that but are few; with too few of either, the other is used alone.
    d = float(_ols_slopes(t, msd_all[lo: hi + 1].mean(axis=1)[:, None])[0] / 6.0)  # A^2/ps
    block = n_frames // TIME_BLOCKS
    estimates = []
    if block - 1 >= hi:
        per_block = np.stack([msd_per_molecule(x[b * block:(b + 1) * block], hi)[lo: hi + 1].mean(axis=1)
                              for b in range(TIME_BLOCKS)], axis=1)
        estimates.append(("time blocks", _ols_slopes(t, per_block) / 6.0))
    if n_mol >= MIN_MOLECULES_FOR_MOLECULE_ERRORS or not estimates:
        estimates.append(("molecules", _ols_slopes(t, msd_all[lo: hi + 1]) / 6.0))
    units, d_units, ci = max(((name, slopes, _half_width(slopes)) for name, slopes in estimates), key=lambda e: e[2])
    n_units = d_units.size

    msd_mean = msd_all[lo: hi + 1].mean(axis=1)
    slope = _loglog_slope(t, msd_mean)
    rms = float(math.sqrt(max(msd_mean[-1], 0.0)))
    apparent = float(msd_mean[-1] / (6.0 * t[-1]))

    reasons = []
    if not abs(slope - 1.0) <= slope_tolerance:
        reasons.append(f"log-log slope {slope:.2f} is not ~1 (ballistic > 1, caged < 1)")
    if length_scale_A is not None and rms < length_scale_A:
        reasons.append(f"rms displacement {rms:.1f} A is below the length scale {length_scale_A:.1f} A")
    if not d > 0:
        reasons.append("non-positive slope")
    elif not ci <= max_rel_ci * d:
        reasons.append(f"95 % half-width {ci / d:.0%} of the value exceeds {max_rel_ci:.0%}")
    return MSDFit(d_m2_s=d * A2_PER_PS_IN_M2_PER_S, ci95=ci * A2_PER_PS_IN_M2_PER_S, converged=not reasons,
                  reason="; ".join(reasons) or "diffusive", slope=slope, fit_window_ps=(float(t[0]), float(t[-1])),
                  apparent_d_m2_s=apparent * A2_PER_PS_IN_M2_PER_S, rms_displacement_A=rms, error_units=units,
                  n_units=n_units, drift_removed=remove_com_drift)


MIN_WINDOW_SAMPLES = 20


def _window(msd: np.ndarray, dt_ps: float, n_frames: int, length_scale: float | None, reach: float,
            start_ratio: float, start_fraction: float, end_fraction: float,
            window_ps: tuple[float, float] | None) -> tuple[int, int]:
    """First and last lag (in samples) of the fit window; ``msd`` holds the mean MSD up to the last lag."""
    last = len(msd) - 1
    if window_ps is not None:
        lo, hi = int(round(window_ps[0] / dt_ps)), int(round(window_ps[1] / dt_ps))
        if hi > n_frames - 1:
            raise ValueError(f"fit window ends at {window_ps[1]} ps, after the run ({(n_frames - 1) * dt_ps} ps)")
    elif length_scale is not None:
        reached = np.nonzero(msd >= (reach * length_scale) ** 2)[0]
        hi = min(last, max(MIN_WINDOW_SAMPLES, int(reached[0]) if reached.size else last))
        lo = int(round(start_ratio * hi))
    else:
        lo, hi = int(round(start_fraction * (n_frames - 1))), last
    lo = max(1, lo)
    if hi - lo < 3:
        raise ValueError(f"fit window {lo * dt_ps:.3g}-{hi * dt_ps:.3g} ps holds fewer than 4 samples "
                         f"(dt = {dt_ps} ps, {n_frames} frames)")
    return lo, hi


def _half_width(values: np.ndarray) -> float:
    """95 % half-width of the mean of independent values (Student t)."""
    n = values.size
    return float(_t975(n - 1) * values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf


def _ols_slopes(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope (with intercept) of each column of y against t."""
    tc = t - t.mean()
    return tc @ (y - y.mean(axis=0)) / (tc @ tc)


def _loglog_slope(t: np.ndarray, msd: np.ndarray) -> float:
    if np.any(msd <= 0):
        return float("nan")
    return float(_ols_slopes(np.log(t), np.log(msd)[:, None])[0])


def _t975(df: int) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, df))

"""Child-process entry point for Zeo++ (pyzeo): ``python -m discovery.oracle.geometry._zeo CIF JSON_SETTINGS``
(``"task": "channels"`` in the settings: the channel analysis alone).

Zeo++ prints progress to the C stdout and calls ``exit()`` on some inputs, which would end the caller's
process; it therefore only ever runs here, in a child. The result is one JSON line on the original
stdout; Zeo++'s own output goes to /dev/null.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def _parse(text: bytes) -> dict[str, float]:
    """Zeo++'s ``key: value`` output into a dict of floats."""
    tokens = text.decode(errors="replace").replace("\n", " ").split()
    out = {}
    for key, value in zip(tokens, tokens[1:]):
        if key.endswith(":"):
            try:
                out[key[:-1]] = float(value)
            except ValueError:
                pass
    return out


def analyse(cif: str, probe_radius: float, sa_samples: int, vol_samples: int, high_accuracy: bool) -> dict:
    from pyzeo.extension import AtomNetwork, high_accuracy_atomnet, surface_area, volume

    t0 = time.process_time()
    net = AtomNetwork.read_from_CIF(cif)
    if high_accuracy:
        high_accuracy_atomnet(net, "DEF")
    with tempfile.TemporaryDirectory() as tmp:
        res = os.path.join(tmp, "out.res")
        net.calculate_free_sphere_parameters(res)
        di, df, dif = (float(x) for x in open(res).read().split()[1:4])
    sa = _parse(surface_area(net, probe_radius, probe_radius, sa_samples))
    vol_probe = _parse(volume(net, probe_radius, probe_radius, vol_samples))
    vol_point = _parse(volume(net, 0.0, 0.0, vol_samples))
    return {
        "lcd": di, "pld": df, "lcd_along_path": dif, "density_g_cm3": sa["Density"],
        "asa_m2_g": sa["ASA_m^2/g"], "asa_m2_cm3": sa["ASA_m^2/cm^3"], "nasa_m2_g": sa["NASA_m^2/g"],
        "void_fraction": vol_point["AV_Volume_fraction"],
        "probe_accessible_fraction": vol_probe["AV_Volume_fraction"],
        "probe_inaccessible_fraction": vol_probe["NAV_Volume_fraction"],
        "n_channels": int(sa.get("Number_of_channels", 0)), "n_pockets": int(sa.get("Number_of_pockets", 0)),
        "cpu_s": time.process_time() - t0,
    }


def channels(cif: str, radii: list[float]) -> dict:
    """Zeo++'s channel analysis at each probe radius on one Voronoi network: how many channels (void regions
    periodic in at least one direction) a sphere of that radius travels through. No Monte Carlo areas or
    volumes: what a pore check needs, at about half the cost of ``analyse``."""
    from pyzeo.extension import AtomNetwork

    t0 = time.process_time()
    vornet = AtomNetwork.read_from_CIF(cif).perform_voronoi_decomposition()[0]  # (network, cells)
    counts = [len(vornet.find_channels(float(r))[0]) for r in radii]
    return {"radii": list(radii), "channels": counts, "cpu_s": time.process_time() - t0}


def main() -> None:
    cif, settings = sys.argv[1], json.loads(sys.argv[2])
    task = channels if settings.pop("task", "analyse") == "channels" else analyse
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # Zeo++ writes its progress to the C-level stdout
    try:
        result = task(cif, **settings)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    out.write(json.dumps(result) + "\n")
    out.flush()


if __name__ == "__main__":
    main()

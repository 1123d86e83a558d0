"""The names of what campaigns optimise and surrogates learn: log10 of what the oracle measures (K_H in
mol/kg/Pa, D in m^2/s), because these span orders of magnitude across MOFs. Defined once here."""

from __future__ import annotations

KH_CO2 = "log10_kh_co2"  # Henry coefficient of CO2 (RASPA3 Widom)
KH_N2 = "log10_kh_n2"  # Henry coefficient of N2
FLUE_CO2 = "log10_flue_co2"  # CO2 uptake from flue gas, mol/kg (GCMC)
D_CO2 = "log10_d_co2"  # CO2 self-diffusivity (MD; the transport surrogate)
SELECTIVITY = "log10_selectivity"  # K_H(CO2) / K_H(N2): derived, a difference of logs

ADSORPTION = (KH_CO2, KH_N2)  # the adsorption surrogate's outputs, in order

# the oracle level that measures each target (a campaign's funnel screens with some levels, then promotes)
LEVEL = {KH_CO2: "henry", KH_N2: "henry", FLUE_CO2: "flue_gas", D_CO2: "diffusivity"}


def measured_by(levels: tuple[str, ...] | list[str], targets: tuple[str, ...]) -> tuple[str, ...]:
    """Those of ``targets`` that the oracle ``levels`` measure (derived names by their parts)."""
    return tuple(t for t in targets if LEVEL.get(t) in levels)

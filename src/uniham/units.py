"""Physical constants (CODATA 2018) used to convert every code's units to eV and Angstrom."""

HARTREE_EV = 27.211386245988
RYDBERG_EV = HARTREE_EV / 2.0
BOHR_ANG = 0.529177210903

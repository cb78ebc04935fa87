"""CP2K and PySCF zeroth-step H0 of Si2 with the same basis text (SZV-MOLOPT-SR-GTH) and GTH-PBE: band and entry
agreement after removing the engines' constant energy-zero offset (mu S, least squares). Prints one line.

Usage: python bench/zeroth_step_engines.py   (PySCF: 2x2x2 k for its density, its automatic interpolation mesh)
"""
import time, numpy as np
from ase.build import bulk
from uniham.dft.cp2k_engine import Cp2kSettings, run_dft as cp2k
from uniham.dft.pyscf_engine import DFTSettings, run_dft as pyscf
atoms = bulk("Si", "diamond", a=5.431)
t=time.time(); hc = cp2k(atoms, Cp2kSettings(basis="SZV-MOLOPT-SR-GTH", zeroth_step=True)); tc=time.time()-t
t=time.time(); hp = pyscf(atoms, DFTSettings(basis="SZV-MOLOPT-SR-GTH", pseudo="gth-pbe", zeroth_step=True, kmesh=(2,2,2))); tp=time.time()-t
ks = np.vstack([np.zeros(3), np.random.default_rng(0).uniform(-.5,.5,(7,3))])
ec, ep = hc.eigenvalues(ks), hp.eigenvalues(ks)
n = int(hc.n_electrons//2)
d = (ep - ec)[:, :n+4]
print("cp2k s", tc, "pyscf s", tp, "shift", np.median(d), "after shift: mean", np.abs(d-np.median(d)).mean(), "max", np.abs(d-np.median(d)).max())
# entrywise after mu S
keys=[k for k in hc.H if k in hp.H]
num=sum(((hp.H[k]-hc.H[k])*hc.S[k]).sum() for k in keys); den=sum((hc.S[k]**2).sum() for k in keys)
mu=num/den
print("mu", mu, "mean |H0p - H0c - mu S|", np.mean(np.concatenate([np.abs(hp.H[k]-hc.H[k]-mu*hc.S[k]).ravel() for k in keys])), "near (<3A) max", max(np.abs(hp.H[k]-hc.H[k]-mu*hc.S[k]).max() for k in keys if np.linalg.norm(atoms.positions[k[4]]+np.asarray(k[:3])@atoms.cell.array-atoms.positions[k[3]])<3))

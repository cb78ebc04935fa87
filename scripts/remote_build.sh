#!/bin/bash
# Build one part of a database on a machine without CP2K (e.g. a borrowed GPU node's CPU cores).
#
# Needs, in the folder .cp2k/ of the repository (made on a Debian/Ubuntu machine with `apt-get install cp2k`,
# see scripts/cp2k_bundle.sh): cp2k-root.tar.xz (CP2K, its libraries, OpenMPI's plugins, the basis and
# potential files) and plan.json.gz (`uniham dataset plan RECIPE -o plan.json`, so that no structure
# source such as pymatgen is needed here). Python packages missing there travel as wheels in .whl/.
#
#   RECIPE=data/recipes/db1.toml SKIP=data/db1 PART=2/2 SECONDS_DFT=480 WORKERS=16 OUTDIR=$OUT/part \
#       bash scripts/remote_build.sh
#
# Builds the structures of part PART of the plan not already in SKIP into a fresh folder for SECONDS_DFT
# seconds, stops (killing the workers' CP2K runs in flight), packs what finished, and copies the new
# folder to OUTDIR. At home: `uniham dataset merge data/db1 OUTDIR`.
#
# A lent node receives the working tree (64 MiB at most) and data/db1 alone is larger: for the call,
# move data/db1 out of the checkout (absent tracked files do not travel) and skip from a copy of its
# manifest in an ignored folder, e.g. `mkdir -p .skip/db1 && cp data/db1/{manifest,recipe}.* .skip/db1/`,
# SKIP=.skip/db1, carry [".cp2k", ".whl", ".skip"]. Session 7: 64 structures in 500 s on 16 cores.
set -uo pipefail
: "${RECIPE:?}" "${SKIP:?}" "${PART:=2/2}" "${SECONDS_DFT:=480}" "${WORKERS:=$(nproc)}" "${OUTDIR:?}"
ROOT=/opt/cp2k
mkdir -p $ROOT && tar -C $ROOT -xJf .cp2k/cp2k-root.tar.xz || { echo "cannot unpack the CP2K bundle"; exit 2; }
MPI=$ROOT/sys/usr/lib/x86_64-linux-gnu
cat > $ROOT/cp2k <<WRAP
#!/bin/sh
# Debian's CP2K with its own libraries; an MPI singleton without orted (pmix isolated)
export LD_LIBRARY_PATH=$ROOT/lib OMPI_MCA_pmix=isolated OMPI_MCA_pml=ob1 OMPI_MCA_btl=self \\
    OMPI_MCA_mca_base_component_path=$MPI/openmpi/lib/openmpi3 \\
    PMIX_MCA_mca_base_component_path=$MPI/pmix2/lib/pmix OMPI_MCA_hwloc_base_binding_policy=none \\
    PMIX_MCA_pcompress_base_silence_warning=1
exec $ROOT/bin/cp2k.psmp "\$@"
WRAP
chmod +x $ROOT/cp2k
export UNIHAM_CP2K=$ROOT/cp2k CP2K_DATA_DIR=$ROOT/data OMP_NUM_THREADS=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
fi
export PYTHONPATH=$PWD/src:/tmp/site
gunzip -c .cp2k/plan.json.gz > /tmp/plan.json
$UNIHAM_CP2K --version > /tmp/cp2k_version.txt 2>&1 || { cat /tmp/cp2k_version.txt; echo "CP2K does not start here"; exit 2; }
head -1 /tmp/cp2k_version.txt
# one real run first: a broken bundle must fail in seconds, not after the deadline
python3 -c "
from ase.build import bulk
from uniham.dft.cp2k_engine import Cp2kSettings, run_dft
h = run_dft(bulk('Si', 'diamond', a=5.43), Cp2kSettings(basis='SZV-MOLOPT-SR-GTH', ecut=200, kmesh=(2, 2, 2)))
print('CP2K works here:', h.provenance['check_vs_cp2k_bands'])
" || exit 2
DS=/tmp/part
setsid python3 -m uniham.cli dataset build "$RECIPE" --out $DS --plan /tmp/plan.json --part "$PART" \
    --skip-from "$SKIP" --workers "$WORKERS" > /tmp/build.log 2>&1 &
PID=$!
sleep "$SECONDS_DFT"
kill -TERM -- -$PID 2>/dev/null; sleep 2; pkill -f cp2k.psmp; sleep 1
python3 -m uniham.cli dataset build "$RECIPE" --out $DS --plan /tmp/plan.json --part "$PART" --limit 0
python3 -m uniham.cli dataset info $DS
mkdir -p "$OUTDIR/shards"
cp $DS/manifest.json $DS/recipe.toml "$OUTDIR/" && cp $DS/shards/*.h5 "$OUTDIR/shards/"
tail -c 3000 /tmp/build.log > "$OUTDIR/build.log"

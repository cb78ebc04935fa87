#!/bin/bash
# Pack Debian's CP2K (apt-get install cp2k) with everything it loads into one relocatable archive, for
# machines that have no CP2K and cannot install one (scripts/remote_build.sh unpacks it to /opt/cp2k).
# glibc stays out (the target's own, same or newer, is used); OpenMPI's plugins go in, minus the
# network fabrics a one-process MPI singleton never opens (UCX, OFI, PSM, verbs, OpenSHMEM).
#
#   bash scripts/cp2k_bundle.sh .cp2k/cp2k-root.tar.xz     # ~34 MB, ~2 min of xz
set -euo pipefail
OUTFILE=${1:-.cp2k/cp2k-root.tar.xz}
EXE=$(command -v cp2k.psmp)
MA=/usr/lib/x86_64-linux-gnu
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
R=$TMP/root
mkdir -p $R/bin $R/lib $R/data $R/sys$MA $R/sys/usr/share
cp "$EXE" $R/bin/cp2k.psmp
cp /usr/share/cp2k/BASIS_MOLOPT /usr/share/cp2k/GTH_POTENTIALS $R/data/
cp -a $MA/openmpi $MA/pmix2 $R/sys$MA/
cp -a /usr/share/openmpi $R/sys/usr/share/
SKIP='ucx|ofi|psm|openib|uct|verbs|spml|sshmem|scoll|atomic|oshmem|usnic|memheap|portals'
find $R/sys$MA/openmpi -name 'mca_*.so' | grep -E "$SKIP" | xargs -r rm -f
GLIBC='libc\.so|libm\.so|libmvec\.so|ld-linux|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libutil\.so'
{ ldd "$EXE"; for f in $R/sys$MA/openmpi/lib/openmpi3/*.so $R/sys$MA/pmix2/lib/pmix/*.so; do ldd "$f"; done; } \
    | awk '/=>/ {print $3}' | grep ^/ | sort -u | grep -Ev "$GLIBC" \
    | grep -Ev 'libfabric|libuc[pstm]|libpsm|libinfinipath|libibverbs|librdmacm|libefa|liboshmem|libnl-|libnuma|common_(ucx|ofi|verbs)' \
    | xargs -I{} cp -L {} $R/lib/
mkdir -p "$(dirname "$OUTFILE")"
tar -C $R -cf - . | xz -T0 -9 > "$OUTFILE"
ls -la "$OUTFILE"

#!/usr/bin/env bash
# Install CP2K (the production DFT engine of `uniham dft`) if it is not on PATH yet.
# Debian/Ubuntu: the `cp2k` package (2023.1 on Debian 12; binary cp2k.psmp, data in /usr/share/cp2k),
# as root or through sudo, with the serial OpenBLAS: Debian's cp2k links the generic libblas.so.3 and
# liblapack.so.3, which are the slow reference libraries unless an optimized one is installed; OpenBLAS made
# database structures 1.2x faster with identical H(R) (bench/cp2k_blas.py). Serial, because uniham runs one
# single-threaded CP2K per core. Elsewhere: conda-forge (`conda install -c conda-forge cp2k`).
set -euo pipefail
if command -v cp2k.ssmp >/dev/null || command -v cp2k.psmp >/dev/null || command -v cp2k >/dev/null; then
    echo "CP2K found: $(command -v cp2k.ssmp || command -v cp2k.psmp || command -v cp2k)"
    if command -v ldd >/dev/null && ldd "$(command -v cp2k.psmp || command -v cp2k.ssmp || command -v cp2k)" 2>/dev/null \
            | grep -q "libblas.so.3" && readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null | grep -q "/blas/"; then
        echo "note: CP2K uses the reference BLAS; 'apt-get install libopenblas0-serial' makes it ~1.2x faster"
    fi
    exit 0
fi
if command -v apt-get >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cp2k libopenblas0-serial >/dev/null
elif command -v conda >/dev/null; then
    conda install -y -c conda-forge cp2k
else
    echo "install CP2K by hand (https://www.cp2k.org/download) and put it on PATH, or set UNIHAM_CP2K" >&2
    exit 1
fi
echo "CP2K installed: $(command -v cp2k.psmp || command -v cp2k.ssmp || command -v cp2k)"

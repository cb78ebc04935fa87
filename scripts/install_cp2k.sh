#!/usr/bin/env bash
# Install CP2K (the production DFT engine of `uniham dft`) if it is not on PATH yet.
# Debian/Ubuntu: the `cp2k` package (2023.1 on Debian 12; binary cp2k.psmp, data in /usr/share/cp2k),
# as root or through sudo. Elsewhere: conda-forge (`conda install -c conda-forge cp2k`).
set -euo pipefail
if command -v cp2k.ssmp >/dev/null || command -v cp2k.psmp >/dev/null || command -v cp2k >/dev/null; then
    echo "CP2K found: $(command -v cp2k.ssmp || command -v cp2k.psmp || command -v cp2k)"
    exit 0
fi
if command -v apt-get >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cp2k >/dev/null
elif command -v conda >/dev/null; then
    conda install -y -c conda-forge cp2k
else
    echo "install CP2K by hand (https://www.cp2k.org/download) and put it on PATH, or set UNIHAM_CP2K" >&2
    exit 1
fi
echo "CP2K installed: $(command -v cp2k.psmp || command -v cp2k.ssmp || command -v cp2k)"

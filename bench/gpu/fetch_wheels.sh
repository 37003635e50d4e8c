#!/usr/bin/env bash
# Run HERE (a machine with PyPI), from the repository root, before a device session: downloads the wheels the GPU
# check needs that the device image lacks (it has torch, numpy, scipy, scikit-learn, xarray, h5py, pandas,
# matplotlib, networkx, pytest, hypothesis, pyyaml, tqdm, threadpoolctl) into .whl/ (ignored by git; carried).
# The device machine runs Python 3.12 on x86-64 and reaches no network.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for pkg in h5netcdf tensorly jsonschema jsonschema-specifications referencing rpds-py nibabel zarr numcodecs \
           donfig crc32c "nilearn>=0.13,<0.14"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" \
    -d .whl "$pkg"
done
du -sh .whl

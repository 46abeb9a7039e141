#!/usr/bin/env bash
# Here, before a GPU session: the packages the device image lacks, as files that travel with the tree
# (.whl/, ignored), and the 12 real slices (.fixtures/, ignored; ../shared does not travel).
# SimpleITK's wheel alone is 53 MB (the tree may carry 64 MiB), so it travels as an xz tarball of its
# unpacked files (28 MB). About 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.fixtures/' .git/info/exclude 2>/dev/null || echo '/.fixtures/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl /tmp/sdpm_wheels
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
   --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
python3 -m pip download -q $P -d .whl pydicom==3.0.2 nibabel==5.4.2 pylibjpeg==2.1.0 pylibjpeg-rle==2.2.0
python3 -m pip download -q $P -d /tmp/sdpm_wheels SimpleITK==2.5.7
rm -rf /tmp/sdpm_sitk && mkdir /tmp/sdpm_sitk && (cd /tmp/sdpm_sitk && unzip -q /tmp/sdpm_wheels/simpleitk-2.5.7-*.whl)
tar -C /tmp/sdpm_sitk -cf - . | xz -9 -T0 > .whl/simpleitk.tar.xz
rm -rf .fixtures && mkdir -p .fixtures && cp -r ../shared/fixtures/real_ich_slices .fixtures/
du -sh .whl .fixtures

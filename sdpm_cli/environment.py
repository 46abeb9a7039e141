"""What this installation is: package versions, devices and the DICOM transfer syntaxes the ingest
decodes. Read by `sdpm info` and written into reports (the versions behind a result)."""

from __future__ import annotations

import platform

from sdpm_cli import __version__

# Transfer syntaxes the ingest decodes (through SimpleITK/GDCM); headers are read with pydicom.
TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian (retired)",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless, Non-Hierarchical (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless, First-Order Prediction (Process 14 SV1)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    v = {"sdpm": __version__, "python": platform.python_version()}
    for pkg in ("torch", "SimpleITK", "pydicom", "pylibjpeg-rle", "dicom2nifti", "highdicom", "onnxruntime", "numpy", "scipy", "typer", "rich"):
        try:
            v[pkg] = version(pkg)
        except PackageNotFoundError:
            v[pkg] = "not installed"
    return v


def devices() -> list[str]:
    import torch

    devs = [f"cpu ({torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            devs.append(f"cuda:{i} {torch.cuda.get_device_name(i)}")
    else:
        devs.append("cuda: not available")
    return devs

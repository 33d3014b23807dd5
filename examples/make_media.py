"""Makes the README's video and volume examples, offline, in the current folder:

* clip.mp4: two seconds (24 frames at 12 fps) of the sample cat panning across a grey frame;
* scan.nii.gz: a 32 x 40 x 36 volume (1 x 1 x 2 mm voxels) with a bright blob at voxel (10, 26, 20);
* net3d.pt: a checkpoint of examples/net3d.py's Net3d whose weights are set by hand so that the blob is its
  evidence for class 1 (its first channels respond to bright voxels).

Needs the video and volume extras: pip install 'camcli[video,volume]'.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from camcli.io.video import write_video

ROOT = Path(__file__).resolve().parent


def clip(path: Path) -> None:
    cat = np.asarray(Image.open(ROOT.parent / "sample_images" / "chelsea.png").convert("RGB").resize((160, 120)))
    frames = []
    for t in range(24):
        frame = np.full((120, 200, 3), 40, np.uint8)
        x = round(t * 40 / 23)
        frame[:, x : x + 160] = cat
        frames.append(frame)
    write_video(path, np.stack(frames), 12)


def scan(path: Path) -> None:
    rng = np.random.default_rng(0)
    d, h, w = np.mgrid[0:32, 0:40, 0:36]
    data = 100 + 10 * rng.standard_normal((32, 40, 36))
    data += 800 * np.exp(-((d - 10) ** 2 + (h - 26) ** 2 + (w - 20) ** 2) / (2 * 2.5**2))
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (-16, -20, -36)
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))


def net(path: Path) -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from net3d import Net3d

    torch.manual_seed(0)
    model = Net3d()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.05)  # small weights everywhere …
        conv1, conv2 = model.features[0], model.features[2]
        conv1.weight[:4].zero_()
        conv1.weight[:4, 0, 1, 1, 1] = 1.0  # … the first 4 channels pass bright voxels (above 0.6 once scaled)
        conv1.bias[:4] = -0.6
        conv2.weight[:4].zero_()
        conv2.weight[:4, :4] = 1.0 / 27  # their neighbourhood's mean
        conv2.bias[:4] = 0.0
        model.head.weight.zero_()
        model.head.weight[1, :4] = 50.0  # class 1: a bright blob
        model.head.weight[0, :4] = -50.0
        model.head.bias[:] = torch.tensor([0.5, -0.5])
    torch.save(model.state_dict(), path)


if __name__ == "__main__":
    clip(Path("clip.mp4"))
    scan(Path("scan.nii.gz"))
    net(Path("net3d.pt"))
    print("wrote clip.mp4, scan.nii.gz and net3d.pt")

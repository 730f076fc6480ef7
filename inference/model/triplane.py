"""Tri-plane feature lookup in EG3D's convention.

Why EG3D's axes exactly: the paper's network and its teacher (NeRFFaceLighting) are EG3D-based, so a tri-plane made
anywhere in that family means the same thing here. EG3D's ``generate_planes`` + ``project_onto_planes`` project a
world point (x, y, z) to the 2D coordinates (x, y), (x, z) and (z, x) on its three planes (the third is EG3D's known
quirk, eg3d issue #53; it is kept). Coordinates are scaled by 2 / box_warp into grid_sample's [-1, 1]
(align_corners=False, zero padding), and the three samples are summed (EG3D averages in its decoder; summing is the
same up to a factor the MLP absorbs).

One deliberate difference: the xy plane is read with its rows flipped (grid y = -world y), so that its top row is
the top of the head, as in the frontal crop the encoders see (image rows run down, EG3D's world y runs up). EG3D's
planes come from a generator, which does not care; ours come from a convolutional encoder, which would otherwise
have to learn a vertical flip of the whole image through its bottleneck. A plane from EG3D's generator is read here
by flipping its xy plane vertically (``torch.flip(plane, dims=[-2])``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: (first, second) world axis index per plane: grid x (width) reads the first, grid y (height) the second.
PLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (2, 0))
#: Sign applied to (grid x, grid y) per plane: the xy plane's rows run down the face (see the module docstring).
PLANE_SIGNS: tuple[tuple[float, float], ...] = ((1.0, -1.0), (1.0, 1.0), (1.0, 1.0))


def plane_coordinates(points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """World points (B, M, 3) -> grid coordinates (B * 3, 1, M, 2) for the three planes, in [-1, 1] inside the box."""
    scaled = points * (2.0 / box_warp)
    grids = [torch.stack([sa * scaled[..., a], sb * scaled[..., b]], dim=-1)
             for (a, b), (sa, sb) in zip(PLANE_AXES, PLANE_SIGNS)]
    grid = torch.stack(grids, dim=1)  # (B, 3, M, 2)
    return grid.reshape(-1, 1, points.shape[1], 2)


def sample_triplane(planes: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Sum of bilinear samples of ``planes`` (B, 3 * C, R, R) at world ``points`` (B, M, 3) -> (B, M, C)."""
    b, c3, r, _ = planes.shape
    c = c3 // 3
    grid = plane_coordinates(points, box_warp)
    sampled = F.grid_sample(planes.reshape(b * 3, c, r, r), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # (B * 3, C, 1, M)
    return sampled.reshape(b, 3, c, -1).sum(dim=1).transpose(1, 2)

"""Lighting: second-order spherical harmonics in DPR's convention, Blender lights to SH, SH estimation."""

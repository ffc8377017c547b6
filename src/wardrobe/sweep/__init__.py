"""Sweeps: a grid of params in a file in git (`spec`), each point a DVC experiment run in a
clone of its own (`trial`), scheduled by Ray on this machine or a cluster (`engine`).
`python -m wardrobe.sweep run sweeps/claims.yaml` (make sweep) runs one; docs/sweeps.md."""

"""The `Volume`: an image or label array together with its physical geometry.

Axis convention (one for the whole package)
-------------------------------------------
* ``Volume.array`` is indexed ``(Z, Y, X)`` for 3D and ``(Y, X)`` for 2D, the order napari
  displays. nibabel arrays are ``(x, y, z)``: io converts once, on read and on write.
* ``Volume.spacing`` is in millimetres per voxel, **in the same axis order as the array**.
* ``Volume.affine`` is a 4x4 matrix mapping a voxel index in *array order* ``(a0, a1, a2, 1)``
  to RAS+ world coordinates in mm (NIfTI's world). For a 2D array, index ``(a0, a1)`` is padded
  as ``(0, a0, a1)``. ``nifti_affine()`` gives the NIfTI affine (index order ``(i, j, k)``); the
  conversion is a column permutation, so a read/write round trip is bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Modalities known to the package (DICOM's Modality tag values plus "unknown").
MODALITIES = ("CT", "MR", "PT", "US", "XA", "unknown")


def _reverse_axes_matrix(ndim: int = 3) -> np.ndarray:
    """Permutation matrix P with P @ (a0, a1, a2, 1) = (a2, a1, a0, 1)."""
    p = np.zeros((4, 4))
    for r in range(ndim):
        p[r, ndim - 1 - r] = 1.0
    p[3, 3] = 1.0
    return p


def affine_from_nifti(nifti_affine: np.ndarray) -> np.ndarray:
    """Convert a NIfTI affine (index order i, j, k) to a Volume affine (array order z, y, x)."""
    return np.asarray(nifti_affine, dtype=float) @ _reverse_axes_matrix()


def affine_to_nifti(volume_affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`affine_from_nifti` (exact: a column permutation)."""
    return np.asarray(volume_affine, dtype=float) @ _reverse_axes_matrix()


def spacing_from_affine(affine: np.ndarray, ndim: int = 3) -> tuple[float, ...]:
    """Voxel spacing in mm (array axis order) = norms of the affine's first ``ndim`` columns."""
    cols = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    return tuple(float(c) for c in cols[3 - ndim :]) if ndim < 3 else tuple(float(c) for c in cols)


@dataclass
class Volume:
    """An image (or label map) with voxel spacing, affine and provenance.

    Parameters
    ----------
    array : np.ndarray
        Voxel data, ``(Z, Y, X)`` or ``(Y, X)``.
    spacing : tuple of float
        mm per voxel, array axis order.
    affine : np.ndarray
        4x4 array-index -> RAS world (mm) matrix, see module docstring.
    modality : str
        ``"CT"``, ``"MR"``, ... or ``"unknown"``.
    metadata : dict
        Source information (path, format, DICOM series UID/description, warnings ...).
        Must stay JSON-serialisable (napari keeps it in ``layer.metadata``).
    name : str
        Short display name (file stem or series description).
    """

    array: np.ndarray
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    modality: str = "unknown"
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = "volume"

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim not in (2, 3):
            raise ValueError(
                f"A Volume must be 2D or 3D, got an array of shape {self.array.shape}. "
                "Choose one channel or time point of a multi-channel/4D image first."
            )
        if len(self.spacing) != self.array.ndim:
            if len(self.spacing) == 3 and self.array.ndim == 2:
                self.spacing = tuple(self.spacing[1:])
            else:
                raise ValueError(
                    f"spacing {self.spacing} does not match an array of {self.array.ndim} dims"
                )
        self.spacing = tuple(float(s) for s in self.spacing)
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ValueError(f"voxel spacing must be positive and finite, got {self.spacing}")
        if self.affine is None:
            aff = np.eye(4)
            sp = (1.0,) * (3 - self.array.ndim) + self.spacing
            aff[:3, :3] = np.diag(sp)
            self.affine = aff
        self.affine = np.asarray(self.affine, dtype=float)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def origin(self) -> tuple[float, ...]:
        """World position (mm) of voxel index 0."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def has_orientation(self) -> bool:
        """True when the affine comes from a file that states the patient orientation.

        DICOM series and NIfTI files with a non-zero ``sform_code`` or ``qform_code`` do;
        arrays from elsewhere (a plain numpy array, a layer from another reader) get an
        axis-aligned placeholder affine that says nothing about left and right.
        """
        meta = self.metadata or {}
        if meta.get("format") == "dicom":
            return True
        if meta.get("format") == "nifti":
            return int(meta.get("sform_code") or 0) > 0 or int(meta.get("qform_code") or 0) > 0
        return False

    def nifti_affine(self) -> np.ndarray:
        """The NIfTI affine (index order i, j, k = x, y, z)."""
        return affine_to_nifti(self.affine)

    def napari_geometry(self) -> dict[str, Any]:
        """``scale``/``translate`` for a napari layer showing this volume, in array axis order.

        napari draws the array axis-aligned; scale is the spacing and translate the world
        position of voxel 0 projected on each array axis direction, so overlays of volumes
        that share a grid line up and distances read in mm.
        """
        ndim = self.ndim
        offset = 3 - ndim
        directions = self.affine[:3, offset:3] / np.asarray(self.spacing)
        translate = directions.T @ self.affine[:3, 3]
        return {"scale": tuple(self.spacing), "translate": tuple(float(t) for t in translate)}

    def geometry_metadata(self) -> dict[str, Any]:
        """JSON-serialisable geometry to keep in ``layer.metadata['medseg']``."""
        return {
            "spacing": list(self.spacing),
            "affine": self.affine.tolist(),
            "shape": list(self.shape),
            "modality": self.modality,
            "source": {k: v for k, v in self.metadata.items() if _jsonable(v)},
            "name": self.name,
        }

    @classmethod
    def from_geometry_metadata(cls, array: np.ndarray, meta: dict[str, Any]) -> Volume:
        """Rebuild a Volume from an array plus :meth:`geometry_metadata` output."""
        return cls(
            array=array,
            spacing=tuple(meta["spacing"]),
            affine=np.asarray(meta["affine"], dtype=float),
            modality=meta.get("modality", "unknown"),
            metadata=dict(meta.get("source", {})),
            name=meta.get("name", "volume"),
        )

    def with_array(self, array: np.ndarray, name: str | None = None) -> Volume:
        """Same geometry, other voxels (e.g. labels derived from this image)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from volume shape {self.shape}")
        return Volume(array, self.spacing, self.affine.copy(), self.modality,
                      dict(self.metadata), name or self.name)


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))

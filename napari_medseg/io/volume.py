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

Display convention (napari world)
---------------------------------
napari's world axes are one fixed signed permutation of patient coordinates,
:data:`NAPARI_WORLD_FROM_RAS`: world axis 0 points to the patient's feet (inferior), axis 1 to
the back (posterior), axis 2 to the patient's left, all in mm. napari draws axis 1 downward and
axis 2 rightward, so the default axial view is radiological (anterior up, patient's left on
screen right), a coronal view (``viewer.dims.order = (1, 0, 2)``) has the head up and a sagittal
one (``(2, 0, 1)``) the head up and the face left. The frame is right-handed, as napari's default
3D camera (depth axis "towards"), so 3D views are not mirrored.

:meth:`Volume.napari_geometry` places a volume whose orientation is known
(:attr:`Volume.has_orientation`) in that world with a *signed* scale (a negative scale flips an
axis) and a translate equal to the world position of voxel 0; voxels and affine stay as read.
napari slices layer axis ``i`` along world axis ``i`` only (it cannot slice a permuted or
rotated layer correctly), so:

* an axis-aligned volume whose array axes already run along world axes 0, 1, 2 (any axial
  acquisition, flipped or not) is placed exactly: two such files of the same patient overlay
  voxel for voxel wherever they come from;
* an oblique volume is shown in its nearest axis-aligned frame: the rotation is ignored for
  display (voxel 0 is placed exactly, others are off by the tilt);
* a permuted acquisition (sagittal or coronal slices in array axis 0) keeps its array order on
  screen; each axis is flipped to run toward inferior / posterior / left like the patient axis it
  is nearest, and translated to that axis' patient position. It shows upright in the default view,
  overlays files on its own voxel order, but not an axial volume of the same patient.

Volumes without orientation (plain arrays, 2D pictures) use their affine's diagonal as scale and
its last column as translate (positive spacing and origin for a placeholder affine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import numpy as np

#: Modalities known to the package (DICOM's Modality tag values plus "unknown").
MODALITIES = ("CT", "MR", "PT", "US", "XA", "unknown")

#: napari world from RAS+ patient coordinates (mm): row ``w`` is world axis ``w`` written in RAS,
#: i.e. world = (inferior, posterior, left) = (-S, -A, -R). See the module docstring.
#: Channel names of a colour picture's input channels (alpha is not an input).
RGB_CHANNEL_NAMES = ("red", "green", "blue")

NAPARI_WORLD_FROM_RAS = np.array([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])


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


def nearest_world_axes(steps: np.ndarray) -> tuple[int, ...]:
    """The world axis (0, 1 or 2) each array axis runs along most closely, one-to-one.

    Parameters
    ----------
    steps : np.ndarray
        ``(3, n)`` world displacement (mm) of one voxel step along each of ``n <= 3`` array
        axes (columns).

    Returns
    -------
    tuple of int
        ``n`` distinct world axes maximising the summed absolute direction cosines; among equal
        candidates the array order (identity) wins.

    Examples
    --------
    >>> nearest_world_axes(np.array([[0.0, 0, 2], [0, -1, 0], [3, 0, 0]]))
    (2, 1, 0)
    """
    steps = np.asarray(steps, dtype=float)
    n = steps.shape[1]
    cosines = np.abs(steps) / np.maximum(np.linalg.norm(steps, axis=0), 1e-12)
    default = tuple(range(3 - n, 3))
    best, best_score = default, sum(cosines[w, a] for a, w in enumerate(default))
    for candidate in permutations(range(3), n):
        score = sum(cosines[w, a] for a, w in enumerate(candidate))
        if score > best_score + 1e-9:
            best, best_score = candidate, score
    return tuple(int(w) for w in best)


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
    rgb : bool
        A colour picture: ``array`` is ``(Y, X, C)`` (or ``(Z, Y, X, C)``) with ``C`` = 3 (RGB)
        or 4 (RGBA), channels last as napari's RGB layers hold them. ``ndim``, ``shape`` and
        ``spacing`` then describe the spatial grid only; :meth:`channel_volumes` splits the
        picture into one greyscale Volume per colour channel, which is what training and
        prediction consume (a colour picture is 3 input channels, not a special case).
    """

    array: np.ndarray
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    modality: str = "unknown"
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = "volume"
    rgb: bool = False

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.rgb:
            if self.array.ndim not in (3, 4) or self.array.shape[-1] not in (3, 4):
                raise ValueError(
                    f"A colour Volume needs channels last (3 or 4 of them), got an array of "
                    f"shape {self.array.shape}."
                )
        elif self.array.ndim not in (2, 3):
            raise ValueError(
                f"A Volume must be 2D or 3D, got an array of shape {self.array.shape}. "
                "Choose one channel or time point of a multi-channel/4D image first."
            )
        if len(self.spacing) != self.ndim:
            if len(self.spacing) == 3 and self.ndim == 2:
                self.spacing = tuple(self.spacing[1:])
            else:
                raise ValueError(
                    f"spacing {self.spacing} does not match an array of {self.ndim} dims"
                )
        self.spacing = tuple(float(s) for s in self.spacing)
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ValueError(f"voxel spacing must be positive and finite, got {self.spacing}")
        if self.affine is None:
            aff = np.eye(4)
            sp = (1.0,) * (3 - self.ndim) + self.spacing
            aff[:3, :3] = np.diag(sp)
            self.affine = aff
        self.affine = np.asarray(self.affine, dtype=float)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def ndim(self) -> int:
        """Spatial dimensions (2 or 3); a colour channel axis is not counted."""
        return self.array.ndim - 1 if self.rgb else self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape, array order (a colour channel axis is not included)."""
        return tuple(self.array.shape[:-1] if self.rgb else self.array.shape)

    @property
    def n_channels(self) -> int:
        """Input channels the picture gives a model: 3 for RGB and RGBA (alpha dropped), else 1."""
        return 3 if self.rgb else 1

    @property
    def channel_names(self) -> list[str]:
        """Names of :meth:`channel_volumes`, as a model card records them."""
        if self.rgb:
            return list(RGB_CHANNEL_NAMES)
        return [str((self.metadata or {}).get("channel_name") or "image")]

    def channel_volumes(self) -> list[Volume]:
        """One greyscale Volume per input channel (``[self]`` for a greyscale volume).

        A colour picture gives its red, green and blue planes (views, no copy); an alpha
        channel is dropped (it says where the picture is, not what it shows).
        """
        if not self.rgb:
            return [self]
        out = []
        for c, cname in enumerate(RGB_CHANNEL_NAMES):
            meta = dict(self.metadata)
            meta["channel_name"] = cname
            out.append(Volume(self.array[..., c], self.spacing, self.affine.copy(), self.modality,
                              meta, f"{self.name} [{cname}]"))
        return out

    def is_colourless(self) -> bool:
        """Whether this is a colour picture whose red, green and blue are equal everywhere: a
        greyscale picture stored as RGB, as many ultrasound exports and screenshots are.

        Examples
        --------
        >>> grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
        >>> Volume(np.stack([grey] * 3, -1), (1.0, 1.0), rgb=True).is_colourless()
        True
        """
        if not self.rgb:
            return False
        rgb = self.array[..., :3]
        return bool(np.array_equal(rgb[..., 0], rgb[..., 1])
                    and np.array_equal(rgb[..., 0], rgb[..., 2]))

    def grey(self) -> Volume:
        """The greyscale Volume of a colourless picture (:meth:`is_colourless`); ``self`` when
        it is already greyscale.

        Raises
        ------
        ValueError
            A picture in colour (its red, green and blue differ).
        """
        if not self.rgb:
            return self
        if not self.is_colourless():
            raise ValueError(f"'{self.name}' is a colour picture (its red, green and blue differ).")
        return Volume(np.ascontiguousarray(self.array[..., 0]), self.spacing, self.affine.copy(),
                      self.modality, dict(self.metadata), self.name)

    def for_channels(self, n_channels: int) -> Volume:
        """This image as a model of ``n_channels`` input channels takes it: a greyscale picture
        stored as RGB (:meth:`is_colourless`) is one greyscale channel for a one-channel model,
        as it is in a dataset of one channel; anything else is returned unchanged."""
        if n_channels == 1 and self.is_colourless():
            return self.grey()
        return self

    @property
    def origin(self) -> tuple[float, ...]:
        """World position (mm) of voxel index 0."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def has_orientation(self) -> bool:
        """True when the affine comes from a file that states the patient orientation.

        DICOM series and NIfTI files with a non-zero ``sform_code`` or ``qform_code`` do
        (except NIfTI files this package wrote from a volume without orientation, marked
        ``metadata["orientation_unknown"]``); arrays from elsewhere (a plain numpy array, a
        layer from another reader) get an axis-aligned placeholder affine that says nothing
        about left and right. It decides the napari placement (:meth:`napari_geometry`).
        """
        meta = self.metadata or {}
        if meta.get("orientation_unknown"):
            return False  # written by us from a volume without orientation (io.nifti)
        if meta.get("orientation_known"):
            return True  # NRRD / MetaImage with a patient space (io.itk_formats)
        if meta.get("format") == "dicom":
            return True
        if meta.get("format") == "nifti":
            return int(meta.get("sform_code") or 0) > 0 or int(meta.get("qform_code") or 0) > 0
        return False

    def nifti_affine(self) -> np.ndarray:
        """The NIfTI affine (index order i, j, k = x, y, z)."""
        return affine_to_nifti(self.affine)

    def napari_geometry(self) -> dict[str, Any]:
        """``scale``/``translate`` placing this volume in napari's world, in array axis order.

        The one geometry rule of the package (module docstring, "Display convention"). With a
        known orientation, layer axis ``a`` (of the last ``ndim`` world axes) gets
        ``scale[a] = ±spacing[a]`` (negative: the axis runs against the world axis) and
        ``translate[a]`` = world position (mm) of voxel 0, so ``layer.data_to_world(index)``
        equals :data:`NAPARI_WORLD_FROM_RAS` ``@ affine @ index`` for axis-aligned volumes.
        Without orientation the affine is read as the world itself (diagonal = scale, last
        column = translate), so a layer rebuilt from its own scale/translate round-trips.

        Returns
        -------
        dict
            ``scale`` and ``translate`` (tuples of ``ndim`` floats, mm), ``world_axes`` (the
            patient world axis, 0..2, each array axis runs along) and ``aligned`` (``True``
            when layer axes coincide with those world axes: the placement is exact up to
            an oblique tilt; ``False`` for permuted acquisitions, see the module docstring).
        """
        ndim = self.ndim
        steps = self.affine[:3, 3 - ndim : 3]
        origin = self.affine[:3, 3]
        shown = tuple(range(3 - ndim, 3))  # world axes napari uses for the layer axes
        if self.has_orientation:
            steps = NAPARI_WORLD_FROM_RAS @ steps
            origin = NAPARI_WORLD_FROM_RAS @ origin
            axes = nearest_world_axes(steps)
        else:
            axes = shown
        scale = tuple(
            -s if steps[w, a] < 0 else s for a, (w, s) in enumerate(zip(axes, self.spacing,
                                                                         strict=True))
        )
        translate = tuple(float(origin[w]) for w in axes)
        return {"scale": tuple(float(s) for s in scale), "translate": translate,
                "world_axes": axes, "aligned": axes == shown}

    def geometry_metadata(self) -> dict[str, Any]:
        """JSON-serialisable geometry to keep in ``layer.metadata['medseg']``."""
        return {
            "spacing": list(self.spacing),
            "affine": self.affine.tolist(),
            "shape": list(self.shape),
            "modality": self.modality,
            "source": {k: v for k, v in self.metadata.items() if _jsonable(v)},
            "name": self.name,
            "rgb": bool(self.rgb),
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
            rgb=bool(meta.get("rgb", False)) and np.ndim(array) == len(meta["spacing"]) + 1,
        )

    def on_grid_of(self, reference: Volume, what: str = "the labels", onto: str = "the image",
                   tol: float = 1e-3) -> np.ndarray:
        """This volume's voxels in ``reference``'s voxel order, when both grids are the same
        voxels in the world (the same patient positions) stored in another axis order or
        direction: a label map saved by another tool for a DICOM series, whose rows run the
        other way. A view (axes transposed and flipped), no resampling.

        Parameters
        ----------
        reference : Volume
            The grid to express the voxels on (e.g. the image the labels were drawn on).
        what, onto : str
            What this volume and ``reference`` are, for the message.
        tol : float
            Largest mismatch of the index mapping (in voxels) that still counts as the same.

        Raises
        ------
        ValueError
            The grids are not the same voxels (other spacing, position or extent), in one line.

        Examples
        --------
        >>> flipped = np.eye(4); flipped[1, 1], flipped[1, 3] = -1.0, 2.0
        >>> labels = Volume(np.arange(12).reshape(1, 3, 4), affine=flipped)
        >>> image = Volume(np.zeros((1, 3, 4)))
        >>> labels.on_grid_of(image)[0, :, 0].tolist()
        [8, 4, 0]
        """
        if self.rgb or self.ndim != reference.ndim:  # a colour reference: its pixel grid
            raise ValueError(f"{what} is not on the same grid as {onto} ({self.ndim}D vs "
                             f"{reference.ndim}D).")
        mapping = np.linalg.solve(reference.affine, self.affine)  # own index -> reference index
        rot, shift = mapping[:3, :3], mapping[:3, 3]
        off = 3 - self.ndim  # a 2D volume's affine has a unit first axis
        axes, flips = [], []
        array = self.array
        for j in range(off, 3):
            row = rot[j]
            i = int(np.argmax(np.abs(row)))
            sign = float(np.sign(row[i]))
            ok = i >= off and abs(abs(row[i]) - 1) < tol and np.all(
                np.abs(np.delete(row, i)) < tol)
            n = array.shape[i - off] if ok else 0
            start = 0.0 if sign > 0 else n - 1.0
            if not ok or abs(shift[j] - start) > tol * max(n, 1) + tol                     or n != reference.shape[j - off]:
                raise ValueError(
                    f"{what} is not on the same grid as {onto} (spacing, position or extent "
                    f"differ: {self.shape} vs {reference.shape}); resample one onto the other "
                    "first.")
            axes.append(i - off)
            flips.append(sign < 0)
        out = array.transpose(axes)
        return out[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]

    def with_array(self, array: np.ndarray, name: str | None = None) -> Volume:
        """Same geometry, other voxels (e.g. labels derived from this image).

        ``array`` has the spatial shape (a greyscale result, e.g. labels on a colour
        picture's grid) or, for a colour picture, its full shape (another colour picture).
        """
        array = np.asarray(array)
        rgb = self.rgb and array.shape == self.array.shape
        if array.shape != self.shape and not rgb:
            raise ValueError(f"array shape {array.shape} differs from volume shape {self.shape}")
        return Volume(array, self.spacing, self.affine.copy(), self.modality,
                      dict(self.metadata), name or self.name, rgb=rgb)


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))

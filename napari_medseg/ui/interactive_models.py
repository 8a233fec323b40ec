"""Model chooser of the Interactive section: list, choose and load click-guided models.

:class:`ModelChooserMixin` holds the *Method* combo's logic of
:class:`~napari_medseg.ui.interactive_section.InteractiveSection`: listing the click-guided
models (:meth:`~ModelChooserMixin.refresh_models`), using a model folder
(:meth:`~ModelChooserMixin.use_model`, *…* browse), the chosen folder
(:meth:`~ModelChooserMixin.model_path`) and loading it (cached) in the worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog

from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui.interactive_helpers import TRAINING_FREE, TRAINING_FREE_TEXT, _guidance_of


class ModelChooserMixin:
    """Model listing and loading of :class:`InteractiveSection` (uses its ``model_combo``,
    ``model_label`` and ``_models``)."""

    model_combo: Any
    model_label: Any
    _models: dict[str, Any]

    def _on_current_model(self, path: str) -> None:
        """A project's current model changed: use it for clicks if it has click guidance."""
        try:
            self.use_model(path)
        except (ValueError, OSError):
            pass  # no guidance channels: the method stays as it is

    # ------------------------------------------------------------------ model
    def _safe_refresh_models(self) -> None:
        try:
            self.refresh_models()
        except RuntimeError:  # widget deleted
            pass

    def refresh_models(self) -> None:
        """List the click-guided models of the models folder (and the one chosen in Infer)."""
        from napari_medseg.ui._models import list_models, read_model_entry
        from napari_medseg.ui._settings import get_setting

        guidance_of = _guidance_of
        current = self.model_combo.currentData()
        entries = [e for e in list_models() if e.card is not None and guidance_of(e.card)]
        infer_choice = get_setting("infer/model", "")
        if infer_choice and Path(infer_choice).is_dir() and \
                all(str(e.path) != infer_choice for e in entries):
            entry = read_model_entry(infer_choice)
            if entry.card is not None and guidance_of(entry.card):
                entries.insert(0, entry)
        for path in list(self._extra_paths()):
            if all(str(e.path) != path for e in entries):
                entry = read_model_entry(path)
                if entry.card is not None:
                    entries.append(entry)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem(TRAINING_FREE_TEXT, TRAINING_FREE)
        for e in entries:
            self.model_combo.addItem(f"{e.name} (click-guided, {e.card.dims}D)", str(e.path))
        index = self.model_combo.findData(current) if current else -1
        if index < 0 and infer_choice:
            index = self.model_combo.findData(infer_choice)
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)
        self._update_status()

    def _extra_paths(self) -> list[str]:
        return list(getattr(self, "_extra", []))

    def use_model(self, path: str | Path) -> None:
        """Use the model folder ``path`` for clicks when its card has click guidance.

        Raises
        ------
        ValueError
            When the folder holds no readable model or one without guidance channels.
        """
        from napari_medseg.ui._models import read_model_entry

        guidance_of = _guidance_of
        entry = read_model_entry(path)
        if entry.card is None:
            raise ValueError(entry.error or f"{path} holds no model")
        if not guidance_of(entry.card):
            raise ValueError(f"The model '{entry.name}' has no click guidance channels; clicks "
                             "keep using the training-free method.")
        self._extra = [*self._extra_paths(), str(entry.path)]
        self.refresh_models()
        self.model_combo.setCurrentIndex(self.model_combo.findData(str(entry.path)))

    @catch_errors("Click model")
    def _on_browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Click-guided model folder")
        if folder:
            self.use_model(folder)

    def model_path(self) -> str | None:
        """The chosen click-guided model folder, None for the training-free method."""
        return self.model_combo.currentData() or None

    def method_text(self) -> str:
        """What the clicks use now, in the status line's words."""
        path = self.model_path()
        if path is None:
            return "No click-guided model: clicks grow with the random walker."
        return f"Clicks use the click-guided model '{Path(path).name}'."

    def _update_status(self, *_: Any) -> None:
        self.model_label.setText(self.method_text())

    def _load_model(self, path: str | None) -> tuple[Any, Any]:
        """(model, card) for ``path`` (cached; runs in the worker), (None, None) without."""
        if path is None:
            return None, None
        if path not in self._models:
            from napari_medseg.inference import load_model, resolve_device
            from napari_medseg.ui._settings import get_setting

            device = resolve_device(get_setting("device", "auto"))
            self._models[path] = (*load_model(path, device=device), device)
        model, card, _device = self._models[path]
        return model, card

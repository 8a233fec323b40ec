"""The napari shell: dock widgets and layer helpers. The only package that imports napari/Qt.

Widgets only translate between napari layers and core calls (``napari_medseg.io``,
``editing``, ``metrics``, ``training``, ``inference``); no algorithm lives here.
Import widget classes from their modules (``napari_medseg.ui.load_widget`` ...), so importing
this package stays cheap.
"""

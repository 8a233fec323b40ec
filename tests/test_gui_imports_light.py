"""Opening the plugin's docks never imports torch on the GUI thread (its first import takes
seconds): models run in child processes or workers, which import it themselves."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_docks_and_the_light_interactive_helpers_do_not_import_torch():
    code = textwrap.dedent("""
        import sys
        import napari_medseg.ui.main_widget, napari_medseg.ui.annotate_widget
        import napari_medseg.ui.interactive_section, napari_medseg.ui.interactive_prompts
        import napari_medseg.ui.train_widget, napari_medseg.ui.infer_widget
        import napari_medseg.ui.project_widget, napari_medseg.ui.edit_widget
        import napari_medseg.ui.evaluate_widget
        from napari_medseg.interactive.clicks import default_crop_margin
        default_crop_margin((300, 420), spacing_known=False)
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=None)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"

"""`fo.Canvas(flow)`: the flow canvas in a notebook cell.

An anywidget whose ESM is the same React canvas as the JupyterLab `.flow` editor (built from
labextension/src/widget.tsx into ``static/canvas.js``). The widget joins the file's shared room
from the browser, through the Jupyter server that serves the notebook, so edits made here, on
other canvases and by kernels (`fo.Flow` in a room) all meet in one document. The widget
itself syncs nothing through the kernel but the file's path: a cell still running does not
hold the canvas back.
"""

from __future__ import annotations

import os
from pathlib import Path

import anywidget
import traitlets

from . import collab

STATIC = Path(__file__).with_name("static")
_MISSING = """export default { render({ el }) {
  el.textContent = "The FlowOrchestrator canvas is not built: run `make install`.";
} };"""


class Canvas(anywidget.AnyWidget):
    """The collaborative canvas of a `.flow` file, sized for a cell (``height`` in pixels)."""

    # Built by the install; a checkout without the build can still import floworch (engine-only
    # machines), and the widget then says what is missing where the canvas would be.
    _esm = STATIC / "canvas.js" if (STATIC / "canvas.js").exists() else _MISSING
    _css = STATIC / "canvas.css" if (STATIC / "canvas.css").exists() else ""
    path = traitlets.Unicode(help="the file's path on the Jupyter server (its contents path)").tag(sync=True)
    height = traitlets.Int(520).tag(sync=True)

    def __init__(self, flow, height: int = 520, **kwargs):
        super().__init__(path=contents_path(flow), height=height, **kwargs)
        self.flow = flow


def contents_path(flow) -> str:
    """Where the Jupyter server serving this notebook finds the flow's file."""
    if getattr(flow, "room", None) is not None:
        return flow.room.path
    path = getattr(flow, "path", None)
    if path is None:
        raise ValueError("this flow has no file: save it with fo.Flow.new('name.flow') to show it on a canvas")
    server = collab.find_server(path)
    if server is not None and (found := server.contents_path(path)) is not None:
        return found
    # No server found from here (a remote kernel, say): paths are relative to the notebook's directory.
    return Path(os.path.relpath(Path(path).resolve(), Path.cwd())).as_posix()

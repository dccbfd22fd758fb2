"""The attention explorer: a thin ipywidgets wrapper around :func:`~msa_lib.explain.explorer.explorer_figure`.

>>> explorer = AttentionExplorer(bundle)   # a precomputed ExplanationBundle
>>> explorer.widget                          # display in Jupyter

Choosing a sample (id, language and transcript are shown), a direction (self-attention of a
modality, one cross-attention direction, ...), a layer and a head redraws the attention heat map, the
token attributions and the modality bars. The figure is a PNG in an ``ipywidgets.Image`` (CSS class
``msa-explorer-plot``), so what the browser shows is exactly what :meth:`AttentionExplorer.render`
returns.
"""
from __future__ import annotations

import html
import io

from msa_lib.explain.attention import parse_key
from msa_lib.explain.explorer import ExplanationBundle, explorer_figure
from msa_lib.explain.plots import plt

MEAN_HEAD = -1  # the head dropdown's value for "mean over heads"


def figure_png(fig, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class AttentionExplorer:
    """Sample / direction / layer / head chooser over an :class:`ExplanationBundle`."""

    def __init__(self, bundle: ExplanationBundle, index: int = 0, dpi: int = 80):
        import ipywidgets as w

        if not len(bundle):
            raise ValueError("the explanation bundle has no samples")
        self.bundle, self.dpi = bundle, dpi
        self.sample = w.Dropdown(options=bundle.options(), value=index, description="sample",
                                 layout=w.Layout(width="95%"))
        self.sample.add_class("msa-explorer-sample")
        self.direction = w.Dropdown(description="direction", layout=w.Layout(width="48%"))
        self.direction.add_class("msa-explorer-direction")
        self.layer = w.Dropdown(description="layer", layout=w.Layout(width="22%"))
        self.layer.add_class("msa-explorer-layer")
        self.head = w.Dropdown(description="head", layout=w.Layout(width="22%"))
        self.head.add_class("msa-explorer-head")
        self.info = w.HTML()
        self.info.add_class("msa-explorer-info")
        self.image = w.Image(format="png")
        self.image.add_class("msa-explorer-plot")
        self._busy = False
        self._sync_choices(keep=bundle.default_key(index))
        self.sample.observe(self._on_sample, names="value")
        self.direction.observe(self._on_direction, names="value")
        self.layer.observe(self._on_change, names="value")
        self.head.observe(self._on_change, names="value")
        self.widget = w.VBox([self.sample, self.info, w.HBox([self.direction, self.layer, self.head]), self.image])
        self.widget.add_class("msa-explorer")
        self.redraw()

    # ---- state
    @property
    def key(self) -> str:
        keys = self.bundle.directions(self.sample.value)[self.direction.value]
        return next(k.name for k in keys if k.layer == self.layer.value)

    @property
    def head_index(self) -> int | None:
        return None if self.head.value in (None, MEAN_HEAD) else int(self.head.value)

    def _sync_choices(self, keep: str | None = None) -> None:
        """Refill direction/layer/head for the current sample, keeping the selection where possible."""
        self._busy = True
        try:
            dirs = self.bundle.directions(self.sample.value)
            wanted = parse_key(keep) if keep else None
            direction = wanted.direction if wanted and wanted.direction in dirs else (
                self.direction.value if self.direction.value in dirs else next(iter(dirs)))
            self.direction.options = list(dirs)
            self.direction.value = direction
            self._sync_layers(wanted.layer if wanted else None)
        finally:
            self._busy = False

    def _sync_layers(self, layer: int | None = None) -> None:
        keys = self.bundle.directions(self.sample.value)[self.direction.value]
        layers = [k.layer for k in keys]
        current = layer if layer in layers else (self.layer.value if self.layer.value in layers else layers[-1])
        self.layer.options = [(str(n), n) for n in layers]
        self.layer.value = current
        heads = self.bundle.samples[self.sample.value].attention[self.key].shape[0]
        old = self.head.value
        self.head.options = [("mean", MEAN_HEAD)] + [(str(h), h) for h in range(heads)]
        self.head.value = old if old is not None and old < heads else MEAN_HEAD

    # ---- events
    def _on_sample(self, _change) -> None:
        self._sync_choices(keep=self.key if self.direction.value else None)
        self.redraw()

    def _on_direction(self, _change) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            self._sync_layers()
        finally:
            self._busy = False
        self.redraw()

    def _on_change(self, _change) -> None:
        if not self._busy:
            self.redraw()

    # ---- drawing
    def render(self) -> bytes:
        """PNG bytes of the current selection."""
        return figure_png(self.figure(), self.dpi)

    def figure(self):
        return explorer_figure(self.bundle, self.sample.value, self.key, self.head_index)

    def redraw(self) -> None:
        s = self.bundle.samples[self.sample.value]
        self.info.value = (f"<b>{html.escape(s.sample_id)}</b> · language <b>{html.escape(s.language)}</b> · "
                           f"label {html.escape(s.label or '—')} · prediction {html.escape(s.prediction)}<br>"
                           f"<i>{html.escape(s.transcript)}</i>")
        self.image.value = self.render()

    def _ipython_display_(self):  # lets a bare ``explorer`` at the end of a cell show the widget
        from IPython.display import display

        display(self.widget)

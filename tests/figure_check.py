"""Collisions in a drawn matplotlib figure: text on text, legends on data, captions under images.

The figure is drawn with the Agg renderer and every artist is measured where it landed, in
display coordinates (pixels), as it is saved:

- every text drawn (titles, axis labels, tick labels, offset texts, legend entries,
  annotations) against every other: no two may overlap;
- every legend's box against the plotted data of each axes under it (lines between their
  points, markers, bars, bands, error bars, scatter points) and against every text that is
  not its own;
- every text against the images of other axes (a contact sheet's caption under the next
  row's picture);
- with ``inside_figure``, every text inside the figure's edge (a figure saved without a
  tight bounding box cuts off what sticks out).

Only texts that were really drawn count: :func:`collisions` records them while the figure
draws, so a tick label matplotlib skipped (outside the axis limits) cannot raise a false
alarm.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

import numpy as np
import pytest
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection, PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.legend import Legend
from matplotlib.path import Path
from matplotlib.text import Text
from matplotlib.transforms import Bbox

# Boxes are shrunk by this many pixels before testing, so two boxes that merely touch (one
# line's descent on the next line's ascent, at a rounding pixel) do not count as overlapping.
TOLERANCE_PX = 1.0


@dataclass(frozen=True)
class _Box:
    """Where an artist was drawn: a polygon in pixels (for a rotated text, a rotated
    rectangle)."""

    artist: Artist
    corners: np.ndarray  # 4 x 2

    @property
    def bounds(self) -> np.ndarray:  # x0, y0, x1, y1
        return np.concatenate([self.corners.min(axis=0), self.corners.max(axis=0)])


def _describe(artist: Artist) -> str:
    if isinstance(artist, Text):
        return repr(artist.get_text().replace("\n", " / ")[:60])
    if isinstance(artist, Legend):
        return "the legend " + repr([t.get_text()[:30] for t in artist.get_texts()][:3])
    if isinstance(artist, AxesImage) and artist.axes is not None:
        return f"the image under {artist.axes.get_title()[:30]!r}"
    return type(artist).__name__


@contextlib.contextmanager
def _recording_texts() -> Iterator[list[Text]]:
    """Every Text that reaches the renderer while the block runs, in drawing order."""
    drawn: list[Text] = []
    original = Text.draw

    def draw(self: Text, renderer: Any) -> None:
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        original(self, renderer)

    Text.draw = draw  # type: ignore[method-assign]
    try:
        yield drawn
    finally:
        Text.draw = original  # type: ignore[method-assign]


def _corners(box: Bbox) -> np.ndarray:
    return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])


def _shrunk(corners: np.ndarray) -> np.ndarray:
    centre = corners.mean(axis=0)
    reach = np.linalg.norm(corners - centre, axis=1, keepdims=True)
    return centre + (corners - centre) * np.clip((reach - TOLERANCE_PX) / reach, 0, 1)


def _inside(box: Bbox) -> Bbox:
    t = TOLERANCE_PX
    return Bbox.from_extents(box.x0 + t, box.y0 + t, box.x1 - t, box.y1 - t)


def _text_box(text: Text, renderer: Any) -> _Box:
    """A text's outline where it was drawn. For a text rotated by other than a multiple of 90
    degrees the window extent is the upright box around the rotated rectangle, far larger
    than the glyphs (two 45-degree tick labels side by side would seem to overlap), so the
    rectangle itself is rebuilt: the size of the text set upright, the same centre, rotated."""
    extent = text.get_window_extent(renderer)
    angle = text.get_rotation() % 180
    if angle % 90 == 0:
        return _Box(text, _shrunk(_corners(extent)))
    upright = Text(text=text.get_text(), fontproperties=text.get_fontproperties())
    upright.set_linespacing(text.get_linespacing())
    upright.set_figure(text.get_figure(root=True))
    size = upright.get_window_extent(renderer)
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [size.width / 2, size.height / 2]
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.array([(extent.x0 + extent.x1) / 2, (extent.y0 + extent.y1) / 2])
    return _Box(text, _shrunk(centre + half @ rotation.T))


def _polygon(corners: np.ndarray) -> Path:
    return Path(np.vstack([corners, corners[:1]]), closed=True)


def _overlap(a: _Box, b: _Box) -> bool:
    return bool(_polygon(a.corners).intersects_path(_polygon(b.corners), filled=True))


def _overlapping_pairs(boxes: list[_Box]) -> Iterator[tuple[_Box, _Box]]:
    """Pairs whose outlines intersect; upright bounds sift the candidates first (a confusion
    matrix draws about a thousand texts)."""
    if len(boxes) < 2:
        return
    bounds = np.stack([box.bounds for box in boxes])
    x0, y0, x1, y1 = (bounds[:, i] for i in range(4))
    candidates = (
        (x0[:, None] < x1[None, :])
        & (x0[None, :] < x1[:, None])
        & (y0[:, None] < y1[None, :])
        & (y0[None, :] < y1[:, None])
    )
    for i, j in zip(*np.nonzero(np.triu(candidates, k=1)), strict=True):
        if _overlap(boxes[i], boxes[j]):
            yield boxes[i], boxes[j]


def _finite(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return xy[np.isfinite(xy).all(axis=1)]


def _any_point_in(xy: np.ndarray, region: Bbox) -> bool:
    return bool(((xy >= region.min) & (xy <= region.max)).all(axis=1).any())


def _collection_under(collection: Collection, region: Bbox) -> bool:
    if isinstance(collection, PathCollection):  # scatter: the points are the offsets
        offsets = collection.get_offset_transform().transform(collection.get_offsets())
        return _any_point_in(_finite(offsets), region)
    transform = collection.get_transform()
    filled = isinstance(collection, PolyCollection)  # a band; a LineCollection: error bars
    return any(
        transform.transform_path(path).intersects_bbox(region, filled=filled)
        for path in collection.get_paths()
    )


def _data_under(ax: Axes, region: Bbox, renderer: Any) -> list[str]:
    """What of ``ax``'s plotted data lies in ``region`` (pixels)."""
    hits = []
    for line in ax.lines:
        xy = _finite(line.get_transform().transform(line.get_xydata()))
        if not line.get_visible() or not len(xy):
            continue
        joined = line.get_linestyle() not in ("None", "none", "", " ") and len(xy) > 1
        if Path(xy).intersects_bbox(region, filled=False) if joined else _any_point_in(xy, region):
            hits.append(f"the line {line.get_label()!r}")
    for patch in ax.patches:
        if patch.get_visible() and patch.get_window_extent(renderer).overlaps(region):
            hits.append(f"a {type(patch).__name__}")
    for collection in ax.collections:
        if collection.get_visible() and _collection_under(collection, region):
            hits.append(f"a {type(collection).__name__}")
    return hits


def _legends(fig: Figure) -> list[Legend]:
    legends = list(fig.legends)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            legends.append(legend)
    return legends


def collisions(fig: Figure, *, inside_figure: bool = False) -> list[str]:
    """Every collision in ``fig`` as drawn, one readable line each; empty when it is clean."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # a bare Figure() is drawn by Agg, as savefig to PNG draws it
    with _recording_texts() as drawn:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [_text_box(text, renderer) for text in dict.fromkeys(drawn)]
    problems = [
        f"text {_describe(a.artist)} overlaps text {_describe(b.artist)}"
        for a, b in _overlapping_pairs(boxes)
    ]
    for legend in _legends(fig):
        frame = legend.get_window_extent(renderer)
        own = {*legend.get_texts(), legend.get_title()}
        outline = _Box(legend, _corners(_inside(frame)))
        problems += [
            f"{_describe(legend)} covers text {_describe(box.artist)}"
            for box in boxes
            if box.artist not in own and _overlap(outline, box)
        ]
        for ax in fig.axes:
            region = Bbox.intersection(_inside(frame), ax.bbox)
            if region is not None and region.width > 0 and region.height > 0:
                problems += [
                    f"{_describe(legend)} covers {hit} in the axes {ax.get_title()[:40]!r}"
                    for hit in _data_under(ax, region, renderer)
                ]
    for ax in fig.axes:
        for image in (image for image in ax.images if image.get_visible()):
            picture = _Box(image, _corners(_inside(image.get_window_extent(renderer))))
            problems += [
                f"{_describe(image)} covers text {_describe(box.artist)}"
                for box in boxes
                if box.artist.axes is not ax and _overlap(picture, box)
            ]
    if inside_figure:
        edge = fig.bbox
        problems += [
            f"text {_describe(box.artist)} is cut off at the figure's edge"
            for box in boxes
            if not all(edge.contains(x, y) for x, y in box.corners)
        ]
    return problems


class SavedFigures:
    """Each figure ``Figure.savefig`` was asked to write, by file name, and its collisions."""

    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}
        self.problems: dict[str, list[str]] = {}
        self._checked: dict[int, list[str]] = {}

    def record(self, fig: Figure, target: object, tight: bool) -> None:
        # write_atomic's temporary file .tmp-<pid>-curves.png becomes curves.png
        name = re.sub(r"^\.tmp-\d+-", "", FilePath(str(target)).name)
        if id(fig) not in self._checked:  # a figure's PNG and PDF: checked once
            self._checked[id(fig)] = collisions(fig, inside_figure=not tight)
        self.figures[name] = fig
        self.problems[name] = self._checked[id(fig)]

    @property
    def failures(self) -> dict[str, list[str]]:
        return {name: found for name, found in self.problems.items() if found}


def check_every_savefig(monkeypatch: pytest.MonkeyPatch) -> SavedFigures:
    """From now on (until ``monkeypatch`` undoes it), every ``Figure.savefig`` checks its
    figure for collisions first, then writes the file as usual; returns the record."""
    saved = SavedFigures()
    savefig = Figure.savefig

    def checked_savefig(self: Figure, fname: Any, *args: Any, **kwargs: Any) -> None:
        saved.record(self, fname, tight=kwargs.get("bbox_inches") == "tight")
        savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked_savefig)
    return saved

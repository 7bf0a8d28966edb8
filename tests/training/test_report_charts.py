"""The run report's charts: drawn from background threads (a run started from Slack trains in
one) they must come out as whole PNGs, each with its own content."""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image

from training.report import plot_loss_curve


def test_loss_curves_drawn_in_parallel_threads_are_each_whole_pngs(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def draw(i: int) -> None:
        try:
            for j in range(2):
                losses = [(step, 3.0 - (i + 1) * step / 100) for step in range(1, 40 + 10 * i)]
                plot_loss_curve(losses, tmp_path / f"loss-{i}-{j}.png")
        except BaseException as exc:  # noqa: BLE001  reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    pngs = sorted(tmp_path.glob("loss-*.png"))
    assert len(pngs) == 6
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
    # Different curves make different pictures: no thread drew onto another's figure.
    assert len({p.read_bytes() for p in pngs if p.name.endswith("-0.png")}) == 3

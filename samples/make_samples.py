"""Make the demo's inputs: a small synthetic 'photo' and a synthetic 'painting', both generated
here.

Run: python samples/make_samples.py  (writes samples/content.png and samples/style.png)
"""

from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).parent


def landscape(width: int = 320, height: int = 240) -> np.ndarray:
    """Sky, sun, hills and a few houses: edges and flat areas for the content loss to keep."""
    y = np.linspace(0, 1, height)[:, None, None]
    image = (1 - y) * np.array([235, 180, 120]) + y * np.array([255, 230, 200])  # BGR sky
    image = np.repeat(image, width, axis=1).astype(np.uint8)
    cv2.circle(image, (250, 60), 28, (90, 220, 255), -1)
    xs = np.arange(width)
    hills = (170 + 18 * np.sin(xs / 37.0) + 10 * np.sin(xs / 11.0)).astype(int)
    for x, top in zip(xs, hills):
        image[top:, x] = (60, 140, 70)
    for i, x in enumerate(range(30, 230, 50)):
        cv2.rectangle(image, (x, 140 - 6 * i), (x + 36, 200), (150, 160, 200 - 25 * i), -1)
        cv2.fillPoly(
            image,
            [np.array([(x - 4, 140 - 6 * i), (x + 18, 115 - 6 * i), (x + 40, 140 - 6 * i)])],
            (40, 40, 160),
        )
        cv2.rectangle(image, (x + 12, 170), (x + 24, 200), (40, 60, 90), -1)
    return image


def swirls(size: int = 256, seed: int = 0) -> np.ndarray:
    """Short coloured brush strokes along a swirling field: texture for the style loss."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), (90, 50, 20), np.uint8)
    palette = [(200, 120, 30), (60, 200, 240), (240, 220, 180), (150, 80, 20), (40, 160, 230)]
    for _ in range(2500):
        x, y = rng.uniform(0, size, 2)
        angle = np.sin(x / 23.0) + np.cos(y / 17.0) * 2.0
        dx, dy = 9 * np.cos(angle), 9 * np.sin(angle)
        colour = palette[rng.integers(len(palette))]
        cv2.line(
            image, (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy)), colour, 3, cv2.LINE_AA
        )
    return image


if __name__ == "__main__":
    cv2.imwrite(str(HERE / "content.png"), landscape())
    cv2.imwrite(str(HERE / "style.png"), swirls())
    print(f"wrote {HERE / 'content.png'} and {HERE / 'style.png'}")

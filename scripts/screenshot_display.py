"""Render one fitkit notebook display in headless Chromium and save it as docs/images/display.png.

The picture at the top of tutorial 12 ("Reading the results"). The script fits
the tutorial's faint Gaussian peak on a sloping background, computes its
covariance, writes `fk.display.html(result, covariance=..., problem=...)`
(exactly what a notebook shows for `fk.display.display(...)`) into a minimal
HTML page in a temporary folder, and asks Chromium for a screenshot of it:

    /usr/bin/chromium --headless --no-sandbox --disable-gpu ... --screenshot=<png> file://<page>

The screenshot is then cropped to the tables (plus a margin) and saved as an
optimised PNG. Chromium gets a fresh profile folder each run and the flags that
keep it off the network (no first-run, sync, component updates or background
requests), so the picture depends on nothing but the page.

Usage (Debian: `apt-get install chromium`):

    python scripts/screenshot_display.py                   # writes docs/images/display.png
    python scripts/screenshot_display.py --out /tmp/d.png --chromium /usr/bin/chromium
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "images" / "display.png"
WINDOW = (1000, 700)
MARGIN = 12  # pixels of white kept around the tables when cropping

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>fitkit display</title></head>
<body style="margin:16px;background:#fff;font-family:sans-serif;">
{body}
</body>
</html>
"""


def build_display() -> str:
    """Fit the tutorial's peak and return the HTML of the fit with its covariance and bounds."""
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    import fitkit as fk

    fk.enable_x64()

    class Peak(fk.Observation):
        x: jax.Array

        def predict(self, params, model):
            p = params
            u = (self.x - p["centre"]) / p["width"]
            return p["background"] + p["slope"] * self.x + p["amplitude"] * jnp.exp(-0.5 * u**2)

    x = jnp.linspace(-10.0, 10.0, 100)
    truth = {"amplitude": 1.2, "centre": 0.7, "width": 0.8, "background": 1.0, "slope": 0.05}
    noise = 0.3
    clean = Peak(data=jnp.zeros_like(x), x=x).predict(truth, None)
    observation = Peak(data=clean + noise * jr.normal(jr.key(2), x.shape), error=noise, x=x)
    problem = fk.Problem(
        None,
        observation,
        bounds={"amplitude": (0.0, None), "background": (0.0, None), "width": (0.0, 5.0)},
    )
    start = {"amplitude": 2.0, "centre": 0.0, "width": 2.0, "background": 0.5, "slope": 0.0}
    result = fk.solve(problem, start)
    covariance = fk.covariance(problem, result)
    return fk.display.html(result, covariance=covariance, problem=problem)


def screenshot(page: pathlib.Path, png: pathlib.Path, chromium: str, profile: pathlib.Path) -> None:
    """Run headless Chromium on `page` and write its screenshot to `png`."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not png.exists():
        raise RuntimeError(
            f"chromium failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


def crop(source: pathlib.Path, out: pathlib.Path) -> tuple[int, int]:
    """Crop the screenshot to its non-white content plus `MARGIN` and save it optimised; return its size."""
    from PIL import Image, ImageChops

    image = Image.open(source).convert("RGB")
    background = Image.new("RGB", image.size, (255, 255, 255))
    box = ImageChops.difference(image, background).getbbox()
    if box is None:
        raise RuntimeError("the screenshot is blank: the page did not render")
    left, top, right, bottom = box
    box = (
        max(left - MARGIN, 0),
        max(top - MARGIN, 0),
        min(right + MARGIN, image.width),
        min(bottom + MARGIN, image.height),
    )
    cropped = image.crop(box)
    # A palette of 64 colours holds the few flat fills and the anti-aliased text, at a fraction of the size.
    cropped.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return cropped.size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="the PNG to write")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    args = parser.parse_args(argv)

    body = build_display()
    with tempfile.TemporaryDirectory(prefix="fitkit-screenshot-") as folder:
        folder = pathlib.Path(folder)
        page = folder / "display.html"
        page.write_text(PAGE.format(body=body), encoding="utf-8")
        raw = folder / "raw.png"
        screenshot(page, raw, args.chromium, folder / "profile")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        width, height = crop(raw, args.out)
    print(f"wrote {args.out} ({width} x {height} px, {args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

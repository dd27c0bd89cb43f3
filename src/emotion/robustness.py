"""Accuracy under the corruptions a webcam or phone adds (noise, blur, JPEG, light, pose, occlusion,
low resolution), each applied to uint8 N×48×48 face crops with a fixed seed, so `dvc metrics diff`
shows a recipe that trades robustness for accuracy."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def _per_image(images: np.ndarray, change) -> np.ndarray:
    return np.stack([np.asarray(change(Image.fromarray(image))) for image in images]) if len(images) else images


def _jpeg(quality: int):
    def change(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return Image.open(buffer).convert("L")
    return lambda images, rng: _per_image(images, change)


def _noise(sigma: float):
    return lambda images, rng: np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)


def _light(scale: float, shift: float):
    """Contrast `scale` around mid-grey, then brightness `shift` grey levels."""
    return lambda images, rng: np.clip((images - 127.5) * scale + 127.5 + shift, 0, 255).astype(np.uint8)


def _rotate(degrees: float):
    return lambda images, rng: _per_image(images, lambda im: im.rotate(degrees, Image.BILINEAR,
                                                                       fillcolor=int(np.asarray(im).mean())))


def _shift(pixels: int):
    return lambda images, rng: np.roll(images, (pixels, pixels), axis=(1, 2))


def _band(top: float, bottom: float):
    """Grey bar over rows top..bottom (fractions of the height): 0.25–0.45 covers FER2013's eyes, 0.7–0.9 the mouth."""
    def occlude(images, rng):
        out, size = images.copy(), images.shape[1]
        out[:, round(top * size):round(bottom * size)] = 128
        return out
    return occlude


def _downscale(side: int):
    return lambda images, rng: _per_image(images, lambda im: im.resize((side, side), Image.BILINEAR)
                                          .resize(im.size, Image.BILINEAR))


def _blur(radius: float):
    return lambda images, rng: _per_image(images, lambda im: im.filter(ImageFilter.GaussianBlur(radius)))


CORRUPTIONS = {
    "gaussian_noise_10": _noise(10), "gaussian_noise_25": _noise(25),
    "blur_1": _blur(1.0), "blur_2": _blur(2.0),
    "jpeg_50": _jpeg(50), "jpeg_30": _jpeg(30), "jpeg_10": _jpeg(10),
    "brighter_40": _light(1.0, 40), "darker_40": _light(1.0, -40),
    "contrast_0.5": _light(0.5, 0), "contrast_1.5": _light(1.5, 0),
    "rotate_+15": _rotate(15), "rotate_-15": _rotate(-15),
    "shift_4px": _shift(4),
    "occlude_eyes": _band(0.25, 0.45), "occlude_mouth": _band(0.70, 0.90),
    "downscale_24": _downscale(24),
}


def corrupt(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    return CORRUPTIONS[name](images, np.random.default_rng(seed))


def robustness_report(predict, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Accuracy of `predict` (uint8 images → N×7 probabilities) on clean and on each corrupted copy,
    and each corruption's drop from clean, in accuracy points (fractions)."""
    accuracy = lambda x: float((predict(x).argmax(axis=1) == labels).mean())  # noqa: E731
    clean = accuracy(images)
    corrupted = {name: accuracy(corrupt(images, name, seed)) for name in CORRUPTIONS}
    return {"clean": clean, "accuracy": corrupted, "drop": {name: clean - value for name, value in corrupted.items()},
            "mean_corrupted": float(np.mean(list(corrupted.values())))}


def plot_robustness(report: dict, dest, title: str) -> None:
    from emotion import plots

    names = list(report["accuracy"])
    fig, ax = plots.plt.subplots(figsize=(6, 5))
    ax.barh(names, [report["accuracy"][n] for n in names], color="#6c71c4")
    ax.axvline(report["clean"], color="black", linestyle=":", label=f"clean {report['clean']:.3f}")
    ax.invert_yaxis()
    ax.set(xlabel="accuracy", xlim=(0, 1), title=title)
    ax.legend(loc="lower right")
    plots.save_figure(fig, dest)

"""Where a training step's time goes, for the recipe in params.yaml (or with overrides), in one run.

    python benchmarks/training_efficiency.py [--steps 40] [--jit-compile] [--nondeterministic]
        [-S train.input_crop=48 -S train.width=40 ...]

Prints images/s for (1) `fit` over a BatchFeed, the loop the train stage runs, with the minor page faults
per step (glibc's malloc as it comes hands large buffers back to the kernel each step: README, Training
speed on CPUs without bf16; the train stage tells it to keep them, and so does this benchmark unless
--malloc-as-is; measured first, because the allocator's state depends on what ran before), (2) the
training step alone (augmentation + model + optimizer, `train_on_batch`), first over the same batches
`fit` saw (what `fit`'s own machinery, Keras' PyDataset adapter and callbacks, costs is the gap to (1)), then on
one batch held in memory, (3) the same without augmentation, (4) the forward pass alone, (5) what the optimizer
costs: the step without augmentation under the recipe's optimizer, under it without its moving average of the
weights (train.ema), and under plain SGD, whose update is one multiply-add per weight, timed in alternating
rounds so that the host's drift falls on all three alike; the model's FLOPs per image
(counted from its conv and dense layers; a training step ≈ 3× the forward pass); the GFLOP/s this
achieves; and its share of this CPU's measured matmul peak at the same precision (a large square
matmul, the best case for the same kernels). Random data; the first steps (graph building) are not
timed. Compare numbers only within one run: the host is shared and noisy."""
import argparse
import contextlib
import dataclasses
import resource
import time

import keras
import numpy as np

from emotion.augment import build_augmenter
from emotion.config import load_params
from emotion.models import build_model
from emotion.training import (BatchFeed, cpu_name, keep_freed_memory, make_optimizer, resolve_precision,
                             seed_everything)


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds × 2 of the conv and dense layers (the rest is a few percent on these models)."""
    flops = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            per_output = kh * kw * (1 if isinstance(layer, keras.layers.DepthwiseConv2D) else c_in)
            flops += 2 * h * w * c_out * per_output
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def random_feed(batch: int, steps: int) -> BatchFeed:
    """steps + 3 batches of random faces, fed as the train stage feeds its training set."""
    rng = np.random.default_rng(0)
    count = (steps + 3) * batch
    return BatchFeed(rng.integers(0, 256, (count, 48, 48), dtype=np.uint8), rng.integers(0, 7, count), batch,
                     balanced=False, mixer=None, seed=0)


def interleaved_rates(steps: dict, batch: int, count: int, rounds: int = 5) -> dict:
    """images/s of each step function, timed in `rounds` alternating slices of about count / rounds steps,
    so that a slow stretch of a shared host slows every one of them, not only the one it falls on."""
    for step in steps.values():
        for _ in range(3):
            step()  # graph building and warm-up
    elapsed, done = dict.fromkeys(steps, 0.0), max(1, round(count / rounds))
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(done):
                step()
            elapsed[name] += time.perf_counter() - start
    return {name: rounds * done * batch / seconds for name, seconds in elapsed.items()}


def images_per_second(step, batch: int, steps: int) -> float:
    return interleaved_rates({"step": step}, batch, steps, rounds=1)["step"]


def optimizer_rates(params, compiled, x, y, steps: int) -> dict:
    """The step without augmentation under the recipe's optimizer, without its weight average, and under
    plain SGD (the cheapest update there is), each on a fresh copy of the model."""
    optimizers = {"recipe": lambda: make_optimizer(params, 400)}
    if params.ema:
        optimizers["recipe without the weight average"] = lambda: make_optimizer(dataclasses.replace(params, ema=0), 400)
    optimizers["plain SGD"] = lambda: keras.optimizers.SGD(1e-3)
    trainers = {name: compiled(build_model(params), optimizer=make()) for name, make in optimizers.items()}
    return interleaved_rates({name: (lambda t=t: t.train_on_batch(x, y)) for name, t in trainers.items()},
                             params.batch_size, steps)


def optimizer_shares(rates: dict) -> dict:
    """Fractions of the recipe's step time (without augmentation) that its optimizer and its weight average
    take, as the gap in time per image to plain SGD and to the recipe without the average."""
    seconds = {name: 1 / rate for name, rate in rates.items()}
    shares = {"optimizer": (seconds["recipe"] - seconds["plain SGD"]) / seconds["recipe"]}
    if "recipe without the weight average" in seconds:
        shares["weight average"] = (seconds["recipe"] - seconds["recipe without the weight average"]) / seconds["recipe"]
    return shares


def fit_rate(trainer, batch: int, steps: int) -> tuple[float, float]:
    """images/s and minor page faults per step of `fit` over a BatchFeed of random faces, timed from the
    4th batch, as the train stage feeds it."""
    feed = random_feed(batch, steps)
    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, index, logs=None):
            if index in (2, steps + 2):
                marks[index] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    trainer.fit(feed, epochs=1, verbose=0, callbacks=[Clock()])
    (start, faults_before), (end, faults_after) = marks[2], marks[steps + 2]
    return steps * batch / (end - start), (faults_after - faults_before) / steps


def matmul_peak(precision: str, size: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of a size × size matmul in the compute dtype the recipe trains with."""
    dtype = "bfloat16" if "bfloat16" in precision else "float16" if "float16" in precision else "float32"
    a = keras.ops.cast(keras.random.normal((size, size), seed=1), dtype)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
    start = time.perf_counter()
    for _ in range(repeats):
        out = keras.ops.matmul(a, a)
    keras.ops.convert_to_numpy(out)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


@contextlib.contextmanager
def seeded(seed: int, deterministic: bool):
    """Seed as the train stage does (`seed_everything`: with TensorFlow, deterministic ops, which Keras will
    not XLA-compile; `deterministic` False turns them off again). The process's setting before and its dtype
    policy are restored (TensorFlow has no public switch back to nondeterministic ops, hence the private module)."""
    policy, restore_determinism = keras.mixed_precision.dtype_policy(), None
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import config

        before = config.is_op_determinism_enabled()
        restore_determinism = config.enable_op_determinism if before else config.disable_op_determinism
    try:
        seed_everything(seed)
        if restore_determinism and not deterministic:
            config.disable_op_determinism()
        yield
    finally:
        if restore_determinism:
            restore_determinism()
        keras.mixed_precision.set_dtype_policy(policy)


def measure(params, steps: int, jit_compile: bool | str = "auto", deterministic: bool | None = None) -> dict:
    """`deterministic` None: as the train stage runs (deterministic ops with TensorFlow), except under
    jit_compile=True, which Keras refuses with them."""
    if deterministic is None:
        deterministic = jit_compile is not True
    deterministic = deterministic and keras.backend.backend() == "tensorflow"
    with seeded(params.seed, deterministic):
        return _measure(params, steps, jit_compile) | {"deterministic": deterministic}


def _measure(params, steps: int, jit_compile: bool | str) -> dict:
    precision = resolve_precision(params.precision)
    keras.mixed_precision.set_dtype_policy(precision)
    batch = params.batch_size
    classifier = build_model(params)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, 48, 48, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 7, batch), 7)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)

    def compiled(*layers, optimizer=None) -> keras.Model:
        trainer = keras.Sequential([keras.Input((48, 48, 1)), *layers])
        trainer.compile(optimizer=optimizer or make_optimizer(params, 400), loss=loss, jit_compile=jit_compile)
        return trainer

    full, bare = compiled(build_augmenter(params.augment, 0), classifier), compiled(classifier)
    rates = {}
    rates["fit, as the train stage runs it"], faults = fit_rate(full, batch, steps)  # first, as in the stage
    fed, index = random_feed(batch, steps), iter(range(steps + 3))  # fit's batches, converted inside the loop
    rates["train step over fit's batches"] = images_per_second(lambda: full.train_on_batch(*fed[next(index)]),
                                                               batch, steps)
    rates["train step"] = images_per_second(lambda: full.train_on_batch(x, y), batch, steps)
    rates["train step, no augmentation"] = images_per_second(lambda: bare.train_on_batch(x, y), batch, steps)
    rates["forward only"] = images_per_second(lambda: classifier.predict_on_batch(x), batch, steps)
    optimizers = optimizer_rates(params, compiled, x, y, steps)
    flops = forward_flops(classifier)
    peak = matmul_peak(precision)
    return {"precision": precision, "rates": rates, "optimizers": optimizers, "flops": flops, "peak": peak,
            "params": classifier.count_params(), "faults": faults,
            "xla": {"with augmentation": full.jit_compile, "without": bare.jit_compile}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change a params.yaml key for this run, as dvc exp run -S (e.g. train.input_crop=48)")
    parser.add_argument("--malloc-as-is", action="store_true",
                        help="leave glibc's malloc as it comes instead of keeping freed memory as the train stage does")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile with XLA (jit_compile=True; TensorFlow's default on a CPU is without). Turns off "
                             "the deterministic ops the train stage runs with (Keras does not compile those) and "
                             "falls back to no XLA, with a warning, for a model it cannot compile (the augmenter)")
    parser.add_argument("--nondeterministic", action="store_true",
                        help="TensorFlow's ops without the determinism the train stage turns on (what they cost)")
    args = parser.parse_args()
    kept = not args.malloc_as_is and keep_freed_memory()
    import yaml

    overrides = {key: yaml.safe_load(value) for key, value in (o.split("=", 1) for o in args.overrides)}
    params = load_params(overrides=overrides).train
    result = measure(dataclasses.replace(params, weights="none"), args.steps, args.jit_compile or "auto",
                     deterministic=False if args.nondeterministic else None)
    train_flops = 3 * result["flops"]
    print(f"{cpu_name()}; backend {keras.backend.backend()}; {result['precision']}; batch {params.batch_size}; "
          f"{params.model} width {params.width}, input {params.input_crop}×{params.input_crop} of 48, "
          f"{result['params']:,} parameters, {result['flops'] / 1e9:.3f} GFLOP per image forward"
          + (f"; overrides {', '.join(args.overrides)}" if args.overrides else "")
          + ("; malloc keeps freed memory" if kept else "; malloc as it comes")
          + ("; deterministic ops" if result["deterministic"] else ""))
    print(f"matmul peak at this precision: {result['peak']:.0f} GFLOP/s")
    print("XLA-compiled training steps: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result["xla"].items())
          + "\n")
    print("| measurement | images/s | share of the step | GFLOP/s | share of matmul peak |")
    print("|---|---|---|---|---|")
    full = result["rates"]["fit, as the train stage runs it"]
    for name, rate in result["rates"].items():
        flops = (result["flops"] if name == "forward only" else train_flops) * rate / 1e9
        print(f"| {name} | {rate:,.0f} | {full / rate:.0%} | {flops:,.0f} | {flops / result['peak']:.0%} |")
    print("\nThe optimizer, on the step without augmentation (alternating rounds): "
          + ", ".join(f"{name} {rate:,.0f} images/s" for name, rate in result["optimizers"].items()) + ".")
    shares = optimizer_shares(result["optimizers"])
    print(f"The recipe's optimizer takes {shares['optimizer']:.0%} of that step (the gap to plain SGD)"
          + (f", its weight average {shares['weight average']:.0%}" if "weight average" in shares else "")
          + "; differences of a few percent are within a shared host's noise.")
    print(f"\n`fit` cost {result['faults']:,.0f} minor page faults a step (a few thousand or fewer: the step's "
          "buffers are reused; hundreds of thousands: the allocator returns them to the kernel every step, see "
          "README, Training speed on CPUs without bf16).")
    print(f"An epoch of 25,500 images: {25_500 / full:.0f} s of `fit` (validation not included).")


if __name__ == "__main__":
    main()

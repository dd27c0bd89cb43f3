"""The `emotion` command (also `python -m emotion`): the library's user-facing entry points."""
from __future__ import annotations

import argparse
import errno
import json
import math
import sys
from pathlib import Path

from emotion.errors import EmotionError, one_line_errors

DEFAULT_MODEL = Path("models/export")


def _evaluate(args) -> None:
    from emotion.evaluation import ensemble_proba, score
    from emotion.labelled import LabelledFaceReader
    from emotion.fileio import write_json
    from emotion.inference import load_classifier

    _check_scoring_options(args)
    _check_output_file(args.json, "--json")
    faces = LabelledFaceReader(args.faces, args.margin, args.detector, args.align)
    data = _labelled_data(args.data, faces)
    args.tta, args.tta_crop = _pipeline_tta(args.tta, args.tta_crop)
    classifiers = [load_classifier(_local_model(spec)) for spec in args.models]
    proba = ensemble_proba(classifiers, data["images"], args.batch_size, args.tta, args.tta_crop)
    runtimes = ", ".join(sorted({c.runtime for c in classifiers}))
    result = {"models": [str(m) for m in args.models], "runtime": runtimes, "data": str(args.data), "tta": args.tta,
              **score(data["labels"], proba)}
    if faces.counts:  # a folder: how each image's face was found
        result["faces"] = {"mode": args.faces, "detector": args.detector, **faces.counts}
        print(faces.summary())
    what = f"ensemble of {len(classifiers)}, " if len(classifiers) > 1 else ""
    print(f"{result['images']} images  accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}"
          f"  ({what}{runtimes}, tta {args.tta})")
    if args.json:
        write_json(args.json, result)


def _ensemble(args) -> None:
    """Weights for members chosen on validation data, written as an ensemble file the apps can load."""
    from emotion.ensemble import EnsembleClassifier, choose_weights, write_ensemble
    from emotion.evaluation import predict_proba
    from emotion.inference import load_classifier
    from emotion.labelled import refuse_test_split

    _check_scoring_options(args)
    _check_output_file(args.out, "--out")
    if args.weights is not None:
        if len(args.weights) != len(args.models):
            raise EmotionError(f"--weights: {len(args.weights)} given for {len(args.models)} members; give one each")
        if not all(math.isfinite(w) and w >= 0 for w in args.weights) or sum(args.weights) <= 0:
            raise EmotionError(f"--weights {' '.join(map(str, args.weights))}: use weights of 0 or more with a "
                               "positive sum, e.g. 0.5 0.5")
    refuse_test_split(args.val, "ensemble weights")
    data = _labelled_data(args.val)
    args.tta, args.tta_crop = _pipeline_tta(args.tta, args.tta_crop)
    args.models = [_local_model(spec) for spec in args.models]  # REV:PATH members are fetched first
    members = [load_classifier(path) for path in args.models]
    EnsembleClassifier(members, [1.0] * len(members), [str(p) for p in args.models])  # sizes agree
    probas = [predict_proba(m, data["images"], args.batch_size, args.tta, args.tta_crop) for m in members]
    weights = choose_weights(probas, data["labels"]) if args.weights is None else args.weights
    for path, proba in zip(args.models, probas):
        print(f"{path}: val accuracy {(proba.argmax(1) == data['labels']).mean():.4f} (tta {args.tta})")
    mixed = sum(w / sum(weights) * p for w, p in zip(weights, probas))
    print(f"ensemble, weights {', '.join(f'{w:.2f}' for w in weights)}: val accuracy "
          f"{(mixed.argmax(1) == data['labels']).mean():.4f}")
    write_ensemble(args.out, args.models, weights)
    print(f"wrote {args.out}; use it as --model {args.out}")


def _check_scoring_options(args) -> None:
    """One line for a batch size or ten-crop window no run could use, before any data or model is read."""
    if args.batch_size < 1:
        raise EmotionError(f"--batch-size {args.batch_size}: use a positive number of images, e.g. 256")
    if args.tta_crop is not None and not 0 < args.tta_crop <= 1:
        raise EmotionError(f"--tta-crop {args.tta_crop}: use the window's side as a fraction of the image, in "
                           "(0, 1], e.g. 0.833")


def _check_output_file(path: Path | None, option: str) -> None:
    """Writing a file where a folder is would replace the folder: refuse before any work."""
    if path is not None and Path(path).is_dir():
        raise EmotionError(f"{option} {path}: a folder is there; name a file")


def _pipeline_tta(tta: str | None, crop: float | None) -> tuple[str, float]:
    """Unset options take the evaluate stage's (params.yaml in this folder), so `emotion evaluate` and
    metrics/eval.json give one number for one model and split; without a params.yaml: none, 40/48."""
    from emotion.config import load_params
    from emotion.evaluation import TENCROP_SIDE

    stage = load_params().evaluate if Path("params.yaml").is_file() else None
    return (tta or (stage.tta if stage else "none"),
            crop if crop is not None else (stage.tta_crop if stage else TENCROP_SIDE))


def _labelled_data(path: Path, faces=None) -> dict:
    """A folder of class subfolders, or a prepared split (data/prepared/val.npz). `faces`: how a
    folder's file becomes model input (labelled.LabelledFaceReader); default the whole image."""
    from emotion.labelled import read_labelled_folder
    from emotion.fileio import load_npz

    if path.suffix == ".npz":
        if not path.is_file():
            raise EmotionError(f"{path}: not found; run `dvc repro preprocess` or `dvc pull preprocess`")
        try:
            data = load_npz(path)
        except Exception:  # text, a truncated zip, pickled objects
            data = {}
        if not {"images", "labels"} <= data.keys():
            raise EmotionError(f"{path}: not a prepared split (an .npz with 'images' and 'labels', as the "
                               "preprocess stage writes); give that or a folder of class subfolders")
        return data
    if path.is_file():
        raise EmotionError(f"{path}: a file; give a folder of class subfolders (angry/, happy/, ...) or a prepared "
                           "split such as data/prepared/val.npz")
    return read_labelled_folder(path, read=faces)


def _local_model(spec: str) -> Path:
    """A model path; NAME@STAGE or NAME@VERSION from the registry (emotion@prod); or REV:PATH for a model
    file as of a git revision or `dvc exp` name."""
    from emotion.registry import local_model
    from emotion.storage import model_at_revision, repo_root

    spec = str(spec)
    registered = local_model(spec)
    if registered is not None:
        return registered
    if spec == str(DEFAULT_MODEL) and not DEFAULT_MODEL.exists():  # run from a subfolder of the checkout
        root = repo_root(Path.cwd())
        if root is not None and (root / DEFAULT_MODEL).exists():
            return root / DEFAULT_MODEL
    if Path(spec).exists() or ":" not in spec:
        return Path(spec)
    return model_at_revision(spec, Path(".emotion-cache/models"))


def _pull(args) -> None:
    """Fetch one registered version of the model (by stage or version) from the DVC remote."""
    from emotion.registry import fetch

    if args.stage and args.version:
        raise EmotionError("give --stage or --version, not both")
    entry, folder = fetch(args.name, args.stage, args.version, args.out)
    what = f"stage {args.stage}" if args.stage else "latest" if not args.version else "version"
    print(f"{args.name}@{entry['version']} ({what}, commit {entry['commit'][:12]}) is in {folder}; "
          f"use it with --model {folder} or --model {args.name}@{args.stage or entry['version']}")


def _fetch(args) -> None:
    from emotion.config import load_params
    from emotion.data import SOURCE_DIR, place_source, source_archive
    from emotion.storage import dvc

    if args.path is None and SOURCE_DIR.is_dir() and any(SOURCE_DIR.iterdir()):
        archive = source_archive(SOURCE_DIR)  # already fetched: keep it (checked to be one archive)
    else:
        kaggle = load_params().download.kaggle
        print(f"fetch: copying {args.path or f'Kaggle dataset {kaggle}'} into {SOURCE_DIR}/", flush=True)
        archive = place_source(args.path and str(args.path), kaggle, SOURCE_DIR)
    added = dvc("add", "--quiet", str(SOURCE_DIR))
    if added.returncode != 0:
        reason = (added.stderr or added.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EmotionError(f"`dvc add {SOURCE_DIR}` failed ({reason[0]}); run it from the repository root")
    print(f"fetch: {archive} is tracked by content in {SOURCE_DIR}.dvc; now run `dvc repro`")


def _params(args) -> None:
    from emotion.config import flatten, load_params, set_param, set_params, to_dict

    if args.action == "check":
        params = load_params(args.file)
        print(json.dumps(to_dict(params), indent=2) if args.show else f"{args.file}: ok")
        return
    if args.from_file:
        import yaml

        try:
            overrides = flatten(yaml.safe_load(args.from_file.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, AttributeError) as err:
            raise EmotionError(f"{args.from_file}: not a readable YAML mapping of params ({err})") from None
        set_params(args.file, overrides)
        print(f"{args.file}: {len(overrides)} values from {args.from_file}")
    for assignment in args.assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise EmotionError(f"'{assignment}': expected KEY=VALUE, e.g. train.lr=0.001")
        set_param(args.file, key, value)
        print(f"{args.file}: {key} = {value}")


def _report(args) -> None:
    from emotion.review import build_report

    _check_output_file(args.out, "--out")
    text = build_report(Path.cwd(), args.base, args.rev, args.out)
    print(text if args.print else f"wrote {args.out}")


def _predict(args) -> None:
    from emotion.analyzer import Analyzer
    from emotion.predict import format_summary, list_images, predict_paths

    if not args.max_megapixels * 1e6 >= 1:  # int(0.0000001 MP) would be 0 pixels: no limit at all
        raise EmotionError(f"--max-megapixels {args.max_megapixels}: use a positive number, e.g. 200")
    if args.out.exists() and not args.out.is_dir():
        raise EmotionError(f"--out {args.out}: a file is there; name a folder for the report")
    list_images(args.paths)  # a wrong path fails before the model loads
    analyzer = Analyzer(_local_model(args.model), args.faces, args.margin, args.batch_size, args.detector, args.tta,
                        args.align, args.smallest_face)
    report = predict_paths(args.paths, args.out, analyzer, not args.no_annotated, args.bars,
                           progress_stream=sys.stderr, max_megapixels=args.max_megapixels)
    print(format_summary(report["summary"]) + f"  ({analyzer.runtime})")
    print(f"wrote {args.out}/predictions.csv, predictions.json, summary.json"
          + ("" if args.no_annotated else f" and annotated copies in {args.out}/annotated/"))


def _video(args) -> None:
    from emotion.analyzer import Analyzer
    from emotion.video import process_video

    out = args.out or Path(f"{Path(args.source).stem if not args.source.isdigit() else 'camera'}_emotion.mp4")
    csv_path = args.csv or out.with_suffix(".csv")
    analyzer = Analyzer(_local_model(args.model), args.faces, args.margin, detector=args.detector, tta=args.tta,
                        align=args.align)
    result = process_video(args.source, out, csv_path, analyzer, args.smooth, not args.no_bars, args.max_frames,
                           args.show, args.detect_every)
    print(f"{result['frames']} frames, {result['faces']} faces, {result['fps']} frames/s ({analyzer.runtime}); "
          f"wrote {result['video']} and {result['csv']}")


def _serve(args) -> None:
    from emotion.serve import run

    run(_local_model(args.model), args.host, args.port, args.max_upload_mb, args.max_megapixels, args.concurrency, args.queue,
        args.cors_origin, args.detector, args.tta, args.align)


def _detector_options() -> tuple[dict, dict]:
    """argparse settings of --detector and --align, shared by every command that finds faces."""
    from emotion.detectors import DEFAULT_DETECTOR, DETECTORS
    from emotion.faces import DEFAULT_ALIGN

    detector = {"choices": list(DETECTORS), "default": DEFAULT_DETECTOR,
                "help": "face detector: " + ", ".join(f"{name} ({cls.about})" for name, cls in DETECTORS.items())
                        + " (default: %(default)s)"}
    align = {"action": argparse.BooleanOptionalAction, "default": DEFAULT_ALIGN,
             "help": "turn each face so its eyes are level before the 48×48 cut, where the detector finds eyes; "
                     "README: Finding faces has what it does to the answers (default: %(default)s)"}
    return detector, align


def _add_face_options(parser, faces_help: str) -> None:
    """--faces, --detector, --align and --margin: how a command finds the faces in an image."""
    from emotion.faces import DEFAULT_MARGIN

    detector, align = _detector_options()
    parser.add_argument("--faces", choices=["auto", "detect", "whole"], default="auto", help=faces_help)
    parser.add_argument("--detector", **detector)
    parser.add_argument("--align", **align)
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help="crop margin per side, fraction of the face box (default: %(default)s)")


def _add_inference_parsers(sub) -> None:
    model_help = ("model file (.onnx/.tflite/.keras), SavedModel, export folder, ensemble .json "
                  "(`emotion ensemble`), or a registered version: emotion@prod, emotion@v1.2.0 (default: %(default)s)")
    faces_help = "auto: images up to 128 px are face crops, larger ones are searched; detect; whole"
    from emotion.analyzer import DEFAULT_TTA
    from emotion.predict import DEFAULT_MAX_MEGAPIXELS, DEFAULT_SMALLEST_FACE

    detector, align = _detector_options()
    tta = {"choices": ["none", "flip", "tencrop"], "default": DEFAULT_TTA,
           "help": "views averaged per face, as the pipeline scores: tencrop (more accurate, about 10x "
                   "the time per face; the measured gain: README, What ships), flip, or none for speed (default: %(default)s)"}

    pr = sub.add_parser("predict", help="find and classify every face in images or folders")
    pr.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    pr.add_argument("--model", default=str(DEFAULT_MODEL), help=model_help)
    pr.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: %(default)s)")
    _add_face_options(pr, faces_help)
    pr.add_argument("--tta", **tta)
    pr.add_argument("--batch-size", type=int, default=256)
    pr.add_argument("--bars", action="store_true", help="draw probability bars beside each face")
    pr.add_argument("--no-annotated", action="store_true", help="write only the report, no annotated copies")
    pr.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS,
                    help="larger photos are skipped with the reason, checked from the header before decoding "
                         "(default: %(default)s; a 200 MP photo needs about 0.6 GB of memory)")
    pr.add_argument("--smallest-face", type=float, default=DEFAULT_SMALLEST_FACE, metavar="FRACTION",
                    help="smallest face searched for, as a fraction of the photo's shorter side (never under the "
                         "detector's minimum, 40 px for BlazeFace): 0.02 finds the 60 px faces of a 12 MP group "
                         "photo; video and serve keep 0.05 for speed (default: %(default)s)")
    pr.set_defaults(func=_predict)

    vi = sub.add_parser("video", help="annotate a video file or camera stream frame by frame")
    vi.add_argument("source", help="video file, or a camera index such as 0")
    vi.add_argument("--model", default=str(DEFAULT_MODEL), help=model_help)
    vi.add_argument("--out", type=Path, help="annotated video, .mp4/.avi/.mkv (default: <source's name>_emotion.mp4 in the "
                                                      "current folder)")
    vi.add_argument("--csv", type=Path, help="per-frame CSV (default: the video's name with .csv)")
    _add_face_options(vi, faces_help)
    vi.add_argument("--tta", **tta)
    vi.add_argument("--smooth", type=float, default=0.5,
                    help="weight of the past in each tracked face's probabilities, 0 = none (default: %(default)s)")
    vi.add_argument("--detect-every", type=int, default=1, metavar="N",
                    help="search for faces on every Nth frame only, and on the frames between classify the faces "
                         "found last at the same boxes: faster, but slower to catch faces that move, come or go "
                         "(default: %(default)s, every frame)")
    vi.add_argument("--max-frames", type=int, help="stop after this many frames (a camera runs until Ctrl-C)")
    vi.add_argument("--no-bars", action="store_true", help="do not draw probability bars")
    vi.add_argument("--show", action="store_true", help="also show a live window (needs a GUI build of OpenCV)")
    vi.set_defaults(func=_video)

    se = sub.add_parser("serve", help="web page + JSON API (POST /predict) for uploaded photos")
    se.add_argument("--model", default=str(DEFAULT_MODEL), help=model_help)
    se.add_argument("--detector", **detector)
    se.add_argument("--tta", **tta)
    se.add_argument("--align", **align)
    se.add_argument("--host", default="127.0.0.1",
                    help="address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 is every network, so put a "
                         "reverse proxy with TLS in front (README: Security notes) (default: %(default)s)")
    se.add_argument("--port", type=int, default=8000)
    se.add_argument("--max-upload-mb", type=float, default=10.0,
                    help="largest upload in MB; a bigger body, chunked or not, is cut off with 413 as it streams in "
                         "(default: %(default)s)")
    se.add_argument("--max-megapixels", type=float, default=40.0,
                    help="largest image in megapixels, read from its header before any decoding; more gets 413 "
                         "(default: %(default)s)")
    se.add_argument("--concurrency", type=int, default=2,
                    help="photos decoded and analysed at once (default: %(default)s)")
    se.add_argument("--queue", type=int, default=32,
                    help="uploads that may wait beyond those; more get 503 with Retry-After (default: %(default)s)")
    se.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                    help="let web pages from ORIGIN (e.g. https://app.example.com) call the API from a browser; "
                         "repeatable (default: none, no CORS headers)")
    se.set_defaults(func=_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotion", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="score a model, or the average of several (an ensemble), on labelled images")
    ev.add_argument("models", nargs="+", metavar="MODEL",
                    help=".keras, .onnx, .tflite, SavedModel or export folder; or REV:PATH for a file as of a git "
                         "revision or `dvc exp` name (e.g. exp-1a2b3:models/model.keras); several = ensemble")
    ev.add_argument("data", type=Path, metavar="DATA",
                    help="folder with <class>/<image> (FER2013 layout; JPEG, PNG, GIF, BMP, WebP or TIFF), or data/prepared/{val,test}.npz")
    ev.add_argument("--json", type=Path, help="also write all metrics to this JSON file")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--tta", choices=["none", "flip", "tencrop"], default=None,
                    help="test-time views averaged per image: flip = with its mirror; tencrop = the model's window at "
                         "4 corners + centre, and mirrors (default: params.yaml's evaluate.tta, as the pipeline scores; none without it)")
    ev.add_argument("--tta-crop", type=float, default=None,
                    help="tencrop: the window moved to each corner, fraction of the image (default: params.yaml's "
                         "evaluate.tta_crop; 0.833 without it)")
    _add_face_options(ev, "the largest face of each image is scored; auto: images up to 128 px are face crops, "
                          "larger ones are searched (one with no face found is scored on its centre square and counted); "
                          "detect: search every image; whole: no search (default: %(default)s)")
    ev.set_defaults(func=_evaluate)

    en = sub.add_parser("ensemble", help="combine models into an ensemble file, weights chosen on validation data")
    en.add_argument("models", nargs="+", metavar="MODEL",
                    help="member models: files, export folders, or REV:PATH (e.g. exp-1a2b3:models/export)")
    en.add_argument("--val", type=Path, default=Path("data/prepared/val.npz"),
                    help="validation data the weights are chosen on (default: %(default)s)")
    en.add_argument("--out", type=Path, default=Path("models/ensemble.json"), help="(default: %(default)s)")
    en.add_argument("--weights", type=float, nargs="+", help="fixed weights instead of choosing them on --val")
    en.add_argument("--tta", choices=["none", "flip", "tencrop"], default=None,
                    help="views each member is scored with (default: params.yaml's evaluate.tta)")
    en.add_argument("--tta-crop", type=float, default=None, help="as for evaluate")
    en.add_argument("--batch-size", type=int, default=256)
    en.set_defaults(func=_ensemble)

    pu = sub.add_parser("pull", help="fetch a registered model version (GTO tags) from the DVC remote")
    pu.add_argument("--stage", help="the version this stage points to, e.g. prod")
    pu.add_argument("--version", help="a registered version, e.g. v1.2.0 (default: the latest)")
    pu.add_argument("--name", default="emotion", help="artifact name in dvc.yaml (default: %(default)s)")
    pu.add_argument("--out", type=Path, help="folder to write (default: .emotion-cache/registry/NAME/VERSION)")
    pu.set_defaults(func=_pull)

    fe = sub.add_parser("fetch", help="put FER2013 into data/source/ (tracked by content in data/source.dvc), "
                                      "from a local zip or folder, or from Kaggle")
    fe.add_argument("path", nargs="?", type=Path, metavar="PATH",
                    help="fer2013.zip or its extracted folder (Kaggle layout); default: keep data/source/ if it "
                         "holds one, else download params.yaml's download.kaggle with kagglehub")
    fe.set_defaults(func=_fetch)

    pa = sub.add_parser("params", help="validate or edit params.yaml")
    pa.add_argument("action", choices=["check", "set"])
    pa.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    pa.add_argument("--file", type=Path, default=Path("params.yaml"))
    pa.add_argument("--show", action="store_true", help="with check: print the parsed values")
    pa.add_argument("--from", dest="from_file", type=Path, metavar="YAML",
                    help="with set: apply a file of overrides first, e.g. configs/gpu.yaml")
    pa.set_defaults(func=_params)

    re_ = sub.add_parser("report", help="Markdown review of a model change: params, metrics, per-class, confusion")
    re_.add_argument("--base", default="main", help="git revision to compare against (default: %(default)s)")
    re_.add_argument("--rev", help="git revision or experiment name (default: the workspace)")
    re_.add_argument("-o", "--out", type=Path, default=Path("review/report.md"))
    re_.add_argument("--print", action="store_true", help="also print the report")
    re_.set_defaults(func=_report)

    _add_inference_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        one_line_errors(args.func)(args)
    except OSError as err:  # an output path blocked by a file, a read-only folder, a full disk
        if err.errno == errno.ENOSPC:
            print(f"error: the disk is full ({err.strerror}); free some space or write elsewhere", file=sys.stderr)
            raise SystemExit(1) from None
        if err.filename is None:
            raise
        name = Path(err.filename)
        if name.name.startswith("."):  # the temporary sibling an output is written to first: name its folder
            name = name.parent
        if isinstance(err, (FileExistsError, NotADirectoryError)):  # mkdir met a file where a folder must go
            why = "a file is there, where the output needs a folder; move it or choose another output path"
        else:
            why = f"{err.strerror or err}; check the path, or choose another"
        print(f"error: {name}: {why}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main(sys.argv[1:])

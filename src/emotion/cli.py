"""The `emotion` command (also `python -m emotion`): the library's user-facing entry points."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emotion.errors import EmotionError, one_line_errors

DEFAULT_MODEL = Path("models/export")


def _evaluate(args) -> None:
    from emotion.data import read_labelled_folder
    from emotion.evaluation import predict_proba, score
    from emotion.fileio import write_json
    from emotion.inference import load_classifier

    data = read_labelled_folder(Path(args.data_dir))
    classifier = load_classifier(args.model)
    proba = predict_proba(classifier, data["images"], args.batch_size, args.tta_flip)
    result = {"model": str(args.model), "runtime": classifier.runtime, "data_dir": str(args.data_dir),
              **score(data["labels"], proba)}
    print(f"{result['images']} images  accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}"
          f"  ({classifier.runtime})")
    if args.json:
        write_json(args.json, result)


def _report(args) -> None:
    from emotion.review import build_report

    text = build_report(Path.cwd(), args.base, args.rev, args.out)
    print(text if args.print else f"wrote {args.out}")


def _params(args) -> None:
    from emotion.config import load_params, set_param, to_dict

    if args.action == "check":
        params = load_params(args.file)
        print(json.dumps(to_dict(params), indent=2) if args.show else f"{args.file}: ok")
        return
    for assignment in args.assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise EmotionError(f"'{assignment}': expected KEY=VALUE, e.g. train.lr=0.001")
        set_param(args.file, key, value)
        print(f"{args.file}: {key} = {value}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotion", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="score a model on a folder of class subfolders")
    ev.add_argument("model", type=Path, help=".keras, .onnx, .tflite, SavedModel or export folder")
    ev.add_argument("data_dir", type=Path, help="folder with <class>/<image> (FER2013 layout, PNG or JPEG)")
    ev.add_argument("--json", type=Path, help="also write all metrics to this JSON file")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--tta-flip", action="store_true", help="average with the mirrored image")
    ev.set_defaults(func=_evaluate)

    pa = sub.add_parser("params", help="validate or edit params.yaml")
    pa.add_argument("action", choices=["check", "set"])
    pa.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    pa.add_argument("--file", type=Path, default=Path("params.yaml"))
    pa.add_argument("--show", action="store_true", help="with check: print the parsed values")
    pa.set_defaults(func=_params)

    re_ = sub.add_parser("report", help="Markdown review of a model change: params, metrics, per-class, confusion")
    re_.add_argument("--base", default="main", help="git revision to compare against (default: %(default)s)")
    re_.add_argument("--rev", help="git revision or experiment name (default: the workspace)")
    re_.add_argument("-o", "--out", type=Path, default=Path("review/report.md"))
    re_.add_argument("--print", action="store_true", help="also print the report")
    re_.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    one_line_errors(args.func)(args)


if __name__ == "__main__":
    main(sys.argv[1:])

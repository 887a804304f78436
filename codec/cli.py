"""The `codec` command. Thin: parsing and reporting here, the work in codec.coding and friends.

    codec encode IN... -m MODEL [-o OUT] [-b KBPS | -q LEVELS] [--batch-size N] [-r] [--force]
    codec decode IN.codes... [-m MODEL] [-o OUT] [--sr RATE] [--format wav|flac] [--force]
    codec info FILE.codes | MODEL (a folder or a name, as -m takes)
    codec import SRC [-o MODEL_DIR] [--from FORMAT]   (EnCodec .th, DAC .pth, HF folder, a name)
    codec export MODEL -o DIR [-q LEVELS | -b KBPS] [--force]   (ONNX graphs; docs/onnx.md)
    codec tokenize DATA... -m MODEL -o OUT [-b KBPS | -q LEVELS] [--shard-size N]
    codec eval DATA... -m MODEL [--bandwidths KBPS...] [--compare opus] [-o REPORT_DIR]
    codec mushra page REPORT_DIR [-o TEST.html] [--conditions CODEC:KBPS...] [--trials N]
    codec mushra aggregate RATINGS.json... [-o OUT_DIR]
    codec train [KEY=VALUE ...]      (Hydra overrides; see configs/)

Each bad input gets one line on stderr naming the file and the problem; the other files are
still processed; the exit code is 1 when any file failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

from codec import __version__
from codec.errors import about, first_line
from codec.fileio import AUDIO_SUFFIXES, read_file_list
from codec.limits import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE


class UsageError(Exception):
    pass


class Problems(list):
    """Per-file problems: each is printed on stderr as it happens and kept for the exit code."""

    def append(self, line: str) -> None:
        print(f"error: {line}", file=sys.stderr, flush=True)
        super().append(line)


def _at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value"
    return parse


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


_positive.__name__ = "number"


def _sample_rate(text: str) -> int:
    value = int(text)
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise argparse.ArgumentTypeError(
            f"must be {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, got {value}"
        )
    return value


_sample_rate.__name__ = "int"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codec", description="Neural audio codec toolkit: encode audio to codes and back."
    )
    parser.add_argument("--version", action="version", version=f"codec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    enc = sub.add_parser("encode", help="audio files or folders -> .codes files")
    enc.add_argument("inputs", nargs="+", type=Path, metavar="IN")
    add_model_option(enc)
    enc.add_argument("-o", "--output", type=Path, help="output .codes file or folder")
    add_rate_options(enc)
    enc.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders")
    _common(enc)

    dec = sub.add_parser("decode", help=".codes files -> audio")
    dec.add_argument("inputs", nargs="+", type=Path, metavar="IN")
    add_model_option(dec)
    dec.add_argument("-o", "--output", type=Path, help="output audio file or folder")
    dec.add_argument("--sr", type=_sample_rate, help="output sample rate (default: the model's)")
    dec.add_argument("--format", choices=["wav", "flac"], default="wav")
    dec.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders")
    _common(dec)

    tok = sub.add_parser("tokenize", help="a dataset -> token-stream shards for language models")
    tok.add_argument("inputs", nargs="+", type=Path, metavar="DATA")
    add_model_option(tok)
    tok.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_rate_options(tok)
    tok.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders")
    tok.add_argument("--shard-size", type=_at_least(1), default=256, help="files per shard")
    _common(tok)

    ev = sub.add_parser("eval", help="quality against bitrate, optionally beside Opus")
    ev.add_argument("inputs", nargs="*", type=Path, metavar="DATA")
    add_model_option(ev)
    ev.add_argument("--files-from", type=Path, help="a text file with one audio path a line")
    ev.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders")
    ev.add_argument(
        "--bandwidths", type=_positive, nargs="+", help="kbps to test (default: every level count)"
    )
    ev.add_argument("--compare", choices=["opus"], action="append", default=[])
    ev.add_argument(
        "--opus-kbps",
        type=_positive,
        nargs="+",
        help="Opus rates to compare (default: 6 8 10 12 16)",
    )
    ev.add_argument(
        "--metrics",
        nargs="+",
        choices=["pesq", "stoi", "dnsmos"],
        help="optional metrics to run where installed (default: all)",
    )
    ev.add_argument("-o", "--output", type=Path, default=Path("eval"), help="report folder")
    ev.add_argument(
        "--spectrograms", type=_at_least(0), default=3, help="files to draw (default 3)"
    )
    ev.add_argument(
        "--listen-clips",
        type=_at_least(0),
        default=6,
        help="files rendered with players into index.html (default 6)",
    )
    ev.add_argument(
        "--listen-seconds",
        type=_positive,
        default=10.0,
        help="each rendered file is cut to its first S seconds (default 10)",
    )
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")

    mushra = sub.add_parser(
        "mushra", help="a blind MUSHRA listening test from an eval report, and its results"
    )
    steps = mushra.add_subparsers(dest="step", metavar="STEP", required=True)
    page = steps.add_parser(
        "page", help="an eval report folder -> one self-contained HTML test page"
    )
    page.add_argument("report", type=Path, metavar="REPORT_DIR", help="a `codec eval -o` folder")
    page.add_argument(
        "-o", "--output", type=Path, help="the test page (default: REPORT_DIR/mushra.html)"
    )
    page.add_argument(
        "--conditions",
        nargs="+",
        metavar="CODEC:KBPS",
        help="what to test, e.g. codec:6 opus:6 opus:8 (default: every one in the report)",
    )
    page.add_argument("--trials", type=_at_least(1), help="at most N clips (default: all)")
    page.add_argument("--title", help="the page's title")
    agg = steps.add_parser(
        "aggregate", help="listeners' ratings files -> means and 95%% intervals, post-screened"
    )
    agg.add_argument("ratings", nargs="+", type=Path, metavar="RATINGS.json")
    agg.add_argument(
        "-o", "--output", type=Path, help="also write mushra.md, mushra.json (and mushra.png)"
    )

    train = sub.add_parser(
        "train", help="train a codec (Hydra overrides, e.g. data=folder data.root=DIR)"
    )
    train.add_argument("overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE")

    imp = sub.add_parser(
        "import", help="another codec's checkpoint (EnCodec) -> a model folder of this toolkit"
    )
    imp.add_argument("source", metavar="SRC", help="checkpoint file, folder, or known name")
    imp.add_argument(
        "-o", "--output", type=Path, help="model folder (default: the cache, by model name)"
    )
    imp.add_argument("--from", dest="format", choices=["encodec", "encodec-hf", "dac", "dac-hf"])
    imp.add_argument(
        "--kind",
        choices=["encodec_24khz", "encodec_48khz", "dac_16khz", "dac_24khz", "dac_44khz"],
        help="model kind",
    )
    imp.add_argument("--force", action="store_true", help="replace an existing model folder")

    exp = sub.add_parser("export", help="a model -> ONNX graphs for onnxruntime (docs/onnx.md)")
    exp.add_argument("model", type=Path, metavar="MODEL", help="model folder or short name")
    exp.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_rate_options(exp)
    exp.add_argument("--force", action="store_true", help="replace an existing folder")

    info = sub.add_parser("info", help="describe a .codes file or a saved model")
    info.add_argument(
        "target", type=Path, metavar="FILE_OR_MODEL", help=".codes file, model folder or name"
    )
    return parser


def add_model_option(p: argparse.ArgumentParser) -> None:
    """-m/--model MODEL_DIR, defaulting to $CODEC_MODEL (checked when the model is loaded)."""
    value = os.environ.get("CODEC_MODEL")
    default = Path(value) if value else None
    p.add_argument(
        "-m",
        "--model",
        type=Path,
        default=default,
        help="model folder, or the name of a shipped or imported model (e.g. speech16k)",
    )


def add_rate_options(p: argparse.ArgumentParser) -> None:
    """-b KBPS or -q LEVELS: how many quantizer levels to code with (default: all)."""
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("-b", "--bandwidth", type=_positive, help="target kbps (the most that fits)")
    rate.add_argument("-q", "--levels", type=_at_least(1), help="number of quantizer levels")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--batch-size", type=_at_least(1), default=8, help="files coded together")
    p.add_argument(
        "--chunk-seconds", type=_positive, help="chunk length (default: 1 s causal, 5 s otherwise)"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="float32",
        help="convolution precision (bfloat16: ~2x faster on CPUs with AVX512-BF16)",
    )
    p.add_argument(
        "--runtime",
        choices=["torch", "onnx"],
        default="torch",
        help="onnx: run exported graphs on onnxruntime (CPU; exported once into the cache)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def collect(inputs: list[Path], suffixes: set[str], recursive: bool, errors: list[str]):
    """Expand files and folders into (file, folder it was found in or None) pairs."""
    found = []
    for item in inputs:
        if item.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in item.glob(pattern) if p.suffix.lower() in suffixes)
            if not files:
                errors.append(f"{item}: no {'/'.join(sorted(suffixes))} files in this folder")
            found.extend((p, item) for p in files if p.is_file())
        else:
            found.append((item, None))
    return found


def output_path(source: Path, root: Path | None, output: Path | None, suffix: str, many: bool):
    """Where the result for `source` goes: next to it, at `output` (one input), or inside the
    folder `output`, mirroring the structure under `root`."""
    if output is None:
        return source.with_suffix(suffix)
    if not many and output.suffix and not output.is_dir():
        return output
    relative = source.relative_to(root) if root is not None else Path(source.name)
    return output / relative.with_suffix(suffix)


def plan_outputs(files, output, suffix: str, many: bool, force: bool, errors: list[str]):
    """(source, target) pairs; a target that exists (without --force), that two inputs would
    both write, or that is one of the inputs is an error for the input, not an overwrite."""
    todo, claimed = [], {}
    inputs = {os.path.realpath(source) for source, _ in files}  # realpath: loops do not raise
    for source, root in files:
        target = output_path(source, root, output, suffix, many)
        if os.path.realpath(target) in inputs:  # even with --force: the input would be lost
            errors.append(f"{source}: the output {target} is an input; choose another -o")
        elif target in claimed:
            errors.append(f"{source}: would write {target}, as {claimed[target]} does; rename one")
        elif target.exists() and not force:
            errors.append(f"{target}: exists (use --force to overwrite)")
        else:
            claimed[target] = source
            todo.append((source, target))
    return todo


def progress_bar(items, quiet: bool, desc: str, total: int | None = None):
    """`items`, shown as a per-file progress bar on stderr when it is a terminal."""
    if quiet or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", total=total)


def _load_model(path: Path | None, device: str, precision: str = "float32", runtime: str = "torch"):
    from codec.models import Codec
    from codec.models.names import resolve_model
    from codec.nn import cpu_isa, native_bf16

    if path is None:
        raise UsageError("no model given: pass -m MODEL_DIR or set CODEC_MODEL")
    device = _usable_device(device)
    if precision == "bfloat16" and device.type == "cpu" and not native_bf16():
        raise UsageError(
            f"--precision bfloat16: this CPU ({cpu_isa()}) has no native bf16 arithmetic and "
            "would run many times slower than float32; use float32"
        )
    if runtime == "onnx":
        _check_onnx(device, precision)
    model = Codec.from_pretrained(resolve_model(path)).to(device)
    model.precision = precision
    if runtime == "onnx":
        import torch

        from codec.runtime import use_onnx

        log = lambda line: print(f"note: {line}", file=sys.stderr, flush=True)  # noqa: E731
        use_onnx(model, threads=torch.get_num_threads(), log=log)
    return model


def _check_onnx(device, precision: str) -> None:
    if device.type != "cpu" or precision != "float32":
        raise UsageError("--runtime onnx runs float32 on the CPU (--device cpu)")
    missing = [m for m in ("onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--runtime onnx needs {', '.join(missing)}: pip install 'codec[onnx]'")


def run_export(args) -> None:
    from codec.models import Codec
    from codec.models.names import resolve_model
    from codec.runtime import export_model

    _check_onnx(_usable_device("cpu"), "float32")
    model = Codec.from_pretrained(resolve_model(args.model), inference=False)
    levels = model.levels_for(args.bandwidth, args.levels)
    folder = export_model(model, args.output, levels=levels, force=args.force)
    print(
        f"exported {model.model_id} to {folder} (encoder at {levels} levels, "
        f"{model.bitrate(levels) / 1000:.3g} kbps"
        + ("; one-frame streaming steps" if model.causal and model.segmentation is None else "")
        + ")"
    )


def run_import(args) -> None:
    from codec.models.importing import import_checkpoint, save_new_folder
    from codec.models.names import models_dir

    model = import_checkpoint(args.source, fmt=args.format, kind=args.kind)
    output = args.output or models_dir() / model.model_id
    save_new_folder(model, output, force=args.force)
    print(
        f"imported {args.source} as {model.model_id} into {output} "
        f"({', '.join(f'{b:g}' for b in model.bandwidths[:3])}... kbps; use -m {output})"
    )


def _usable_device(name: str):
    import torch

    try:
        device = torch.device(name)
        torch.empty(0, device=device)  # fails here when the device does not exist on this machine
    except (RuntimeError, AssertionError) as err:
        raise UsageError(f"--device {name}: not usable here ({first_line(err)})") from None
    return device


def run_encode(args, errors: list[str]) -> int:
    from codec.audio import AudioError
    from codec.codes_file import write_codes
    from codec.coding import Windowing, codes_header, encode_files

    model = _load_model(args.model, args.device, args.precision, args.runtime)
    levels = model.levels_for(args.bandwidth, args.levels)
    windowing = Windowing.for_model(model, args.chunk_seconds)
    files = collect(args.inputs, AUDIO_SUFFIXES, args.recursive, errors)
    many = len(files) > 1 or any(p.is_dir() for p in args.inputs)
    done = 0
    todo = plan_outputs(files, args.output, ".codes", many, args.force, errors)
    coded = encode_files(model, [source for source, _ in todo], levels, windowing, args.batch_size)
    for (_, target), (audio, codes) in progress_bar(
        zip(todo, coded), args.quiet, "encode", total=len(todo)
    ):
        if isinstance(codes, AudioError):
            errors.append(str(codes))
            continue
        try:
            write_codes(target, codes, codes_header(model, audio, codes, windowing))
            done += 1
        except OSError as err:
            errors.append(f"{target}: could not write ({err.strerror or err})")
    print(
        f"encoded {done} of {len(files)} file(s) at {model.bitrate(levels) / 1000:.3g} kbps "
        f"({levels} levels); {len(errors)} problem(s)",
        file=sys.stderr,
    )
    return done


def run_decode(args, errors: list[str]) -> int:
    import torch

    from codec.audio import resample, write_audio, write_audio_stream
    from codec.codes_file import CodesFormatError, check_model, read_codes
    from codec.coding import decode_chunks, windowing_of
    from codec.models.ecdc import EcdcFormatError, ecdc_as_codes, read_ecdc

    models = ModelsByName(args)
    files = collect(args.inputs, {".codes", ".ecdc"}, args.recursive, errors)
    many = len(files) > 1 or any(p.is_dir() for p in args.inputs)
    done = 0
    todo = plan_outputs(files, args.output, f".{args.format}", many, args.force, errors)
    for source, target in progress_bar(todo, args.quiet, "decode"):
        try:
            if source.suffix == ".ecdc":  # names its model, carries no weights hash
                codes, header = ecdc_as_codes(read_ecdc(source))
                model = models.get(header.model_id)
                if header.model_id != model.model_id:
                    raise CodesFormatError(
                        f"made by {header.model_id}, not by {model.model_id} (-m)"
                    )
            else:
                codes, header = read_codes(source)
                model = models.get(header.model_id)
                check_model(header, model.model_id, model.model_hash)
        except (CodesFormatError, EcdcFormatError, FileNotFoundError) as err:
            errors.append(about(source, err))
            continue
        windowing = windowing_of(model, header)
        rate = args.sr or model.sample_rate
        try:
            with torch.inference_mode():
                pieces = decode_chunks(model, codes, header.length, windowing, header.gains or ())
                if rate == model.sample_rate:  # chunk by chunk: memory independent of length
                    write_audio_stream(target, pieces, rate, model.channels)
                else:
                    wav = resample(torch.cat(list(pieces), -1), model.sample_rate, rate)
                    write_audio(target, wav, rate)
            done += 1
        except OSError as err:
            errors.append(f"{target}: could not write ({err.strerror or err})")
    print(f"decoded {done} of {len(files)} file(s); {len(errors)} problem(s)", file=sys.stderr)
    return done


class ModelsByName:
    """The -m model for every file, or without -m the model each file names (a shipped or
    imported model of that name), each loaded once."""

    def __init__(self, args):
        self.args, self.loaded = args, {}
        if args.model is not None:
            self.loaded[None] = self._load(args.model)

    def _load(self, path):
        return _load_model(path, self.args.device, self.args.precision, self.args.runtime)

    def get(self, model_id: str):
        if None in self.loaded:
            return self.loaded[None]
        if model_id not in self.loaded:
            from codec.models.names import resolve_model

            try:
                folder = resolve_model(model_id)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"made by model {err}; pass -m MODEL_DIR") from None
            self.loaded[model_id] = self._load(folder)
        return self.loaded[model_id]


def run_tokenize(args, errors: list[str]) -> int:
    """Shards of codes; resumable, and split across torchrun ranks by shard (RANK, WORLD_SIZE)."""
    from codec.coding import Windowing, encode_files, model_header_fields
    from codec.shards import tokenize

    model = _load_model(args.model, args.device, args.precision, args.runtime)
    levels = model.levels_for(args.bandwidth, args.levels)
    windowing = Windowing.for_model(model, args.chunk_seconds)
    found = collect(args.inputs, AUDIO_SUFFIXES, args.recursive, errors)
    roots = {root for _, root in found}
    root = roots.pop() if len(roots) == 1 else None

    def encode(paths):
        coded = encode_files(model, paths, levels, windowing, args.batch_size)
        return [codes for _, codes in coded]

    meta = {
        **model_header_fields(model, levels),
        "layout": "rows are frames; column k = level * groups + group",
    }
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    counts = tokenize(
        [p for p, _ in found], root, args.output, encode, meta, args.shard_size, rank, world
    )
    for path in counts["removed"]:
        print(f"removed {path}, left by an interrupted write", file=sys.stderr)
    for line in counts["failures"]:
        errors.append(line)
    print(
        f"tokenized {len(found) - counts['failed']} of {len(found)} file(s) at "
        f"{model.bitrate(levels) / 1000:.3g} kbps: {counts['written']} shard(s) written, "
        f"{counts['skipped']} already done; {len(errors)} problem(s)",
        file=sys.stderr,
    )
    return counts["written"]


def run_eval(args, errors: list[str]) -> int:
    from codec.evaluate import (
        OPTIONAL_METRICS,
        OPUS_LADDER,
        OpusUnavailable,
        evaluate,
        write_report,
    )
    from codec.listening import ListeningLimits

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("codec eval draws its plots with matplotlib: pip install 'codec[plot]'")
    model = _load_model(args.model, args.device)
    inputs = list(args.inputs)
    if args.files_from is not None:
        try:
            inputs += [Path(line) for line in read_file_list(args.files_from)]
        except ValueError as err:
            raise UsageError(str(err)) from None
    if not inputs:
        raise UsageError("no audio given: pass files or folders, or --files-from LIST")
    paths = [p for p, _ in collect(inputs, AUDIO_SUFFIXES, args.recursive, errors)]
    bandwidths = args.bandwidths or model.bandwidths
    listening = ListeningLimits(args.listen_clips, args.listen_seconds)
    try:
        result = evaluate(
            model,
            paths,
            bandwidths,
            compare_opus="opus" in args.compare,
            spectrogram_dir=args.output / "spectrograms",
            spectrograms=args.spectrograms,
            progress=lambda items: progress_bar(items, args.quiet, "eval"),
            opus_kbps=tuple(args.opus_kbps or OPUS_LADDER),
            optional_metrics=tuple(args.metrics or OPTIONAL_METRICS),
            listening=listening,
        )
    except OpusUnavailable as err:
        raise UsageError(str(err)) from None
    for problem in result.problems:
        errors.append(problem)
    written = write_report(result, args.output, model, listening)
    print((args.output / "report.md").read_text(), end="")
    for name, why in result.skipped_metrics.items():
        print(f"note: {name} skipped: {why}", file=sys.stderr)
    print(
        f"evaluated {len(paths) - len(result.problems)} of {len(paths)} file(s); "
        f"wrote {', '.join(p.name for p in written)} in {args.output}; "
        f"{len(errors)} problem(s)",
        file=sys.stderr,
    )
    return len(paths) - len(result.problems)


def run_mushra(args) -> int:
    from codec import mushra

    if args.step == "page":
        try:
            chosen = [mushra.parse_condition(c) for c in args.conditions or []] or None
        except ValueError as err:
            raise UsageError(f"--conditions {err}") from None
        test = mushra.build_test(args.report, chosen, args.trials, args.title)
        target = args.output or args.report / "mushra.html"
        mushra.write_test_page(target, test)
        for note in test["notes"]:
            print(f"note: {note}", file=sys.stderr)
        print(
            f"wrote {target}: {len(test['trials'])} trial(s) of {len(test['conditions'])} "
            f"sounds (hidden reference, 2 anchors, {len(test['conditions']) - 3} condition(s)), "
            f"{target.stat().st_size / 2**20:.1f} MiB; test id {test['test_id']}",
            file=sys.stderr,
        )
        return 0
    sessions, problems = mushra.read_sessions(args.ratings)
    if problems:  # all or nothing: a result without some listener's file would mislead
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        print(
            f"codec mushra aggregate: {len(problems)} bad file(s); nothing aggregated",
            file=sys.stderr,
        )
        return 1
    results = mushra.aggregate(sessions)
    print(mushra.results_markdown(sessions, results), end="")
    if args.output is not None:
        written = mushra.write_results(args.output, sessions, results)
        print(f"wrote {', '.join(p.name for p in written)} in {args.output}", file=sys.stderr)
    if not results:
        print(
            "codec mushra aggregate: every listener was excluded by post-screening",
            file=sys.stderr,
        )
        return 1
    return 0


def run_info(args) -> None:
    from codec.models.names import resolve_model

    target: Path = args.target
    if not target.exists() and target.suffix.lower() not in (".codes", ".ecdc"):
        target = resolve_model(target)  # a shipped or imported model's name, as -m takes
    if target.is_dir():
        model = _load_model(target, "cpu")
        c = model.config
        params = sum(p.numel() for p in model.parameters())
        print(f"model {c.model_id} ({target}), weights hash {model.model_hash}")
        print(
            f"  {c.sample_rate} Hz, {c.channels} channel(s), hop {model.hop_length} "
            f"({model.frame_rate:g} frames/s), {'causal' if model.causal else 'non-causal'}"
        )
        parts = {kind: c.part(kind)[0] for kind in ("encoder", "quantizer", "decoder")}
        print("  parts: " + ", ".join(f"{kind} {name}" for kind, name in parts.items()))
        print(
            f"  quantizer: {model.groups} group(s) x {model.levels} levels x "
            f"{model.codebook_size} codes"
        )
        print("  bandwidths (kbps): " + ", ".join(f"{b:.3g}" for b in model.bandwidths))
        print(f"  parameters: {params / 1e6:.2f} M")
        return
    from codec.codes_file import read_codes
    from codec.models.ecdc import ecdc_as_codes, read_ecdc

    if target.suffix == ".ecdc":
        codes, h = ecdc_as_codes(read_ecdc(target))
    else:
        codes, h = read_codes(target)
    print(
        f"{target}: {h.frames} frames, {h.groups} group(s) x {h.levels} levels x "
        f"{h.codebook_size} codes"
    )
    print(f"  model {h.model_id}, weights hash {h.weights_hash or 'not recorded (.ecdc)'}")
    print(
        f"  {h.sample_rate} Hz, {h.channels} channel(s), {h.length} samples "
        f"({h.duration:.3f} s), {h.frame_rate:g} frames/s"
    )
    print(f"  bitrate {h.bitrate / 1000:.3g} kbps; file {target.stat().st_size} bytes")
    if h.gains:
        print("  gains (dB): " + ", ".join(f"{g:+.1f}" for g in h.gains))


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler's stop, or torchrun ending the other ranks when one fails) ends a
    command as Ctrl-C does: the write in progress removes its temp file, exit code 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    errors = Problems()
    try:
        if args.command == "info":
            run_info(args)
            return 0
        if args.command == "mushra":
            return run_mushra(args)
        if args.command == "import":
            run_import(args)
            return 0
        if args.command == "export":
            run_export(args)
            return 0
        if args.command == "train":
            from codec.train import main as train

            train(args.overrides)
            return 0
        runner = {
            "encode": run_encode,
            "decode": run_decode,
            "tokenize": run_tokenize,
            "eval": run_eval,
        }[args.command]
        with sigterm_as_interrupt():
            runner(args, errors)
    except UsageError as err:
        print(f"codec {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # outputs are renamed into place only when complete: what exists is whole
        print(f"codec {args.command}: interrupted; no partial outputs left", file=sys.stderr)
        return 130
    except OSError as err:  # a model folder or a single target that cannot be used
        where = f"{err.filename}: " if err.filename else ""
        print(f"codec {args.command}: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"codec {args.command}: {err}", file=sys.stderr)
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

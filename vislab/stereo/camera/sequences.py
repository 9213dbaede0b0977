"""Whole sequences: a folder pair, two videos, or one side-by-side video, predicted frame by frame.

Resumable: every file is written atomically and a frame's ``.npy`` disparity is written last, so a frame whose
``frames/NAME_disp.npy`` exists is complete and a restarted run skips it. ``sequence.json`` records the settings
that shape the outputs; a restart with other settings into the same folder is refused rather than mixing two
runs' frames. The rectification (calibrated or automatic) is built once, from the sequence's first pair: a rig's
geometry does not change between frames, and per-frame automatic rectification would make the disparity's
offset jump from frame to frame.
"""

import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vislab.core.errors import VislabError, require_file
from vislab.stereo.camera.writers import save_json, save_npy, save_png

VIDEO_FPS_DEFAULT = 10.0  # the disparity video of a folder sequence (folders have no frame rate)


@dataclass(frozen=True)
class Frame:
    """One pair of a sequence: ``name`` (unique, sortable) and uint8 RGB or float RGB images."""

    name: str
    left: np.ndarray
    right: np.ndarray


@dataclass
class SequenceSource:
    """Where the frames come from: ``kind`` (folders / videos / sbs), a description, the frame count when known
    (videos estimate it), the frame rate and the frame iterator factory."""

    kind: str
    description: str
    count: int | None
    fps: float
    frames: Any  # Callable[[], Iterator[Frame]]


def _open_video(path: str | os.PathLike) -> cv2.VideoCapture:
    path = Path(path)
    require_file(path, "video")
    # FFmpeg logs its own complaint about a corrupt file on stderr ("moov atom not found"); the one-line error
    # below says it, so keep FFmpeg quiet (read when OpenCV's FFmpeg backend opens a file; the user's value wins).
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cap = cv2.VideoCapture(str(path))
    ok = cap.isOpened()
    frame = cap.read()[1] if ok else None
    if not ok or frame is None or frame.ndim != 3 or frame.shape[0] < 2 or frame.shape[1] < 2:
        cap.release()
        raise VislabError(f"cannot read video {path}: not a video OpenCV can decode (or it has no frames)")
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return cap


def _frame_count(cap: cv2.VideoCapture) -> int | None:
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return n if n > 0 else None


def _read_frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def open_sequence(*, left_dir: str | None = None, right_dir: str | None = None,
                  video: list[str] | tuple[str, str] | None = None, sbs: str | None = None,
                  every: int = 1) -> SequenceSource:
    """The sequence the options name (exactly one of: ``left_dir`` + ``right_dir``, ``video`` = (left, right),
    ``sbs``); every ``every``-th frame. Unreadable videos and folders that do not pair up are one-line errors
    before anything is written."""
    given = [bool(left_dir or right_dir), bool(video), bool(sbs)]
    if sum(given) != 1:
        raise VislabError("give one sequence: --left-dir and --right-dir, --video LEFT RIGHT, or --sbs VIDEO")
    if every < 1:
        raise VislabError(f"--every must be at least 1, got {every}")
    if left_dir or right_dir:
        if not (left_dir and right_dir):
            raise VislabError("a folder sequence needs both --left-dir and --right-dir")
        from vislab.stereo.camera.calibrate import list_pairs
        from vislab.stereo.io import read_image

        pairs = list_pairs(left_dir, right_dir)[::every]

        def folder_frames() -> Iterator[Frame]:
            for lp, rp in pairs:
                yield Frame(lp.stem, read_image(lp), read_image(rp))

        return SequenceSource("folders", f"{len(pairs)} pairs from {left_dir} and {right_dir}", len(pairs),
                              VIDEO_FPS_DEFAULT, folder_frames)
    if video:
        lpath, rpath = video
        caps = [_open_video(lpath), _open_video(rpath)]
        counts = [_frame_count(c) for c in caps]
        fps = caps[0].get(cv2.CAP_PROP_FPS) or VIDEO_FPS_DEFAULT
        for c in caps:
            c.release()
        count = min(counts) if None not in counts else None  # type: ignore[type-var]

        def video_frames() -> Iterator[Frame]:
            left_it, right_it = _read_frames(_open_video(lpath)), _read_frames(_open_video(rpath))
            for i, (left, right) in enumerate(zip(left_it, right_it, strict=False)):
                if i % every == 0:
                    yield Frame(f"frame_{i:06d}", left, right)

        note = "" if counts[0] == counts[1] else f" (frame counts differ: {counts[0]} and {counts[1]}; " \
                                                  "the shorter one ends the sequence)"
        return SequenceSource("videos", f"videos {lpath} and {rpath}{note}",
                              None if count is None else (count + every - 1) // every, float(fps), video_frames)
    assert sbs is not None
    cap = _open_video(sbs)
    count, fps = _frame_count(cap), cap.get(cv2.CAP_PROP_FPS) or VIDEO_FPS_DEFAULT
    cap.release()

    def sbs_frames() -> Iterator[Frame]:
        for i, frame in enumerate(_read_frames(_open_video(sbs))):
            if i % every == 0:
                half = frame.shape[1] // 2  # an odd width drops its last column
                yield Frame(f"frame_{i:06d}", frame[:, :half], frame[:, half:2 * half])

    return SequenceSource("sbs", f"side-by-side video {sbs}", None if count is None else (count + every - 1) // every,
                          float(fps), sbs_frames)


@dataclass(frozen=True)
class SequenceOptions:
    """How to predict every frame (the CLI's options, typed)."""

    method: str = "psmnet"
    weights: str | None = None
    max_disp: Any = None
    device: str = "auto"
    align_corners: bool = False
    estimator: str | None = None
    estimator_window: int | None = None
    lr_check: float | None = None
    calib: Any = None
    rectify: str = "none"
    swap: bool = False
    check: bool = True
    focal: float | None = None
    baseline: float | None = None
    disp_video: bool = False

    def settings(self) -> dict[str, Any]:
        """What shapes the outputs (a resumed run must have the same)."""
        d = asdict(self)
        d.pop("device")
        d.pop("disp_video")
        d["calib"] = [str(c) for c in self.calib] if isinstance(self.calib, list | tuple) else (
            None if self.calib is None else str(self.calib))
        return d


@dataclass
class SequenceSummary:
    total: int = 0
    predicted: int = 0
    resumed: int = 0
    warned: int = 0
    first_warning: str | None = None
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = list(self.notes)
        out.append(f"{self.total} frames: {self.predicted} predicted, {self.resumed} already done (skipped)")
        if self.warned:
            out.append(f"warning: the checks warned on {self.warned} of {self.predicted} predicted frames; the "
                       f"first: {self.first_warning}")
        out += [f"wrote {p}" for p in self.written]
        return out


def predict_sequence(source: SequenceSource, out: str | os.PathLike, options: SequenceOptions) -> SequenceSummary:
    """Predict every frame of ``source`` into ``out/frames`` (``NAME_disp.png``, ``NAME_depth.npy`` with a metric
    camera, ``NAME_checks.json``, ``NAME_disp.npy``), skipping frames a previous run finished."""
    from vislab.core.logging import make_output_dir, progress
    from vislab.stereo.camera.pipeline import build_rectifier, prepare_pair
    from vislab.stereo.geometry import disparity_to_depth
    from vislab.stereo.predict import as_rgb_image, predict_disparity
    from vislab.stereo.visualize import colorize_disparity

    frames_iter = source.frames()
    first = next(frames_iter, None)
    if first is None:
        raise VislabError(f"no frames in {source.description}")
    out = Path(out)
    manifest_path = out / "sequence.json"
    manifest: dict[str, Any] | None = None
    if manifest_path.is_file():
        import json

        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            raise VislabError(f"{manifest_path} is not a sequence manifest; use another --out") from None
        if manifest.get("settings") != options.settings() or manifest.get("source") != source.kind:
            raise VislabError(f"{out} holds a sequence predicted with other settings; use another --out (or delete "
                              "it to start again)")
    frames_dir = make_output_dir(out / "frames")
    # One rectification for the whole rig, from the first pair (after --swap, as prepare_pair would).
    l0, r0 = as_rgb_image(first.left, "left frame"), as_rgb_image(first.right, "right frame")
    if options.swap:
        l0, r0 = r0, l0
    rectifier, _, _ = build_rectifier(l0, r0, calib=options.calib, rectify=options.rectify)
    summary = SequenceSummary()
    if rectifier is not None:
        summary.notes.append(rectifier.describe() + " (built from the first pair, used for every frame)")
    colour_max = None if manifest is None else manifest.get("colour_max")

    def all_frames() -> Iterator[Frame]:
        yield first
        yield from frames_iter

    names: list[str] = []
    for frame in progress(all_frames(), desc="frames", total=source.count):
        names.append(frame.name)
        summary.total += 1
        done = frames_dir / f"{frame.name}_disp.npy"
        if done.is_file():
            summary.resumed += 1
            continue
        prepared = prepare_pair(frame.left, frame.right, calib=options.calib if rectifier is None else None,
                                rectify="none", swap=options.swap, check=options.check,
                                max_disp=options.max_disp if isinstance(options.max_disp, int) else None,
                                focal=options.focal, baseline=options.baseline, rectifier=rectifier)
        result = predict_disparity(prepared.left, prepared.right, method=options.method, weights=options.weights,
                                   max_disp=options.max_disp, align_corners=options.align_corners,
                                   device=options.device, estimator=options.estimator,
                                   estimator_window=options.estimator_window, lr_check=options.lr_check)
        disp = result.disparity
        if colour_max is None:  # one colour scale for the whole sequence, so the video does not flicker
            valid = np.isfinite(disp) & (disp > 0)
            colour_max = float(np.percentile(disp[valid], 99) * 1.25) if valid.any() else 1.0
        if manifest is None:
            manifest = {"source": source.kind, "description": source.description, "settings": options.settings(),
                        "colour_max": colour_max}
            save_json(manifest_path, manifest)
        if prepared.checks is not None and prepared.checks.warnings:
            summary.warned += 1
            summary.first_warning = summary.first_warning or f"{frame.name}: {prepared.checks.warnings[0]}"
        save_png(frames_dir / f"{frame.name}_disp.png", colorize_disparity(disp, max_disp=colour_max))
        if prepared.camera is not None:
            cam = prepared.camera
            save_npy(frames_dir / f"{frame.name}_depth.npy", disparity_to_depth(disp, cam.focal, cam.baseline,
                                                                                   cam.doffs))
        save_json(frames_dir / f"{frame.name}_checks.json", {**prepared.report(), "info": result.info,
                                                              "seconds": result.seconds})
        save_npy(done, disp)  # last: its presence marks the frame complete
        summary.predicted += 1
    summary.written.append(frames_dir)
    if options.disp_video:
        summary.written.append(write_disparity_video(out / "disparity.mp4", [frames_dir / f"{n}_disp.png"
                                                                             for n in names], source.fps))
    return summary


def write_disparity_video(path: Path, pngs: list[Path], fps: float) -> Path:
    """The colourised disparity frames as an MP4 (mp4v), written to a temporary name and renamed into place."""
    from PIL import Image

    first = np.asarray(Image.open(pngs[0]).convert("RGB"))
    h, w = first.shape[:2]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.mp4", dir=path.parent)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise VislabError(f"cannot write {path}: OpenCV has no MP4 encoder here")
        for p in pngs:
            writer.write(cv2.cvtColor(np.asarray(Image.open(p).convert("RGB")), cv2.COLOR_RGB2BGR))
        writer.release()
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path

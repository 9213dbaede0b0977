"""The ``vislab app`` page: Gradio layout, the two API endpoints, and a launcher bound to 127.0.0.1.

Privacy and offline use: the server listens on 127.0.0.1 unless told otherwise, never opens a share link,
Gradio's analytics and version check and Hugging Face's telemetry are switched off before Gradio is imported,
and Gradio (6.17 or newer) serves its own fonts and scripts, so the page loads nothing from outside the
machine (the browser test records every request to check this).
"""

from __future__ import annotations

import atexit
import base64
import functools
import inspect
import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Must be set before gradio (and huggingface_hub, which it imports) read them.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_SHARE"] = "False"

import gradio as gr  # noqa: E402
from gradio.data_classes import ImageData  # noqa: E402

from vislab.app.digits import read_digit  # noqa: E402
from vislab.app.stereo_tab import ExampleRegistry, load_example_pair, stream_stereo  # noqa: E402
from vislab.app.uploads import ImageFiles  # noqa: E402
from vislab.core.errors import VislabError  # noqa: E402

DIGIT_CONCURRENCY = 4  # MNIST models take milliseconds; more at once only adds contention on a 2-core laptop
MAX_FILE_SIZE = "25mb"  # larger uploads are refused before they are stored, let alone decoded
OUTPUT_BUTTONS = ["download", "fullscreen"]
INTRO = ("**vislab**: the two labs in your browser. Draw a digit for the MNIST models, or compare PSMNet with "
         "SGBM on a stereo pair. Everything runs on this machine.")
LEGEND = ("Disparity: bright = near, both maps on one colour scale. Confidence: yellow = sure. Depth (from PSMNet, "
          "for calibrated pairs: the Motorcycle example): red = near. Error (pairs with ground truth): black = "
          "right, red = 5 px or more off, grey = no ground truth.")


def uploaded_image(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose function receives the uploaded file's path unread.

    Gradio's own decoding would turn a non-image or corrupt upload into its generic message; reading the file
    ourselves gives a precise one (``read_upload`` / ``open_photo``). The method is replaced on the instance:
    a subclass would make Gradio write a ``.pyi`` stub next to this module at import time.
    """
    image = gr.Image(type="filepath", sources=["upload"], format="png", **kwargs)

    def preprocess(payload: ImageData | None) -> str | None:
        if payload is None:
            return None
        if payload.path:
            return payload.path
        url = payload.url or ""
        if url.startswith("data:") and "," in url:  # pasted from the clipboard: base64 in the request
            fd, path = tempfile.mkstemp(prefix="vislab_paste_", dir=image.GRADIO_CACHE)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(url.split(",", 1)[1]))
            return path
        raise gr.Error("the upload arrived without a file; try again", print_exception=False)

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def output_image(label: str, elem_id: str) -> gr.Image:
    """A result image: lossless PNG, no upload, no "share" button (it offers to upload the image to Hugging Face)."""
    return gr.Image(label=label, format="png", interactive=False, buttons=OUTPUT_BUTTONS, elem_id=elem_id)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into a one-line message on the page (and for API clients) instead of a traceback.

    VislabError is the user's input; anything else is a bug, whose traceback goes to the server's console.
    Either way the server keeps running and the next request works. A generator (an answer given in stages)
    stays one, so that Gradio streams its stages.
    """

    def page_error(exc: Exception) -> gr.Error:
        if isinstance(exc, gr.Error):
            return exc
        if isinstance(exc, VislabError):
            return gr.Error(str(exc), print_exception=False)
        traceback.print_exc(file=sys.stderr)  # a bug, not the user's input
        first = (str(exc).strip().splitlines() or [""])[0]
        return gr.Error(f"unexpected error ({type(exc).__name__}: {first}); see the server's console",
                        print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stages(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- a request must never take the page down
                raise page_error(exc) from None

        return stages

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- a request must never take the page down
            raise page_error(exc) from None

    return wrapper


def _model_titles(checkpoints: list[Path]) -> list[str]:
    """Each checkpoint's heading, read once at start-up (which also rejects a bad ``--mnist-checkpoint``)."""
    from vislab.mnist.models import load_mnist_model

    titles = []
    for path in checkpoints:
        _, ckpt = load_mnist_model(path)
        titles.append(f"{ckpt.get('model_name', '?')} ({path.name})")
    return titles


def build_app(mnist_checkpoints: list[str | os.PathLike] | None = None,
              stereo_weights: str | os.PathLike | None = None, device: str = "auto",
              max_pixels: int | None = None) -> gr.Blocks:
    """The page: a Digits tab and a Stereo tab, with the API endpoints ``predict_digit`` and ``predict_stereo``.

    Args:
        mnist_checkpoints: extra MNIST checkpoints shown after the shipped ``mlp`` and ``cnn``.
        stereo_weights: a PSMNet checkpoint (None: the shipped one).
        device: where the models run (``auto``, ``cpu``, ``cuda``, ``mps``).
        max_pixels: stereo pairs larger than this are reduced (None: a budget for the device).
    """
    from vislab.core.device import pick_device
    from vislab.mnist.pretrained import shipped_checkpoints

    pick_device(device)  # an unavailable device stops the start with one line, not every later request
    checkpoints = shipped_checkpoints() + [Path(p) for p in mnist_checkpoints or []]
    if not checkpoints:
        raise VislabError("no MNIST weights: the shipped ones are missing and no --mnist-checkpoint was given")
    titles = _model_titles(checkpoints)
    if stereo_weights is not None and not Path(stereo_weights).is_file():
        raise VislabError(f"stereo weights not found: {stereo_weights}")
    registry = ExampleRegistry()
    # Every image goes out as a PNG file written once (ImageFiles says why: bursts of identical requests).
    files = ImageFiles()
    atexit.register(files.close)

    @user_errors
    def predict_digit(sketch: Any, photo: str | None) -> tuple[Any, ...]:
        out = read_digit(sketch, photo, checkpoints, device)
        return (out.status, files.png(out.seen), out.data, *out.labels)

    # Gradio recognises the progress bar by this default (one object; it binds it to each request itself).
    @user_errors
    def predict_stereo(left: str | None, right: str | None, rectify_auto: bool = False, swap: bool = False,
                       calib: list[str] | None = None,
                       progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:  # noqa: B008
        # In stages: PSMNet's own answer as soon as it is there, then the checked one with SGBM (stream_stereo).
        for out in stream_stereo(left, right, registry=registry, weights=stereo_weights, device=device,
                                 max_pixels=max_pixels, progress=lambda share, what: progress(share, desc=what),
                                 rectify="auto" if rectify_auto else "none", swap=bool(swap),
                                 calib=[str(c) for c in calib] if calib else None):
            images = (out.psmnet, out.sgbm, out.confidence, out.depth, out.psmnet_error, out.sgbm_error)
            yield (out.status, *(files.png(image) for image in images), out.data)

    def example(name: str) -> Callable[[], tuple[Any, Any, str]]:
        @user_errors
        def load() -> tuple[Any, Any, str]:
            pair = load_example_pair(name, registry)
            return (files.png(pair.left), files.png(pair.right),
                    f"Loaded **{pair.name}**; computing both disparities...")

        return load

    with gr.Blocks(title="vislab", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Digits", id="digits"):
            with gr.Row():
                with gr.Column(scale=1):
                    sketch = gr.Sketchpad(
                        label="Draw one digit", type="numpy", image_mode="RGBA",
                        canvas_size=(280, 280), fixed_canvas=True, layers=False, transforms=(),
                        brush=gr.Brush(default_size=10, colors=["#000000"], color_mode="fixed"),
                        elem_id="digit-sketchpad")
                    photo = uploaded_image(label="...or upload a photo of one digit (read instead of the drawing)",
                                           height=160, elem_id="digit-photo")
                    digit_button = gr.Button("Predict", variant="primary", elem_id="digit-predict")
                with gr.Column(scale=1):
                    digit_status = gr.Markdown("Pick the brush (left of the canvas), draw one digit, then Predict.",
                                               label="status", elem_id="digit-status")
                    seen = gr.Image(label="What the models saw (28x28 after MNIST preprocessing, enlarged)",
                                    format="png", height=230, interactive=False, buttons=["download"],
                                    elem_id="digit-seen")
                with gr.Column(scale=1):
                    labels = [gr.Label(label=title, num_top_classes=10, elem_id=f"digit-probs-{i}")
                              for i, title in enumerate(titles)]
            with gr.Accordion("Raw result (what the predict_digit API returns)", open=False):
                digit_json = gr.JSON(label="result", elem_id="digit-json")
        with gr.Tab("Stereo", id="stereo"):
            with gr.Row():
                left = uploaded_image(label="Left image", height=240, elem_id="stereo-left")
                right = uploaded_image(label="Right image", height=240, elem_id="stereo-right")
            with gr.Row():
                moto = gr.Button("Example: Middlebury Motorcycle", elem_id="example-motorcycle")
                synth = gr.Button("Example: random synthetic scene", elem_id="example-synthetic")
                stereo_button = gr.Button("Compute disparity", variant="primary", elem_id="stereo-predict")
            with gr.Row():  # for a pair of your own (issue 27): two photos taken side by side, or swapped views
                rectify_auto = gr.Checkbox(False, label="Rectify automatically (from the photos' features)",
                                           elem_id="stereo-rectify")
                swap_views = gr.Checkbox(False, label="Swap the views", elem_id="stereo-swap")
                calib_files = gr.File(label="Calibration (optional): OpenCV YAML, KITTI, Middlebury, or two ROS "
                                            "camera_info files", file_count="multiple", type="filepath",
                                      height=90, elem_id="stereo-calib")
            stereo_status = gr.Markdown("Upload a rectified left/right pair or pick an example.", label="status",
                                        elem_id="stereo-status")
            gr.Markdown(LEGEND)
            with gr.Row():
                psmnet = output_image("PSMNet disparity", "disp-psmnet")
                sgbm = output_image("SGBM disparity", "disp-sgbm")
            with gr.Row():
                confidence = output_image("PSMNet confidence", "confidence")
                depth = output_image("Depth", "depth")
            with gr.Row():
                psmnet_error = output_image("PSMNet error", "error-psmnet")
                sgbm_error = output_image("SGBM error", "error-sgbm")
            with gr.Accordion("Raw result (what the predict_stereo API returns)", open=False):
                stereo_json = gr.JSON(label="result", elem_id="stereo-json")

        # Digits have their own queue, a few at a time: a class's drawings must not wait behind a stereo pair.
        digit_button.click(predict_digit, [sketch, photo], [digit_status, seen, digit_json, *labels],
                           api_name="predict_digit", concurrency_id="digits", concurrency_limit=DIGIT_CONCURRENCY)
        stereo_outputs = [stereo_status, psmnet, sgbm, confidence, depth, psmnet_error, sgbm_error, stereo_json]
        # One stereo prediction at a time, whichever button started it: PSMNet takes the whole CPU and ~1 GB.
        stereo_button.click(predict_stereo, [left, right, rectify_auto, swap_views, calib_files], stereo_outputs,
                            api_name="predict_stereo",
                            concurrency_id="stereo")
        for button, name in ((moto, "motorcycle"), (synth, "synthetic")):
            button.click(example(name), None, [left, right, stereo_status], api_visibility="private").success(
                predict_stereo, [left, right], stereo_outputs, api_visibility="private", concurrency_id="stereo")
    return demo


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for ``--port 0`` and the tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860) -> str:
    """Serve ``demo`` in background threads on ``host:port`` (0: a free port) and return its URL."""
    port = free_port(host) if port == 0 else port
    demo.queue(default_concurrency_limit=1)  # per event (and per concurrency_id): requests wait their turn
    try:
        _, url, _ = demo.launch(
            server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
            quiet=True, show_error=True, max_file_size=MAX_FILE_SIZE, footer_links=["api"], ssr_mode=False,
            mcp_server=False, pwa=False, enable_monitoring=False)
    except OSError as exc:
        text = str(exc).strip()
        why = "the port is in use" if "Cannot find empty port" in text else (text.splitlines() or ["?"])[0]
        raise VislabError(f"cannot serve on {host}:{port}: {why}; pass --port N (0 picks a free one)") from None
    return url


def serve(mnist_checkpoints: list[str] | None = None, stereo_weights: str | None = None, host: str = "127.0.0.1",
          port: int = 7860, device: str = "auto") -> int:
    """Run the app until Ctrl-C, then close the server and return 0."""
    demo = build_app(mnist_checkpoints, stereo_weights, device)
    url = start(demo, host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: other machines can reach this page", file=sys.stderr)
    print(f"vislab app running at {url}  (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping the vislab app", flush=True)
    finally:
        demo.close()
    return 0

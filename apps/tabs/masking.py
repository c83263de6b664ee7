"""Demo tab: each masking strategy drawn over an uploaded image."""
from __future__ import annotations

import numpy as np
from maskworks.apps.mask_gallery import STRATEGY_CHOICES, default_image, mask_for
from maskworks.core.masking.viz import draw_mask


def read_upload(path: str | None, size: int) -> np.ndarray:
    """The uploaded file (and only it) as a ``size`` x ``size`` grayscale array in [0, 1], read by the shared
    image reader; a clear message naming the file when it is not an image."""
    import gradio as gr
    from maskworks.core.datasets import load_image

    if not path:
        raise gr.Error("Upload an image (PNG or JPEG) or pick the example first.")
    return load_image(path, 1, size)[0].numpy()


def render(image: str | None, strategy: str, ratio: float, seed: int, patch: int = 16):
    """Return (overlay image, summary text). Images are resized to 224 x 224 (14 x 14 patches)."""
    import gradio as gr

    from maskworks.core.io import InputError

    try:
        a = read_upload(image, 224)
    except InputError as e:  # clear the last picture and keep the reason on the page
        gr.Warning(e.short())
        return None, f"⚠ **Cannot use {e.short()}**"
    grid = (224 // patch, 224 // patch)
    try:
        m = mask_for(strategy, float(ratio), grid, int(seed), a)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    desc = STRATEGY_CHOICES[strategy][0]
    text = (f"**{strategy}**: {desc}. {int(m.sum())} of {m.numel()} patches hidden "
            f"({float(m.float().mean()):.0%}); seed {int(seed)} reproduces it exactly.")
    return draw_mask(a, m), text


def build_tab() -> None:
    import gradio as gr

    gr.Markdown("Pick a strategy and a ratio: the dark patches are what the encoder never sees.")
    with gr.Row():
        with gr.Column():
            # a File input, not gr.Image: Gradio's image preprocessing would turn a broken upload
            # into a bare "Error"; we read the file ourselves and say what is wrong with it
            image = gr.File(label="image (PNG/JPEG; the example is a real chest X-ray)", value=str(default_image()),
                            file_types=[".png", ".jpg", ".jpeg"], elem_id="mask-input")
            strategy = gr.Dropdown(list(STRATEGY_CHOICES), value="random (MAE)", label="strategy")
            ratio = gr.Slider(0.05, 0.95, value=0.75, step=0.05, label="mask ratio")
            seed = gr.Number(value=0, precision=0, label="seed")
            go = gr.Button("Draw mask", variant="primary", elem_id="draw-mask")
        with gr.Column():
            out = gr.Image(label="masked", elem_id="mask-output", height=300)
            info = gr.Markdown(elem_id="mask-info")
    strategy.change(lambda s: STRATEGY_CHOICES[s][1], strategy, ratio)
    go.click(render, [image, strategy, ratio, seed], [out, info], api_name="masking")

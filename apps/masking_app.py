"""Demo tab: each masking strategy drawn over an uploaded image."""
from __future__ import annotations

import numpy as np

from maskworks.apps.entries.masks import STRATEGY_CHOICES, default_image, load_gray, mask_for
from maskworks.core.masking.viz import draw_mask


def render(image: np.ndarray | None, strategy: str, ratio: float, seed: int, patch: int = 16):
    """Return (overlay image, summary text). Non-square or odd-sized images are resized to 224."""
    import gradio as gr

    if image is None:
        raise gr.Error("Upload an image or pick the example first.")
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., :3].mean(-1)
    if a.max() > 1.0:
        a = a / 255.0
    from PIL import Image

    a = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).resize((224, 224)), dtype=np.float32) / 255.0
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
            image = gr.Image(label="image", type="numpy", image_mode="L", value=str(default_image()), height=300,
                             elem_id="mask-input")
            strategy = gr.Dropdown(list(STRATEGY_CHOICES), value="random (MAE)", label="strategy")
            ratio = gr.Slider(0.05, 0.95, value=0.75, step=0.05, label="mask ratio")
            seed = gr.Number(value=0, precision=0, label="seed")
            go = gr.Button("Draw mask", variant="primary", elem_id="draw-mask")
        with gr.Column():
            out = gr.Image(label="masked", elem_id="mask-output", height=300)
            info = gr.Markdown(elem_id="mask-info")
    strategy.change(lambda s: STRATEGY_CHOICES[s][1], strategy, ratio)
    go.click(render, [image, strategy, ratio, seed], [out, info])

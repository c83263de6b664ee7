"""Demo tab: mask a chest X-ray and see what the shipped image MAE fills in."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=1)
def shipped_model():
    from maskworks.core.training.task import load_trained
    from maskworks.data import data_path

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_trained(data_path("weights", "image-mae-cxr.safetensors"), device)


def reconstruct(image: str | None, ratio: float, seed: int):
    from PIL import Image

    from maskworks.apps.masking_app import read_upload
    from maskworks.core.masking import RandomMasking
    from maskworks.core.masking.viz import draw_mask

    task, model = shipped_model()
    size = model.input_size[0]
    a = read_upload(image, size)
    x = torch.from_numpy(a)[None, None].to(next(model.parameters()).device)
    mask = RandomMasking(float(ratio))(1, model.grid, generator=torch.Generator().manual_seed(int(seed))).to(x.device)
    with torch.no_grad():
        loss = float(model(x, mask).loss)
        rec = model.reconstruct(x, mask)[0, 0].clamp(0, 1).cpu().numpy()
    up = lambda im: np.asarray(Image.fromarray((im * 255).astype(np.uint8)).resize((256, 256), Image.NEAREST))
    masked = draw_mask(a, mask.mask[0].cpu(), grid_lines=False)
    masked = np.asarray(Image.fromarray(masked).resize((256, 256), Image.NEAREST))
    return masked, up(rec), f"Masked-patch MSE: **{loss:.4f}** ({mask.num_masked} of {mask.num_tokens} patches hidden)."


def build_tab() -> None:
    import gradio as gr

    from maskworks.apps.mask_gallery import default_image

    gr.Markdown("The shipped MAE was pre-trained on 539 NIH chest X-rays at 64 px "
                "(`maskworks train image-mae-cxr`). It sees only the visible patches.")
    with gr.Row():
        image = gr.File(label="chest X-ray (PNG/JPEG)", value=str(default_image()), file_types=[".png", ".jpg", ".jpeg"],
                        elem_id="mae-input")
        masked = gr.Image(label="what the encoder sees", height=256, elem_id="mae-masked")
        recon = gr.Image(label="reconstruction", height=256, elem_id="mae-recon")
    with gr.Row():
        ratio = gr.Slider(0.1, 0.95, value=0.75, step=0.05, label="mask ratio")
        seed = gr.Number(value=0, precision=0, label="seed")
        go = gr.Button("Reconstruct", variant="primary", elem_id="mae-go")
    info = gr.Markdown(elem_id="mae-info")
    go.click(reconstruct, [image, ratio, seed], [masked, recon, info])

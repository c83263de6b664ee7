"""The demo's tabs, one module per domain: Gradio UI over the same job modules the CLI calls."""

"""Self-supervised pre-training of CNNs on medical images: SparK (sparse masked modelling, 2-D and 3-D), the
contrastive baseline (MoCo v2), and the label-fraction study that compares them."""

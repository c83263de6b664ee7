"""maskworks.core: the masking core, the generic masked autoencoder, losses and training."""

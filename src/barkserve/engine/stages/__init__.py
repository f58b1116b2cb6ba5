"""The batched engine's stages, in pipeline order: semantic, coarse, fine, codec."""

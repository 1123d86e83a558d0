"""The MOF diffusion generator: building-block embeddings, a CG diffusion model, assembly."""

"""What conditioning a Stable-Diffusion-style U-Net expects, read once when it is loaded.

Its own module so that the prompt reader and the text encoders both use it without
importing each other.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["UNetInfo"]


class UNetInfo:
    """What conditioning a loaded ``UNet2DConditionModel`` expects (read from its modules).

    Attributes:
        cross_attention_dim: width D of the prompt embeddings [L, D] it cross-attends to.
        pooled_dim: width of SDXL's pooled text embedding, None for SD 1.x/2.x.
        time_ids: whether it takes SDXL's six micro-conditioning time ids.
        vae_scale_factor: image pixels per latent pixel (8 for SD's VAE).
        folder: the pipeline folder (with ``text_encoder/`` etc.), or None for a bare U-Net.
        force_zeros_for_empty_prompt: SDXL's rule: no negative prompt means zero embeddings.
        family: which SD generation it belongs to (``sd1``, ``sd2``, ``sdxl``).
        guidance_embedding_dim: width of the guidance embedding an LCM-distilled U-Net takes
            as ``timestep_cond`` (its ``time_cond_proj_dim``): guidance is then an input of
            the net, not classifier-free guidance over two halves; None: no such embedding.
        default_guidance: the guidance scale its pipeline samples with when the user gives
            none (0 for SD-Turbo); None: the SD generation's (7.5, SDXL's 5).
    """

    def __init__(
        self,
        *,
        cross_attention_dim: int,
        pooled_dim: int | None,
        vae_scale_factor: int,
        folder: Path | None,
        force_zeros_for_empty_prompt: bool,
        family: str,
        guidance_embedding_dim: int | None = None,
        default_guidance: float | None = None,
    ) -> None:
        self.cross_attention_dim = cross_attention_dim
        self.pooled_dim = pooled_dim
        self.time_ids = pooled_dim is not None
        self.vae_scale_factor = vae_scale_factor
        self.folder = folder
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.family = family
        self.guidance_embedding_dim = guidance_embedding_dim
        self.default_guidance = default_guidance

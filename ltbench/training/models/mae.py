"""Masked generative pretraining (MGP): the MAE recipe (He et al., CVPR 2022, arXiv:2111.06377)
as LiVT uses it on the long-tailed train set only.

The encoder is the very timm ``VisionTransformer`` that is fine-tuned afterwards, so its
state dict loads into the classifier unchanged. A random ``mask_ratio`` of the patches is
hidden per image; the encoder sees only the visible ones (plus the class token); a light
decoder reconstructs every patch from the encoded ones and mask tokens; the loss is the MSE
on the masked patches only, against per-patch normalised pixels (``norm_pix_loss``).

Position embeddings are fixed 2-D sin-cos tables in the encoder and the decoder, as in MAE
(the class token's is zero); they are frozen while pretraining. The fine-tuned ViT loads the
encoder's as its (learned) ``pos_embed``, so fine-tuning starts from the table.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, (grid_h * grid_w, dim), patches in row-major order.

    MAE's layout: with q = dim / 4 frequencies f_k = 10000^(-k / q), a patch in row r and
    column c gets [sin(c f), cos(c f), sin(r f), cos(r f)]: the first half of the channels
    depends on the column only, the second half on the row only.

    timm's ``build_sincos2d_pos_embed`` puts the row first ([sin(r f), sin(c f), cos(r f),
    cos(c f)], or row-then-column when interleaved), so MAE's order is built here.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    q = dim // 4
    freqs = 10000.0 ** -(torch.arange(q, dtype=torch.float64) / q)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )
    c = cols.reshape(-1, 1) * freqs  # (L, q)
    r = rows.reshape(-1, 1) * freqs
    return torch.cat([c.sin(), c.cos(), r.sin(), r.cos()], dim=1).float()


def _fixed_table(dim: int, grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """(1, prefix + L, dim): zeros for the prefix tokens, then the sin-cos table."""
    table = sincos_2d(dim, *grid)
    return torch.cat([torch.zeros(prefix, dim), table])[None]


class MaskedAutoencoder(nn.Module):
    def __init__(
        self,
        encoder: VisionTransformer,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
    ):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder, self.mask_ratio, self.norm_pix_loss = encoder, mask_ratio, norm_pix_loss
        self.patch = encoder.patch_embed.patch_size[0]
        self.num_patches = encoder.patch_embed.num_patches
        self.in_chans = encoder.patch_embed.proj.in_channels
        self.prefix = encoder.num_prefix_tokens
        dim = encoder.embed_dim
        grid = tuple(encoder.patch_embed.grid_size)
        if encoder.pos_embed is None or encoder.pos_embed.shape[1] != self.num_patches + self.prefix:
            raise ValueError("the encoder needs a position embedding for its prefix tokens and every patch")
        with torch.no_grad():  # fixed, frozen while pretraining (MAE)
            encoder.pos_embed.copy_(_fixed_table(dim, grid, self.prefix))
        encoder.pos_embed.requires_grad_(False)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(_fixed_table(decoder_dim, grid, self.prefix), requires_grad=False)
        self.decoder_blocks = nn.Sequential(
            *[Block(decoder_dim, decoder_heads, 4.0, qkv_bias=True) for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch**2 * self.in_chans)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), patches in row-major order, as the patch embedding."""
        b, c, h, w = imgs.shape
        p = self.patch
        x = imgs.reshape(b, c, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)

    def random_masking(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image, keep ``round(L * (1 - mask_ratio))`` random patches.

        Returns (ids_keep (B, K), mask (B, L) with 1 = hidden, ids_restore (B, L)).
        """
        keep = int(round(self.num_patches * (1 - self.mask_ratio)))
        noise = torch.rand(n, self.num_patches, device=device)
        ids_shuffle = noise.argsort(dim=1)
        ids_restore = ids_shuffle.argsort(dim=1)
        mask = torch.ones(n, self.num_patches, device=device)
        mask[:, :keep] = 0
        return ids_shuffle[:, :keep], torch.gather(mask, 1, ids_restore), ids_restore

    def encode(self, imgs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        x = enc.patch_embed(imgs) + enc.pos_embed[:, self.prefix :]
        x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
        if self.prefix:
            cls = (enc.cls_token + enc.pos_embed[:, : self.prefix]).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1)
        return enc.norm(enc.blocks(x))

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        b, n_vis = x.shape[0], x.shape[1] - self.prefix
        masks = self.mask_token.expand(b, self.num_patches - n_vis, -1)
        patches = torch.cat([x[:, self.prefix :], masks], dim=1)
        patches = torch.gather(patches, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, : self.prefix], patches], dim=1) + self.decoder_pos
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x[:, self.prefix :])

    def loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(-1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (loss, prediction (B, L, p*p*C), mask (B, L))."""
        ids_keep, mask, ids_restore = self.random_masking(imgs.shape[0], imgs.device)
        pred = self.decode(self.encode(imgs, ids_keep), ids_restore)
        return self.loss(imgs, pred, mask), pred, mask

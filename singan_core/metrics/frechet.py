"""The Fréchet distance between two Gaussians, in float64, batched.

    d^2((mu_1, S_1), (mu_2, S_2)) = ||mu_1 - mu_2||^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1 S_2)^(1/2))

Every Fréchet number of this package (SIFID, the patch Fréchet distance) goes through `frechet_distance`.
The matrix square root is taken stably: S_1 S_2 is similar to the symmetric PSD matrix
S_1^(1/2) S_2 S_1^(1/2), so Tr((S_1 S_2)^(1/2)) is the sum of the square roots of that matrix's
eigenvalues (`torch.linalg.eigvalsh`, negative round-off clamped to 0). Unlike `scipy.linalg.sqrtm(S_1 @ S_2)`
this needs no epsilon on the diagonal for singular covariances and never yields an imaginary part.
"""

from __future__ import annotations

import torch


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (divided by P - 1, as numpy's `np.cov`) of feature vectors.

    `features` is [..., P, d] (P vectors of dimension d); returns mu [..., d] and S [..., d, d] in float64.
    """
    count = features.shape[-2]
    if count < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {count}")
    f = features.to(torch.float64)
    mu = f.mean(dim=-2)
    centered = f - mu.unsqueeze(-2)
    sigma = centered.transpose(-1, -2) @ centered / (count - 1)
    return mu, sigma


def psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a (batch of) symmetric PSD matrix, by eigen-decomposition, in float64."""
    s = sigma.to(torch.float64)
    vals, vecs = torch.linalg.eigh((s + s.transpose(-1, -2)) / 2)
    return (vecs * vals.clamp_min(0).sqrt().unsqueeze(-2)) @ vecs.transpose(-1, -2)


def trace_sqrt_product(sqrt_sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """Tr((S_1 S_2)^(1/2)) from S_1^(1/2) and S_2 (broadcast over leading dimensions)."""
    m = sqrt_sigma1 @ sigma2.to(torch.float64) @ sqrt_sigma1
    m = (m + m.transpose(-1, -2)) / 2
    return torch.linalg.eigvalsh(m).clamp_min(0).sqrt().sum(dim=-1)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """The squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

    mu [..., d], sigma [..., d, d]; leading dimensions broadcast. Symmetric in its two Gaussians up to
    round-off; tiny negative values from round-off are clamped to 0.
    """
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    sigma1, sigma2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    if mu1.shape[-1] != mu2.shape[-1] or sigma1.shape[-2:] != sigma2.shape[-2:]:
        raise ValueError(f"Gaussians of different dimensions: {tuple(sigma1.shape)} and {tuple(sigma2.shape)}")
    mean_term = ((mu1 - mu2) ** 2).sum(dim=-1)
    trace_term = _trace(sigma1) + _trace(sigma2) - 2 * trace_sqrt_product(psd_sqrt(sigma1), sigma2)
    return (mean_term + trace_term).clamp_min(0)


class FrechetReference:
    """The real image's Gaussian, with its square root computed once, to compare many samples against."""

    def __init__(self, mu: torch.Tensor, sigma: torch.Tensor) -> None:
        self.mu = mu.to(torch.float64)
        self.sigma = sigma.to(torch.float64)
        self.sqrt_sigma = psd_sqrt(self.sigma)
        self.trace = _trace(self.sigma)

    def distance(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """d^2 between the reference and each Gaussian of the batch mu [B, d], sigma [B, d, d] -> [B] float64."""
        mu, sigma = mu.to(self.mu), sigma.to(self.sigma)
        mean_term = ((mu - self.mu) ** 2).sum(dim=-1)
        trace_term = self.trace + _trace(sigma) - 2 * trace_sqrt_product(self.sqrt_sigma, sigma)
        return (mean_term + trace_term).clamp_min(0)


def _trace(m: torch.Tensor) -> torch.Tensor:
    return m.diagonal(dim1=-2, dim2=-1).sum(dim=-1)

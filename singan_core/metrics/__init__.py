"""Evaluation metrics (SIFID, patch SWD, patch Frechet distance, diversity)."""

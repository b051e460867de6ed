"""Orchestration around singan_core: Ray tasks, storage, Parquet, MLflow and the `singan` CLI."""
